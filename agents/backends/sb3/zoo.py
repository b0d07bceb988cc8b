"""Agent names -> configured stable-baselines3 / sb3-contrib algorithms, with per-env defaults.

The factory: `make_agent` builds an agent from the hyperparameter tables of
`textgym_agents.backends.hyperparams` (data, with a reason for every value).

```python
from textgym_agents.backends.sb3.zoo import default_budget, make_agent
from textgym_agents.training.evaluation import evaluate

model = make_agent("ppo", "GridWorld-v1", seed=0)
model.learn(default_budget("ppo", "GridWorld-v1"))
print(evaluate(model, "GridWorld-v1", episodes=100, seed=1000))  # success_rate >= 0.95
```
"""

from __future__ import annotations

from typing import Any

from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

import textgym  # noqa: F401  (registers the envs)
from textgym.lm import resolve_device
from textgym_agents.backends.hyperparams import (
    AGENT_ENV_KWARGS,
    AGENTS,
    ENV_DEFAULTS,
    HYPERPARAMS,
    VARIANT_HYPERPARAMS,
)
from textgym_agents.backends.sb3.vec_env import make_sb3_vec_env
from textgym_agents.policies.extractors import ReferencePriorPolicy, TokenExtractor
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy, gpt_policy_kwargs
from textgym_agents.policies.scorer import attach_sb3_policy
from textgym_agents.trainers.sequence_ppo import SequencePPO

__all__ = [
    "AGENTS",
    "ALGORITHMS",
    "agent_env_kwargs",
    "default_budget",
    "default_imitation",
    "is_sequence_agent",
    "make_agent",
]

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "dqn": DQN,
    "maskable_ppo": MaskablePPO,
    # The GPT policy (agents/policies/gpt_policy.py) under SB3's PPO. "gpt" is the sequence-level
    # trainer on TextGen (agents/trainers/sequence_ppo.py) and this same PPO on GridWorld, whose
    # observations are not growing token sequences.
    "gpt": PPO,
    "gpt-sb3": PPO,
}

_GPT_AGENTS = ("gpt", "gpt-sb3")

_ZOO_KEYS = ("n_timesteps", "n_envs", "imitate")


