"""TextGen's reward: the KL penalty every step pays, and the reward model's score (less the
missing-EOS penalty, after the normalisation) the last step adds.

```
r_t = -kl_coef * k(log pi(a_t|s_t), log pi_ref(a_t|s_t))            every step
    + RM(prompt, text)  [- missing_eos_penalty]                      added on the last step
```

With no policy scorer attached, the KL part takes the reference-only form
``r_t = kl_coef * log pi_ref(a_t|s_t)``.
"""

from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from textgym._checks import check_int, check_number
from textgym.envs.textgen_infos import StepResult
from textgym.envs.textgen_scoring import exact_kl
from textgym.kl import KL_ESTIMATORS, AdaptiveKLController, FixedKLController, kl_estimate
from textgym.rewards import RewardModel, checked_score

logger = logging.getLogger(__name__)

_KL_WINDOW = 64  # finished episodes whose mean KL is checked for a negative sign

PolicyScores = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``policy(rows) -> (log pi, pi, log pi_ref)`` over the actions of ``rows``, ``(B, A)`` each."""


class KLStep(NamedTuple):
    """The KL part of one step's reward, for the rows that generate a token."""

    rewards: np.ndarray  # (B,) float64
    kl: np.ndarray | None  # (B,) the KL estimate (with a scorer)
    exact: np.ndarray | None  # (B,) the exact KL at the step's state (with a scorer)
    policy_logprob: np.ndarray | None  # (B,) log pi of the action (with a scorer)


