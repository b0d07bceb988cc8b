"""An RLlib PPO algorithm configured from textgym's zoo (`rllib_config`) and driven like the
other trainers (`RLlibAgent`: ``learn``, ``save``, ``load_state``, ``num_timesteps``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.machinery
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import ray
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED,
)

import textgym  # noqa: F401  (registers the envs)
from textgym_agents.backends.hyperparams import RLLIB_AGENTS, RLLIB_ENV_KWARGS, RLLIB_HYPERPARAMS
from textgym_agents.backends.rllib.callbacks import TextGymCallbacks, set_kl_coef, take_episodes
from textgym_agents.backends.rllib.modules import (
    RLlibPolicy,
    module_archive,
    module_spec,
    one_hot_observations,
)
from textgym_agents.saving import (
    open_archive,
    read_json,
    read_weights,
    to_bytes,
    write_archive,
)


def check_working_directory() -> None:
    """Refuse a working directory from which the env runners may import another textgym.

    Ray puts the driver's working directory first on its workers' import path, so a folder
    there named ``textgym`` or ``textgym_agents`` (a clone of the repository, say) can replace
    the installed package in every env runner: with an editable install even a folder without
    ``__init__.py`` does, and every runner then fails to find the envs. The working directory
    may hold the installed package itself (the repository root of an editable install).

    :raises ValueError: naming the folder, when the working directory holds another one.
    """
    cwd = os.getcwd()
    for name in ("textgym", "textgym_agents"):
        spec = importlib.machinery.PathFinder.find_spec(name, [cwd])
        if spec is None:
            continue
        # None when this process imported the folder too (`python -m` or `-c` run from there).
        installed = getattr(sys.modules[name], "__file__", None)
        if spec.origin and installed and os.path.samefile(spec.origin, installed):
            continue
        found = (spec.submodule_search_locations or [spec.origin])[0]  # a package or a module
        raise ValueError(
            f"the working directory {cwd!r} holds {found!r}, which Ray's env runners, with "
            f"the working directory first on their import path, may import as {name!r} "
            "instead of the installed package: expected a working directory without it; "
            "run from another directory"
        )


def rllib_env_kwargs(agent: str, env_id: str, env_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    return {**RLLIB_ENV_KWARGS.get(env_id, {}).get(agent, {}), **(env_kwargs or {})}


def rllib_hyperparams(agent: str, env_id: str) -> dict[str, Any]:
    if agent not in RLLIB_AGENTS:
        raise ValueError(f"agent={agent!r} has no RLlib backend: expected one of {RLLIB_AGENTS}")
    if env_id not in RLLIB_HYPERPARAMS:
        raise ValueError(
            f"env_id={env_id!r} has no RLlib entry: expected one of {tuple(RLLIB_HYPERPARAMS)}"
        )
    return RLLIB_HYPERPARAMS[env_id][agent]


def rllib_config(
    env_id: str,
    agent: str,
    *,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    num_env_runners: int = 2,
    n_envs: int | None = None,
    num_gpus_per_env_runner: float = 0,
    **overrides: Any,
) -> PPOConfig:
    """RLlib's ``PPOConfig`` for ``agent`` on ``env_id``: textgym's module, env arguments,
    callbacks and hyperparameters (`RLLIB_HYPERPARAMS`, then ``overrides``).

    :param env_kwargs: env arguments on top of the agent's (`RLLIB_ENV_KWARGS`); they reach
        each runner's env as RLlib's ``env_config``.
    :param num_env_runners: Ray actors that step envs (0: the driver steps them).
    :param n_envs: rows over all runners (default: the table's), split evenly among them.
    :param num_gpus_per_env_runner: GPUs each runner reserves; with any, its env and module
        run on its GPU (``device="cuda"``).
    """
    check_working_directory()
    hyper = dict(rllib_hyperparams(agent, env_id))
    env_kwargs = rllib_env_kwargs(agent, env_id, env_kwargs)
    if num_gpus_per_env_runner and "device" not in env_kwargs and env_id.startswith("TextGen"):
        env_kwargs["device"] = "cuda"
    rows = hyper.pop("n_envs")
    rows = rows if n_envs is None else n_envs
    hyper.pop("n_timesteps")
    hyper.update(overrides)
    model_config = hyper.pop("model_config", None)
    per_runner = max(1, rows // max(1, num_env_runners))
    spec = module_spec(env_id, agent, env_kwargs)
    config = (
        PPOConfig()
        .environment(f"textgym:{env_id}", env_config=env_kwargs)
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=per_runner,
            gym_env_vectorize_mode="vector_entry_point",  # one native vector env per runner
            num_gpus_per_env_runner=num_gpus_per_env_runner,
            env_to_module_connector=one_hot_observations if spec is None else None,
        )
        .training(**hyper)
        .callbacks(TextGymCallbacks)
        .debugging(seed=seed)
    )
    if spec is not None:
        config = config.rl_module(rl_module_spec=spec)
    elif model_config is not None:  # RLlib's default module, configured
        config = config.rl_module(model_config=DefaultModelConfig(**model_config))
    return config


@dataclasses.dataclass
class IterationStats:
    """What one RLlib iteration did: `RLlibAgent.learn` hands it to its callback."""

    timesteps: int  # env steps sampled so far, over the run
    episodes: list[dict[str, Any]]  # the episodes finished (`TextGymCallbacks`)
    learner: dict[str, float]  # the learner's figures (policy loss, ...)
    env_steps: int  # env steps sampled in this iteration
    seconds: float
    update_seconds: float  # of which the learner's update (RLlib's learner_update_timer)


class RLlibAgent:
    """An RLlib PPO algorithm behind the interface `textgym_agents.training.train` drives: ``learn``
    in iterations, ``num_timesteps``, ``save``/``load_state`` (module weights and optimizer
    state, no pickles), ``policy`` and ``predict`` (what evaluation plays), ``kl_coef``.

    The learner runs in this process (RLlib's local learner), so ``policy`` is the module
    being trained.
    """

    def __init__(self, config: PPOConfig) -> None:
        self.algo = config.build_algo()
        spaces = self.algo.env_runner_group.foreach_env_runner(
            lambda runner: None if runner.env is None else runner.env.single_observation_space
        )
        self.env_observation_space = next(space for space in spaces if space is not None)
        # The local learner (RLlib's default, num_learners=0) holds the module it trains.
        self.module = self.algo.learner_group._learner.module[DEFAULT_MODULE_ID]
        self.policy = RLlibPolicy(self.module, self.env_observation_space)
        self.num_timesteps = 0

    def predict(self, observation: Any, deterministic: bool = False) -> tuple[np.ndarray, None]:
        return self.policy.predict(observation, deterministic=deterministic)

    @property
    def kl_coef(self) -> float | None:
        """The KL coefficient every runner pays (None without TextGen envs)."""
        controller = getattr(self.algo, "textgym_kl_controller", None)
        return None if controller is None else controller.value

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        set_kl_coef(self.algo, value)

    def learn(self, total_timesteps: int, callback=None) -> RLlibAgent:
        """Train for at least ``total_timesteps`` more env steps, in RLlib iterations;
        ``callback(agent, IterationStats)`` after each."""
        target = self.num_timesteps + total_timesteps
        while self.num_timesteps < target:
            started = time.perf_counter()
            result = self.algo.train()
            env_steps = int(result[ENV_RUNNER_RESULTS].get(NUM_ENV_STEPS_SAMPLED, 0))
            self.num_timesteps += env_steps
            learner = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
            stats = IterationStats(
                timesteps=self.num_timesteps,
                episodes=take_episodes(self.algo),
                learner={k: float(v) for k, v in learner.items() if isinstance(v, int | float)},
                env_steps=env_steps,
                seconds=time.perf_counter() - started,
                update_seconds=float(result.get("timers", {}).get("learner_update_timer", 0.0)),
            )
            if callback is not None:
                callback(self, stats)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """The module (`module_archive`), the optimizer state (``optimizer.pth``,
        weights-only) and the step count, as one zip, atomically."""
        optimizers = self.algo.learner_group._learner._get_optimizer_state()
        entries = module_archive(self.module, self.env_observation_space)
        entries["optimizer.pth"] = to_bytes(_to_tensors(optimizers))
        entries["agent.json"] = json.dumps({"num_timesteps": self.num_timesteps}).encode()
        write_archive(path, entries)

    def load_state(self, path: str | os.PathLike) -> None:
        """Weights, optimizer state and step count of a `save` into this agent (built with
        the same configuration); the runners get the weights."""
        with open_archive(path) as archive:
            weights = read_weights(archive, "module.pth")
            optimizers = read_weights(archive, "optimizer.pth")
            counters = read_json(archive, "agent.json")
        learner = self.algo.learner_group._learner
        self.module.load_state_dict(weights)
        learner._set_optimizer_state(optimizers)
        self.algo.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.algo.learner_group, inference_only=True
        )
        self.num_timesteps = int(counters["num_timesteps"])

    def close(self) -> None:
        self.algo.stop()


def _to_tensors(value: Any) -> Any:
    """RLlib's state (numpy arrays and scalars in dicts and lists) in the types
    ``torch.load(weights_only=True)`` reads."""
    if isinstance(value, dict):
        return {key: _to_tensors(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_tensors(item) for item in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


@contextlib.contextmanager
def rllib_session(
    address: str | None, env_id: str, agent: str, **config: Any
) -> Iterator[RLlibAgent]:
    """An `RLlibAgent` of ``rllib_config(env_id, agent, **config)`` on Ray, closed after; Ray
    is started for it (joining the cluster at ``address``, if given) unless it is running, and
    then stopped after it.
    """
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        model = RLlibAgent(rllib_config(env_id, agent, **config))
        try:
            yield model
        finally:
            model.close()
    finally:
        if started:
            ray.shutdown()