def _config(name: str, env_id: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The zoo entry of agent ``name`` on ``env_id`` (with ``env_kwargs``), or a clear error."""
    if name not in AGENTS:
        raise ValueError(f"agent={name!r} is unknown: expected one of {AGENTS}")
    if env_id not in HYPERPARAMS:
        raise ValueError(
            f"env_id={env_id!r} has no zoo entry: expected one of {tuple(HYPERPARAMS)}"
        )
    for (variant_env, argument), entries in VARIANT_HYPERPARAMS.items():
        if variant_env == env_id and (env_kwargs or {}).get(argument) and name in entries:
            return entries[name]
    return HYPERPARAMS[env_id][name]


def default_budget(name: str, env_id: str, env_kwargs: dict[str, Any] | None = None) -> int:
    """The documented number of env steps to train agent ``name`` on ``env_id``.

    :param name: an agent name from `AGENTS`.
    :param env_id: ``"GridWorld-v1"``, ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    :param env_kwargs: the env's arguments (some select a `VARIANT_HYPERPARAMS` entry).
    """
    return int(_config(name, env_id, env_kwargs)["n_timesteps"])


def default_imitation(name: str, env_id: str, env_kwargs: dict[str, Any] | None = None) -> int:
    """The zoo's env steps of expert demonstrations to clone before RL (0: none)."""
    return int(_config(name, env_id, env_kwargs).get("imitate", 0))


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
) -> BaseAlgorithm | SequencePPO:
    """Agent ``name`` built for ``env_id`` with the zoo's hyperparameters, ready to ``learn``.

    The policy follows the observation space: ``"MultiInputPolicy"`` with `TokenExtractor` for
    token observations (TextGen, GridWorld ``obs_mode="tokens"``; for PPO and A2C on
    TextGen's ``"topk"`` observations `ReferencePriorPolicy`, which starts as the reference
    policy), ``"MlpPolicy"`` otherwise
    (SB3 one-hot encodes GridWorld's ``Discrete`` index observation itself), and
    `GPTActorCriticPolicy` for ``"gpt-sb3"`` and for ``"gpt"`` on GridWorld. ``"gpt"`` on
    TextGen is the sequence-level trainer `SequencePPO`. Keywords are applied in the order
    `ENV_DEFAULTS`, `HYPERPARAMS`, ``overrides``; ``policy_kwargs`` are merged rather than
    replaced; env arguments in the order `AGENT_ENV_KWARGS`, ``env_kwargs``.

    On TextGen the model's policy is attached as the env's policy scorer (`attach_sb3_policy`),
    so the KL step reward uses the acting policy's log-probs.

    Env arguments can select another entry (`VARIANT_HYPERPARAMS`: the GPT policy on random
    grid maps). Its behaviour-cloning stage is not run here but by `textgym_agents.training.train`;
    from Python, call ``clone_expert(model, default_imitation(name, env_id, env_kwargs))`` before
    ``learn``.

    :param name: one of `AGENTS`.
    :param env_id: ``"GridWorld-v1"``, ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    :param seed: seeds the algorithm and the env.
    :param n_envs: parallel envs (default: the zoo's value for the agent and env, else 1).
    :param env_kwargs: constructor arguments of the env, e.g. ``{"obs_mode": "tokens"}``.
    :param tensorboard_log: TensorBoard log folder, or None (SB3 agents;
    `textgym_agents.training.train` logs
        every agent).
    :param verbose: SB3 verbosity (0 silent, 1 info).
    :param overrides: algorithm keywords that replace the zoo's (``n_steps=64``, ...).
    """
    env_kwargs = agent_env_kwargs(name, env_id, env_kwargs)
    config = _config(name, env_id, env_kwargs)
    n_envs = config.get("n_envs", 1) if n_envs is None else n_envs
    if is_sequence_agent(name, env_id):
        kwargs = {k: v for k, v in config.items() if k not in _ZOO_KEYS}
        kwargs.update(overrides)
        return SequencePPO(env_kwargs, seed=seed, num_envs=n_envs, **kwargs)

    kwargs = {**ENV_DEFAULTS[env_id], **{k: v for k, v in config.items() if k not in _ZOO_KEYS}}
    policy_kwargs = {**kwargs.pop("policy_kwargs", {}), **overrides.pop("policy_kwargs", {})}
    kwargs.update(overrides)

    venv = make_sb3_vec_env(env_id, n_envs=n_envs, seed=seed, **env_kwargs)
    if name in _GPT_AGENTS:
        policy = GPTActorCriticPolicy
        policy_kwargs = {**gpt_policy_kwargs(venv), **policy_kwargs}
    elif isinstance(venv.observation_space, spaces.Dict):
        observations = venv.observation_space.spaces
        # Actor-critic agents on TextGen's "topk" observations start as the reference.
        prior = name in ("ppo", "a2c") and "candidate_logprobs" in observations
        policy = ReferencePriorPolicy if prior else "MultiInputPolicy"
        if "input_ids" in observations:
            policy_kwargs = {"features_extractor_class": TokenExtractor, **policy_kwargs}
    else:
        policy = "MlpPolicy"
    model = ALGORITHMS[name](
        policy,
        venv,
        policy_kwargs=policy_kwargs or None,
        tensorboard_log=tensorboard_log,
        verbose=verbose,
        seed=seed,
        **kwargs,
    )
    if isinstance(model, DQN):
        # SB3 sets the rate from its schedule only once learning runs; before, an untrained
        # DQN would act greedily on random Q-values, and learn() acts uniformly at first.
        model.exploration_rate = model.exploration_initial_eps
    attach_sb3_policy(model)  # the policy scorer: TextGen's KL reward uses the acting policy
    return model


def agent_env_kwargs(
    name: str, env_id: str, env_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The env arguments agent ``name`` trains with: `AGENT_ENV_KWARGS`, then ``env_kwargs``."""
    return {**AGENT_ENV_KWARGS.get(env_id, {}).get(name, {}), **(env_kwargs or {})}


def is_sequence_agent(name: str, env_id: str) -> bool:
    """Whether agent ``name`` on ``env_id`` is the sequence-level trainer `SequencePPO`."""
    return name == "gpt" and env_id.startswith("TextGen")


def place_on_device(
    env_id: str,
    agent: str,
    device: str,
    env_kwargs: dict[str, Any] | None,
    overrides: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``device`` as the env's and the agent's arguments (see `train`), or a clear error."""
    resolve_device(device)  # "cuda" without CUDA fails here, before anything is built
    for given, name in ((env_kwargs or {}, "env_kwargs"), (overrides, "overrides")):
        if given.get("device", device) != device:
            raise ValueError(
                f"device={device!r} and {name}['device']={given['device']!r}: expected one "
                "device, given once"
            )
    if env_id.startswith("TextGen"):
        env_kwargs = {**(env_kwargs or {}), "device": device}
    if not is_sequence_agent(agent, env_id):
        overrides = {**overrides, "device": device}
    return env_kwargs, overrides
