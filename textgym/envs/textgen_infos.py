"""What a TextGen step reports: the info keys every env carries, and `StepResult`, one value
per row of each, with the single env's and gymnasium's vector forms of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The info keys of every step (and the fields of `StepResult` that hold them), in the order
# the envs report them; an attached policy scorer adds `SCORER_INFO_KEYS`. Every step carries
# every key with a value of a fixed type, so libraries that store infos in preallocated
# buffers (Tianshou) take them; what only the last step knows is a neutral value before it.
INFO_KEYS = (
    "prompt",  # str: the prompt as the policy saw it (known from the reset on)
    "prompt_index",  # int: its index in the prompt set, -1 for a prompt given to reset()
    "ref_logprob",  # float: log pi_ref of the action
    "kl_coef",  # float: beta of this step
    "kl_reward",  # float: the KL part of the reward
    "rm_score",  # float: the RM part of the reward, 0.0 but on the last step
    "eos_penalty",  # float: the missing-EOS penalty paid, 0.0 but on a last step without EOS
    "text",  # str: the continuation, decoded once on the last step, "" before it
)
SCORER_INFO_KEYS = (
    "policy_logprob",  # float: log pi of the action
    "kl",  # float: the KL estimate of the step
    "episode_kl",  # float: the episode's summed KL estimate so far (all of it on the last step)
    # float: the exact KL(pi || pi_ref) at the step's state, summed over the action space from
    # the scorer's full distribution and the reference's (in "topk" mode over the candidates):
    # a metric beside the sampled estimate, never part of the reward (as a detached reward it
    # would not give the KL's gradient, which the sampled k1 reward does).
    "exact_kl",
    "episode_exact_kl",  # float: the episode's summed exact KL so far
)
# With ``group_size`` > 1 (rows in groups that share a prompt and start together):
GROUP_INFO_KEYS = (
    # int: the id of the row's group episode (consecutive from 0 in the order groups start):
    # the rows whose episodes share one id are the samples of one prompt
    "group",
    # bool: the row's text has ended (EOS or max_new_tokens) and its group still generates, so
    # its next action is ignored; False on the step that ends the whole group (terminated)
    "idle",
)


@dataclass
class StepResult:
    """What one core step produced for all rows (rows that did not step hold zeros and ``""``,
    but their current ``prompt``, ``prompt_index`` and ``kl_coef``).

    Each info key is a field of one value per row. `row_info` (the single env, SB3's
    ``VecEnv``) and `batched_info` (gymnasium's ``VectorEnv``) are two forms of the same
    values, so every env reports the same keys. On every row ``rewards == kl_reward +
    rm_score - eos_penalty`` (in float32).
    """

    rewards: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    prompt: np.ndarray  # (N,) object (str)
    prompt_index: np.ndarray  # (N,) int64
    ref_logprob: np.ndarray  # (N,) float32
    kl_coef: np.ndarray  # (N,) float64
    kl_reward: np.ndarray  # (N,) float32
    rm_score: np.ndarray  # (N,) float64
    eos_penalty: np.ndarray  # (N,) float64
    text: np.ndarray  # (N,) object (str)
    policy_logprob: np.ndarray | None = None  # (N,) float32, with a policy scorer
    kl: np.ndarray | None = None  # (N,) float32, with a policy scorer
    episode_kl: np.ndarray | None = None  # (N,) float64, with a policy scorer
    exact_kl: np.ndarray | None = None  # (N,) float64, with a policy scorer
    episode_exact_kl: np.ndarray | None = None  # (N,) float64, with a policy scorer
    group: np.ndarray | None = None  # (N,) int64, with groups
    idle: np.ndarray | None = None  # (N,) bool, with groups

    @classmethod
    def empty(cls, n: int, kl_coef: float, scored: bool, grouped: bool = False) -> StepResult:
        """A result in which no row stepped (``scored``: with the policy scorer's keys;
        ``grouped``: with the group keys)."""
        result = cls(
            rewards=np.zeros(n, dtype=np.float32),
            terminated=np.zeros(n, dtype=bool),
            prompt=np.full(n, "", dtype=object),
            prompt_index=np.zeros(n, dtype=np.int64),
            ref_logprob=np.zeros(n, dtype=np.float32),
            kl_coef=np.full(n, kl_coef, dtype=np.float64),
            kl_reward=np.zeros(n, dtype=np.float32),
            rm_score=np.zeros(n, dtype=np.float64),
            eos_penalty=np.zeros(n, dtype=np.float64),
            text=np.full(n, "", dtype=object),
        )
        if scored:
            result.policy_logprob = np.zeros(n, dtype=np.float32)
            result.kl = np.zeros(n, dtype=np.float32)
            result.episode_kl = np.zeros(n, dtype=np.float64)
            result.exact_kl = np.zeros(n, dtype=np.float64)
            result.episode_exact_kl = np.zeros(n, dtype=np.float64)
        if grouped:
            result.group = np.zeros(n, dtype=np.int64)
            result.idle = np.zeros(n, dtype=bool)
        return result

    @property
    def info_keys(self) -> tuple[str, ...]:
        """The keys of every row's info: `INFO_KEYS`, plus `SCORER_INFO_KEYS` with a scorer and
        `GROUP_INFO_KEYS` with groups."""
        keys = (INFO_KEYS + SCORER_INFO_KEYS) if self.kl is not None else INFO_KEYS
        return keys + GROUP_INFO_KEYS if self.group is not None else keys

    def row_info(self, row: int) -> dict[str, Any]:
        """The info dict of one row, as the single env reports it (Python floats, ints, str)."""
        return {key: getattr(self, key).item(row) for key in self.info_keys}

    def batched_info(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Gymnasium's vector form: every key's ``(N,)`` array, and its ``_key`` mask ``rows``
        (bool, the rows that stepped)."""
        infos: dict[str, np.ndarray] = {}
        for key in self.info_keys:
            infos[key] = getattr(self, key)
            infos[f"_{key}"] = rows.copy()
        return infos

    @property
    def finished(self) -> dict[int, dict[str, Any]]:
        """The info of each row whose episode ended on this step, by row."""
        return {int(row): self.row_info(row) for row in np.flatnonzero(self.terminated)}