class KLPenalty:
    """The KL penalty: the estimator of each step's KL, the reward it gives at a beta, the KL
    controller as constructed, and the check of the sign of the KL of finished episodes.

    :param kl_coef: beta (the start value with ``kl_target``).
    :param kl_estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (see `textgym.kl`).
    :param kl_target: the KL per sequence that adaptive beta aims at (None: a fixed beta).
    :param kl_horizon: adaptive beta's horizon in episodes.
    """

    def __init__(
        self, kl_coef: float, kl_estimator: str, kl_target: float | None, kl_horizon: int
    ) -> None:
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"kl_estimator={kl_estimator!r} is not known: expected one of {KL_ESTIMATORS}"
            )
        check_number("kl_coef", kl_coef, at_least=0)
        if kl_target is not None:
            check_number("kl_target", kl_target, above=0)
        check_int("kl_horizon", kl_horizon, low=1)
        self.estimator = kl_estimator
        # The controller as made: with kl_target its value moves, and a signature needs the start.
        self.settings = {
            "kl_coef": float(kl_coef),
            "kl_target": None if kl_target is None else float(kl_target),
            "kl_horizon": None if kl_target is None else int(kl_horizon),
        }
        self._kl_target, self._kl_horizon = kl_target, kl_horizon
        self.recent: deque[float] = deque(maxlen=_KL_WINDOW)
        self._since_check = 0
        self._warned_no_scorer = False

    def controller(self) -> AdaptiveKLController | FixedKLController:
        """A new KL controller with the constructed settings."""
        kl_coef = self.settings["kl_coef"]
        if self._kl_target is None:
            return FixedKLController(kl_coef)
        return AdaptiveKLController(kl_coef, self._kl_target, self._kl_horizon)

    def score(
        self,
        beta: float,
        rows: np.ndarray,
        acts: np.ndarray,
        ref_lp: np.ndarray,
        policy: PolicyScores | None,
    ) -> KLStep:
        """The KL part of the reward of ``rows`` taking ``acts`` (with reference log-probs
        ``ref_lp``) at ``beta``: ``-beta * k(log pi, log pi_ref)`` with the ``policy``'s
        log-probs, or the reference-only ``beta * log pi_ref`` without one (warned once)."""
        if policy is None:
            if rows.size:
                self._warn_no_scorer()
            return KLStep(beta * ref_lp, None, None, None)
        exact = np.zeros(len(rows))
        pol_lp = ref_lp
        if rows.size:
            pol_all, probs, ref_all = policy(rows)
            pol_lp = pol_all[np.arange(len(rows)), acts].astype(np.float64)
            exact = exact_kl(pol_all, ref_all, probs)
        kl = kl_estimate(pol_lp, ref_lp, self.estimator)
        return KLStep(-beta * kl, kl, exact, pol_lp)

    @staticmethod
    def report(
        step: KLStep,
        result: StepResult,
        stepped: np.ndarray,
        rows: np.ndarray,
        kl_sum: np.ndarray,
        exact_kl_sum: np.ndarray,
    ) -> None:
        """``step`` of the generating ``rows`` into ``result``, with the episode sums so far
        (``kl_sum``, ``exact_kl_sum``) of every ``stepped`` row."""
        result.kl_reward[rows] = step.rewards
        if step.kl is None:
            return
        result.policy_logprob[rows] = step.policy_logprob
        result.kl[rows] = step.kl
        result.episode_kl[stepped] = kl_sum[stepped]
        result.episode_kl[rows] += step.kl
        result.exact_kl[rows] = step.exact
        result.episode_exact_kl[stepped] = exact_kl_sum[stepped]
        result.episode_exact_kl[rows] += step.exact

    @staticmethod
    def add(step: KLStep, rows: np.ndarray, kl_sum: np.ndarray, exact_kl_sum: np.ndarray) -> None:
        """Add ``step``'s KL of ``rows`` to their episode sums (with a scorer)."""
        if step.kl is not None:
            kl_sum[rows] += step.kl
            exact_kl_sum[rows] += step.exact

    @staticmethod
    def finished(result: StepResult, done: np.ndarray) -> np.ndarray | None:
        """The summed KL of the episodes of ``done`` rows (None without a scorer or any)."""
        return result.episode_kl[done] if result.kl is not None and done.size else None

    @staticmethod
    def adapt(controller: Any, episode_kl: np.ndarray | None) -> dict[str, Any] | None:
        """Update the KL ``controller`` with the ``episode_kl`` of the episodes that end (none:
        nothing); its state before, for `undo`, which a failed update runs itself."""
        if episode_kl is None:
            return None
        before = vars(controller).copy()
        try:
            controller.update(float(episode_kl.mean()), len(episode_kl))
        except BaseException:
            KLPenalty.undo(controller, before)
            raise
        return before

    @staticmethod
    def undo(controller: Any, before: dict[str, Any] | None) -> None:
        """Put the ``controller`` back as it was ``before`` `adapt` (None: it did nothing)."""
        if before is not None:
            vars(controller).clear()
            vars(controller).update(before)

    def check_sign(self, episode_kl: np.ndarray | None) -> None:
        """Log when the mean KL over the last `_KL_WINDOW` episodes is negative: a bug symptom.

        One episode's k1 sum can be negative by chance, and so can a window's mean when the
        policy is within noise of the reference: only a mean more than 3 standard errors
        below zero is a symptom.
        """
        if episode_kl is None:
            return
        self.recent.extend(episode_kl.tolist())
        self._since_check += len(episode_kl)
        if len(self.recent) < _KL_WINDOW or self._since_check < _KL_WINDOW:
            return
        self._since_check = 0
        mean = float(np.mean(self.recent))
        standard_error = float(np.std(self.recent)) / np.sqrt(_KL_WINDOW)
        if mean < -max(1e-3, 3 * standard_error):
            logger.warning(
                "mean KL per sequence over the last %d episodes is negative (%.4f): the "
                "attached scorer's log-probs do not match the acting policy (temperature, "
                "filtering or dropout?)",
                _KL_WINDOW,
                mean,
            )

    def _warn_no_scorer(self) -> None:
        if not self._warned_no_scorer:
            self._warned_no_scorer = True
            warnings.warn(
                "no policy scorer is attached, so TextGen uses the reference-only reward "
                "r_t = kl_coef * log pi_ref(a_t|s_t); with an entropy bonus of kl_coef in the "
                "agent this is the KL-regularised objective. Attach the acting policy with "
                "env.unwrapped.attach_policy(scorer) for the KL step reward. Shown once.",
                UserWarning,
                stacklevel=5,
            )


def terminal_rewards(
    reward_model: RewardModel,
    prompts: list[str],
    texts: list[str],
    hit_eos: np.ndarray,
    normalisation: tuple[float, float],
    missing_eos_penalty: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The RM part of the last step's reward of episodes: their scores (the RM's on ``prompts``
    and ``texts``, times the gain plus the bias of ``normalisation``) and the penalty each pays
    (``missing_eos_penalty`` unless it ended with EOS, ``hit_eos``)."""
    gain, bias = normalisation
    raw = checked_score(reward_model, prompts, texts)
    return gain * raw + bias, missing_eos_penalty * (~hit_eos)


def normalisation(
    reward_model: RewardModel, prompts: list[str], texts: list[str]
) -> tuple[float, float]:
    """Gain and bias that give the RM scores of the reference policy's samples ``texts`` (of
    ``prompts``) mean 0 and std 1."""
    scores = checked_score(reward_model, prompts, texts)
    std = float(scores.std())
    if std < 1e-8:
        raise ValueError(
            "normalize_reward=True: the reference policy's samples all score "
            f"{scores.mean():.4g}, so no gain can make their std 1"
        )
    return 1.0 / std, -float(scores.mean()) / std
