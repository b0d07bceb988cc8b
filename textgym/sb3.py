"""stable-baselines3 vectorised envs for any textgym env, batched where the env supports it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

_BATCHED = {"textgym.envs.textgen:TextGenEnv": "textgym.envs.textgen_vector:TextGenSB3VecEnv"}


def make_sb3_vec_env(
    env_id: str, n_envs: int = 1, seed: int | None = None, **kwargs: Any
) -> VecEnv:
    """An SB3 ``VecEnv`` of ``n_envs`` copies of ``env_id``, wrapped in ``VecMonitor``.

    TextGen gets the natively batched `TextGenSB3VecEnv` (one forward pass for all rows);
    other envs get SB3's ``DummyVecEnv`` of ``gym.make`` copies.

    :param env_id: a registered id such as ``"TextGen-v0"`` or ``"GridWorld-v0"``.
    :param n_envs: number of parallel episodes.
    :param seed: seed of the first env (the others follow as in SB3's ``make_vec_env``).
    :param kwargs: constructor arguments of the env.
    """
    import importlib

    import textgym  # noqa: F401  (registers the envs)

    entry_point = gym.spec(env_id).entry_point
    if isinstance(entry_point, str) and entry_point in _BATCHED:
        module, name = _BATCHED[entry_point].split(":")
        venv = getattr(importlib.import_module(module), name)(n_envs, seed=seed, **kwargs)
        return VecMonitor(venv)
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=kwargs)
