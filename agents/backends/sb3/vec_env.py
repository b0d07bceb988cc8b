"""stable-baselines3 ``VecEnv``s for any textgym env, batched where the env supports it.

`make_sb3_vec_env` gives TextGen the natively batched `TextGenSB3VecEnv` (one forward pass for
all rows, over the env's public `TextGenCore`) and every other env SB3's ``DummyVecEnv``. Both
pickle and deepcopy, and refuse a batch of actions that is not one valid action per row before
any row steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen_core import PolicyScorer, TextGenCore

_TEXTGEN = "textgym.envs.textgen:TextGenEnv"


def make_sb3_vec_env(
    env_id: str, n_envs: int = 1, seed: int | None = None, **kwargs: Any
) -> VecEnv:
    """An SB3 ``VecEnv`` of ``n_envs`` copies of ``env_id``, wrapped in ``VecMonitor``.

    TextGen gets the natively batched `TextGenSB3VecEnv` (one forward pass for all rows);
    other envs get SB3's ``DummyVecEnv`` of ``gym.make`` copies.

    :param env_id: a registered id such as ``"TextGen-v0"`` or ``"GridWorld-v1"``.
    :param n_envs: number of parallel episodes.
    :param seed: seed of the first env (the others follow as in SB3's ``make_vec_env``).
    :param kwargs: constructor arguments of the env.
    """
    if gym.spec(env_id).entry_point == _TEXTGEN:
        return _VecMonitor(TextGenSB3VecEnv(n_envs, seed=seed, **kwargs))
    return make_vec_env(
        env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs, vec_env_cls=_DummyVecEnv
    )


class _VecMonitor(VecMonitor):
    """SB3's ``VecMonitor``, picklable: every SB3 ``VecEnvWrapper`` keeps its class's members
    (a ``mappingproxy`` among them) in ``class_attributes``, which pickle refuses."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["class_attributes"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.class_attributes = dict(inspect.getmembers(self.__class__))


class _DummyVecEnv(DummyVecEnv):
    """SB3's ``DummyVecEnv``, checking the whole batch of actions before the first env steps
    (SB3's steps the envs one by one: too few actions fail half way, with an IndexError, and
    extra ones are dropped)."""

    def step_async(self, actions: np.ndarray) -> None:
        expected = (self.num_envs, *self.action_space.shape)
        if np.shape(actions) != expected:
            raise ValueError(
                f"actions has shape {np.shape(actions)}: expected shape {expected}, one action "
                f"of {self.action_space} per env, got actions={actions!r}"
            )
        space = self.action_space
        actions = np.asarray(actions)
        if isinstance(space, gym.spaces.Discrete) and np.issubdtype(actions.dtype, np.integer):
            # One vectorised check a step rather than one call per env.
            bad = np.flatnonzero((actions < space.start) | (actions >= space.start + space.n))
        else:
            bad = [row for row, action in enumerate(actions) if not space.contains(action)]
        if len(bad):
            row = int(bad[0])
            raise ValueError(
                f"actions[{row}]={actions[row]!r} is not in the action space: expected an "
                f"element of {space}, got actions={actions!r}"
            )
        super().step_async(actions)


class TextGenSB3VecEnv(VecEnv):
    """N TextGen episodes as one stable-baselines3 ``VecEnv``, so SB3 agents get the batched speed.

    Rows reset as soon as they finish (SB3's convention): the returned observation is the new
    episode's first, ``infos[i]["terminal_observation"]`` holds the last one and
    ``reset_infos[i]`` the new episode's reset info. ``infos[i]`` has the keys and values of
    `TextGenEnv`'s step info, built by the same function.
    ``env_method("action_masks")`` serves sb3-contrib's MaskablePPO;
    ``env_method("attach_policy", scorer)`` attaches the acting policy once for all rows.
    ``group_size=k`` groups rows as `TextGenVectorEnv` does (a group restarts when all its rows
    have ended; idle rows in the meantime).

    :param num_envs: number of sequences N.
    :param seed: seeds the prompt draws (``seed()`` before ``reset()`` also works, as in SB3).
    :param kwargs: the arguments of `TextGenEnv`.
    """

    render_mode = None

    def __init__(self, num_envs: int = 1, seed: int | None = None, **kwargs: Any) -> None:
        self.core = TextGenCore(num_envs, **kwargs)
        super().__init__(num_envs, self.core.observation_space, self.core.action_space)
        self._rng = np.random.default_rng(seed)
        self._actions: np.ndarray | None = None
        self._started = False

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        self._rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def reset(self) -> dict[str, np.ndarray]:
        if self._seeds[0] is not None:  # set by VecEnv.seed() in SB3 >= 2.2
            self._rng = np.random.default_rng(self._seeds[0])
            self._reset_seeds()
        rows = np.arange(self.num_envs)
        self._start(rows)
        self.reset_infos = _row_dicts(self.core.reset_info(rows))
        self._started = True
        return self.core.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        if not self._started:
            raise RuntimeError("step() called before reset(): call reset() first")
        # The core checks the actions (one per row) before changing anything.
        result = self.core.step(np.asarray(self._actions), argument="actions")
        infos = [result.row_info(row) for row in range(self.num_envs)]
        done_rows = np.flatnonzero(result.terminated)
        if done_rows.size:
            final = self.core.observe(done_rows)
            for i, row in enumerate(done_rows):
                infos[row]["terminal_observation"] = {key: value[i] for key, value in final.items()}
                infos[row]["TimeLimit.truncated"] = False
            self._start(done_rows)
            for row, info in zip(done_rows, _row_dicts(self.core.reset_info(done_rows))):
                self.reset_infos[row] = info
        return self.core.observe(), result.rewards.copy(), result.terminated.copy(), infos

    def _start(self, rows: np.ndarray) -> None:
        indices = self.core.draw_prompts(self._rng, len(rows))
        self.core.start_rows(rows, prompt_indices=indices)

    def action_masks(self) -> np.ndarray:
        return self.core.action_masks()

    def attach_policy(self, scorer: PolicyScorer | None) -> None:
        self.core.attach_policy(scorer)

    def close(self) -> None:
        """Nothing to release: the models are freed with the env."""

    def _indices(self, indices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = (
            getattr(self.core, attr_name)
            if hasattr(self.core, attr_name)
            else getattr(self, attr_name)
        )
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.core, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices=None, **method_kwargs
    ) -> list[Any]:
        rows = self._indices(indices)
        if method_name == "action_masks":
            return list(self.core.action_masks(rows))
        if method_name == "reference_logprobs":
            return list(self.core.reference_logprobs(rows))
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._indices(indices)]


def _row_dicts(batched: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """``{key: (n,) values}`` as n dicts of Python values."""
    n = len(next(iter(batched.values())))
    return [{key: values.item(i) for key, values in batched.items()} for i in range(n)]
