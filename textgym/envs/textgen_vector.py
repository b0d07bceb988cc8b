"""Batched TextGen as a Gymnasium ``VectorEnv``.

A thin adapter over `TextGenCore`, which advances all N sequences with one KV-cached forward
pass of the reference model and scores every sequence that finishes on a step with one
reward-model call. (The stable-baselines3 ``VecEnv`` over the same core lives with the
agents, `textgym_agents.sb3_env`: textgym imports no RL library.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.envs.textgen_core import PolicyScorer, StepResult, TextGenCore


class TextGenVectorEnv(VectorEnv):
    """N TextGen episodes as one Gymnasium ``VectorEnv`` (autoreset mode ``NEXT_STEP``).

    Made by ``gym.make_vec("TextGen-v0", num_envs=N, vectorization_mode="vector_entry_point")``;
    takes the arguments of `TextGenEnv`. Rows start from prompts drawn from ``self.np_random``;
    the step after a row terminates ignores its action and returns that row's new first
    observation with reward 0. Infos are dicts of arrays with ``_key`` masks: a row that steps
    has every key of `TextGenEnv`'s step info (see its Information section), with the same
    values; a row that restarts has its reset info (``prompt``, ``prompt_index``), as in
    gymnasium's own vector envs.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None:
            raise ValueError(
                f"render_mode={render_mode!r}: the batched TextGen env does not render; "
                "render a single TextGenEnv (gym.make) instead"
            )
        self.core = TextGenCore(num_envs, **kwargs)
        self.num_envs = num_envs
        self.render_mode = None
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._restart = np.zeros(num_envs, dtype=bool)
        self._started = False

    @property
    def reference_model(self):
        return self.core.reference_model

    @property
    def tokenizer(self):
        return self.core.tokenizer

    def attach_policy(self, scorer: PolicyScorer | None) -> None:
        """Use ``scorer`` as pi in every row's KL step reward (see `TextGenEnv.attach_policy`)."""
        self.core.attach_policy(scorer)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method once on the batched env (attributes are returned as they are)."""
        attribute = getattr(self, name)
        result = attribute(*args, **kwargs) if callable(attribute) else attribute
        return (result,) * self.num_envs

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return (getattr(self, name),) * self.num_envs

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if options:
            raise ValueError(f"options={options!r}: TextGenVectorEnv.reset takes no options")
        if isinstance(seed, Sequence):
            seed = seed[0] if seed else None
        super().reset(seed=seed)
        rows = np.arange(self.num_envs)
        self._start(rows)
        self._restart[:] = False
        self._started = True
        infos = self.core.reset_info(rows)
        infos.update({f"_{key}": np.ones(self.num_envs, dtype=bool) for key in list(infos)})
        return self.core.observe(), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("step() called before reset(): call reset() first")
        live = ~self._restart
        if live.any():
            result = self.core.step(actions, rows=live, argument="actions")
        else:
            scored = self.core.scorer is not None
            result = StepResult.empty(self.num_envs, self.core.kl_controller.value, scored=scored)
        infos = result.batched_info(live)
        restart_rows = np.flatnonzero(self._restart)
        if restart_rows.size:
            self._start(restart_rows)
            for key, values in self.core.reset_info(restart_rows).items():
                infos[key][restart_rows] = values
                infos[f"_{key}"][restart_rows] = True
        self._restart = result.terminated.copy()
        truncated = np.zeros(self.num_envs, dtype=bool)
        return (
            self.core.observe(),
            result.rewards.copy(),
            result.terminated.copy(),
            truncated,
            infos,
        )

    def action_masks(self) -> np.ndarray:
        """``(N, A)`` bool masks of the reference's top-k / top-p tokens (see `TextGenEnv`)."""
        return self.core.action_masks()

    def reference_logprobs(self) -> np.ndarray:
        """``(N, A)`` the reference policy's log-probs over the action space per row."""
        return self.core.reference_logprobs()

    def _start(self, rows: np.ndarray) -> None:
        indices = self.np_random.integers(len(self.core.prompts), size=len(rows))
        self.core.start_rows(rows, prompt_indices=indices)
