"""The advantages `SequencePPO` trains on, each its documented formula (tests/test_sequence_ppo.py
computes them directly): GAE with gamma = 1 (`gae_advantages`), RLOO's leave-one-out baseline
(`rloo_advantages`) and the normalisations of ``normalize_advantage`` (`whiten`, the group
standard deviation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from textgym_agents.trainers.episodes import Episode

ADVANTAGES = ("gae", "rloo")  # the values of SequencePPO's ``advantage``
# The values of SequencePPO's ``normalize_advantage``; "batch" and "group" scale one advantage
# per episode, so they need ``advantage="rloo"``.
NORMALIZATIONS = ("token", "none", "batch", "group")
STD_EPS = 1e-8  # added to every standard deviation an advantage is divided by


def rloo_advantages(episodes: Sequence[Episode], group_size: int) -> np.ndarray:
    """RLOO's advantage of each episode, ``(B,)`` float64: its return (KL penalty and RM score,
    the sum of its rewards) minus the mean return of the other ``group_size - 1`` episodes of
    its group, the other samples of its prompt (a baseline that does not depend on the
    episode's own actions).

    :param episodes: whole groups, ``group_size`` episodes of each ``group`` id, in any order.
    :param group_size: episodes per group, at least 2.
    """
    returns, inverse = _groups(episodes, group_size)
    others = np.bincount(inverse, weights=returns)[inverse] - returns
    return returns - others / (group_size - 1)


def group_return_std(episodes: Sequence[Episode], group_size: int) -> np.ndarray:
    """``(B,)``: the standard deviation (Bessel-corrected) of the returns of each episode's
    group, GRPO's scale."""
    returns, inverse = _groups(episodes, group_size)
    std = [returns[inverse == g].std(ddof=1) for g in range(inverse.max() + 1)]
    return np.array(std)[inverse]


def _groups(episodes: Sequence[Episode], group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(returns, group index)``, each ``(B,)``, of episodes that must form whole groups of
    ``group_size >= 2``."""
    returns = np.array([e.episode_return for e in episodes], dtype=np.float64)
    _, inverse, counts = np.unique(
        [e.group for e in episodes], return_inverse=True, return_counts=True
    )
    if group_size < 2 or (counts != group_size).any():
        raise ValueError(
            f"episodes hold groups of {sorted(set(counts.tolist()))} episode(s): RLOO's "
            f"baseline expected whole groups of group_size={group_size} >= 2 episodes"
        )
    return returns, inverse


def whiten(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``values`` minus the mean of its entries under ``mask`` (default: all), over their
    standard deviation (Bessel-corrected, as torch's and TRL's) plus 1e-8."""
    chosen = values if mask is None else values[mask]
    return (values - chosen.mean()) / (chosen.std() + STD_EPS)


def gae_advantages(episodes: Sequence[Episode], values: np.ndarray, lam: float) -> np.ndarray:
    """GAE with gamma = 1 of each generated token, ``(B, T)`` like ``values`` (padding: 0):
    ``A_t = delta_t + lam * A_{t+1}``, ``delta_t = r_t + V_{t+1} - V_t``; the episode's end is
    terminal (``V_T = 0``).

    :param episodes: finished episodes.
    :param values: ``(B, T)`` the value head's estimates at every generated position.
    :param lam: GAE's lambda.
    """
    adv = np.zeros_like(values)
    for i, e in enumerate(episodes):
        last = 0.0
        for t in range(len(e.tokens) - 1, -1, -1):
            next_value = values[i, t + 1] if t + 1 < len(e.tokens) else 0.0
            delta = e.rewards[t] + next_value - values[i, t]
            last = delta + lam * last
            adv[i, t] = last
    return adv
