"""Agent names -> configured stable-baselines3 / sb3-contrib algorithms, with per-env defaults.

Like rl-baselines3-zoo's yaml files, `HYPERPARAMS` holds one dict literal per env id with the
values that differ from the library defaults, each with the reason why. ``n_timesteps`` (the
documented budget, see `default_budget`) and ``n_envs`` are the zoo's own keys; every other
key is a keyword of the algorithm.

```python
from agents.zoo import default_budget, evaluate, make_agent

model = make_agent("ppo", "GridWorld-v0", seed=0)
model.learn(default_budget("ppo", "GridWorld-v0"))
print(evaluate(model, "GridWorld-v0", episodes=100, seed=1000))  # success_rate >= 0.95
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

import textgym
from agents.extractors import TokenExtractor
from agents.scorer import attach_sb3_policy

__all__ = ["AGENTS", "ENV_DEFAULTS", "HYPERPARAMS", "default_budget", "evaluate", "make_agent"]

AGENTS: tuple[str, ...] = ("ppo", "a2c", "dqn", "maskable_ppo")
_ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "dqn": DQN,
    "maskable_ppo": MaskablePPO,
}
# Names of the custom GPT policy (agents/gpt_policy.py), which is built elsewhere.
_GPT_AGENTS = ("gpt", "gpt-sb3")

# Algorithm keywords every agent gets on an env, before its own entry in HYPERPARAMS.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "GridWorld-v0": {"gamma": 0.99},
    # Every token shapes the finished text equally: no discount.
    "TextGen-v0": {"gamma": 1.0},
}


def _linear(start: float) -> Callable[[float], float]:
    """A learning rate that decays linearly from ``start`` to 0 over the budget."""
    return lambda progress_remaining: start * progress_remaining


# The GridWorld entries make every agent reach the diamond from seeds 0, 1 and 2 (see
# tests/test_agents_sb3.py for the measured results). The diamond is rare under a random walk
# (0.7% of episodes, 10 moves past three fires), so exploration decides.
# PPO and MaskablePPO share their GridWorld settings.
_GRID_PPO: dict[str, Any] = {
    "n_timesteps": 200_000,
    "n_envs": 8,
    "n_steps": 128,  # 1,024 steps a rollout: many updates in a small budget
    "batch_size": 256,  # 4 minibatches a rollout
    "learning_rate": _linear(1e-3),  # fast at first, then settles the greedy policy
    "ent_coef": 0.05,  # keeps the walk random until the diamond is found
    # With no reward seen yet, normalising noise-sized advantages to unit scale
    # swamps the entropy bonus and makes the policy deterministic early.
    "normalize_advantage": False,
}

HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "GridWorld-v0": {
        "ppo": _GRID_PPO,
        "a2c": {
            "n_timesteps": 150_000,
            "n_envs": 8,
            "learning_rate": 1.5e-3,  # 2x the default: the rare successes must count
            "ent_coef": 0.05,  # keeps the walk random until the diamond is found
        },
        "dqn": {
            "n_timesteps": 80_000,
            "buffer_size": 50_000,  # more than half the budget; the default 1e6 wastes memory
            # A bump into a wall is worth gamma * V, 1% less than the right move: the decay
            # lets the Q-values settle to that precision.
            "learning_rate": _linear(1e-3),
            "learning_starts": 1_000,  # some 40 episodes in the buffer before the first update
            "target_update_interval": 500,  # default 10,000 is an eighth of the budget
            "exploration_fraction": 0.3,  # explore long enough to find the diamond
        },
        # Masks remove bumps into walls, so the diamond comes sooner: a smaller budget.
        "maskable_ppo": {**_GRID_PPO, "n_timesteps": 120_000},
    },
    # Budgets of a few minutes on one CPU thread (PPO, topk mode: 136 s; A2C and DQN are 2x
    # faster, MaskablePPO in vocab mode 2x slower). Not a learning test: one PPO run, topk mode,
    # seed 0, raised the mean RM score of its sampled texts from 0.24 to 0.67 in 100,000 steps.
    "TextGen-v0": {
        "ppo": {
            "n_timesteps": 100_000,
            "n_envs": 16,  # one batched forward pass of the reference serves 16 sequences
            "n_steps": 96,  # 4 episodes of 24 tokens per row and rollout
            "batch_size": 256,  # 6 minibatches a rollout
        },
        "a2c": {
            "n_timesteps": 100_000,
            "n_envs": 16,  # one batched forward pass of the reference serves 16 sequences
            "n_steps": 24,  # one episode of 24 tokens per row and update
        },
        "dqn": {
            "n_timesteps": 100_000,
            "n_envs": 16,  # one batched forward pass of the reference serves 16 sequences
            "buffer_size": 50_000,  # the default 1e6 token sequences need gigabytes
            "learning_starts": 1_000,  # some 40 episodes in the buffer before the first update
            "target_update_interval": 1_000,  # default 10,000 is a tenth of the budget
        },
        "maskable_ppo": {
            "n_timesteps": 100_000,
            "n_envs": 16,  # one batched forward pass of the reference serves 16 sequences
            "n_steps": 96,  # 4 episodes of 24 tokens per row and rollout
            "batch_size": 256,  # 6 minibatches a rollout
        },
    },
}

_ZOO_KEYS = ("n_timesteps", "n_envs")


def _config(name: str, env_id: str) -> dict[str, Any]:
    """The zoo entry of agent ``name`` on ``env_id``, or a clear error."""
    if name in _GPT_AGENTS:
        raise NotImplementedError(
            f"agent={name!r} is the custom GPT policy (agents/gpt_policy.py), which the zoo does "
            f"not build yet; the zoo builds {AGENTS}"
        )
    if name not in AGENTS:
        raise ValueError(f"agent={name!r} is unknown: expected one of {AGENTS + _GPT_AGENTS}")
    if env_id not in HYPERPARAMS:
        raise ValueError(
            f"env_id={env_id!r} has no zoo entry: expected one of {tuple(HYPERPARAMS)}"
        )
    return HYPERPARAMS[env_id][name]


def default_budget(name: str, env_id: str) -> int:
    """The documented number of env steps to train agent ``name`` on ``env_id``.

    :param name: an agent name from `AGENTS`.
    :param env_id: ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    """
    return int(_config(name, env_id)["n_timesteps"])


def make_agent(
    name: str,
    env_id: str,
    *,
    seed: int = 0,
    n_envs: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    tensorboard_log: str | None = None,
    verbose: int = 0,
    **overrides: Any,
) -> BaseAlgorithm:
    """Agent ``name`` built for ``env_id`` with the zoo's hyperparameters, ready to ``learn``.

    The policy follows the observation space: ``"MultiInputPolicy"`` with `TokenExtractor` for
    token observations (TextGen, GridWorld ``obs_mode="tokens"``), ``"MlpPolicy"`` otherwise
    (SB3 one-hot encodes GridWorld's ``Discrete`` index observation itself). Keywords are
    applied in the order `ENV_DEFAULTS`, `HYPERPARAMS`, ``overrides``; ``policy_kwargs`` are
    merged rather than replaced.

    On TextGen the model's policy is attached as the env's policy scorer (`attach_sb3_policy`),
    so the KL step reward uses the acting policy's log-probs.

    :param name: one of `AGENTS` (``"gpt"`` and ``"gpt-sb3"`` are reserved for the GPT policy).
    :param env_id: ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    :param seed: seeds the algorithm and the env.
    :param n_envs: parallel envs (default: the zoo's value for the agent and env, else 1).
    :param env_kwargs: constructor arguments of the env, e.g. ``{"obs_mode": "tokens"}``.
    :param tensorboard_log: TensorBoard log folder, or None.
    :param verbose: SB3 verbosity (0 silent, 1 info).
    :param overrides: algorithm keywords that replace the zoo's (``n_steps=64``, ...).
    """
    config = _config(name, env_id)
    kwargs = {**ENV_DEFAULTS[env_id], **{k: v for k, v in config.items() if k not in _ZOO_KEYS}}
    policy_kwargs = {**kwargs.pop("policy_kwargs", {}), **overrides.pop("policy_kwargs", {})}
    kwargs.update(overrides)

    n_envs = config.get("n_envs", 1) if n_envs is None else n_envs
    venv = textgym.make_sb3_vec_env(env_id, n_envs=n_envs, seed=seed, **(env_kwargs or {}))
    if isinstance(venv.observation_space, spaces.Dict):
        policy = "MultiInputPolicy"
        if "input_ids" in venv.observation_space.spaces:
            policy_kwargs = {"features_extractor_class": TokenExtractor, **policy_kwargs}
    else:
        policy = "MlpPolicy"
    model = _ALGORITHMS[name](
        policy,
        venv,
        policy_kwargs=policy_kwargs or None,
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        seed=seed,
        **kwargs,
    )
    attach_sb3_policy(model)  # the policy scorer: TextGen's KL reward uses the acting policy
    return model


def evaluate(
    model: BaseAlgorithm,
    env_id: str,
    *,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    deterministic: bool = True,
) -> dict[str, float]:
    """Play ``episodes`` episodes of ``env_id`` with ``model``'s policy and summarise them.

    Action masks are passed to ``predict`` for `MaskablePPO`. The env is a fresh one, with
    the model's policy attached as its KL scorer on TextGen.

    :param model: a trained agent (e.g. from `make_agent`).
    :param env_id: the env to play.
    :param episodes: number of episodes.
    :param seed: seed of the evaluation env.
    :param env_kwargs: constructor arguments of the env (use the training ones).
    :param deterministic: act greedily rather than sample.
    :return: ``mean_return``, ``std_return``, ``mean_length``; on GridWorld ``success_rate``
        (the share of episodes that reached the diamond); on TextGen ``mean_rm_score``.
    """
    venv = textgym.make_sb3_vec_env(env_id, n_envs=1, seed=seed, **(env_kwargs or {}))
    attach_sb3_policy(model, venv)
    masked = isinstance(model, MaskablePPO)
    returns, lengths, last_rewards, rm_scores = [], [], [], []
    obs = venv.reset()
    while len(returns) < episodes:
        if masked:
            action, _ = model.predict(
                obs, deterministic=deterministic, action_masks=get_action_masks(venv)
            )
        else:
            action, _ = model.predict(obs, deterministic=deterministic)
        obs, rewards, dones, infos = venv.step(action)
        if dones[0]:
            returns.append(infos[0]["episode"]["r"])
            lengths.append(infos[0]["episode"]["l"])
            last_rewards.append(rewards[0])
            if "rm_score" in infos[0]:
                rm_scores.append(infos[0]["rm_score"])
    venv.close()
    result = {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
    }
    if env_id.startswith("GridWorld"):
        # Only the diamond ends an episode with reward +1 (fire gives -1, a timeout 0).
        result["success_rate"] = float(np.mean(np.asarray(last_rewards) == 1.0))
    if rm_scores:
        result["mean_rm_score"] = float(np.mean(rm_scores))
    return result
