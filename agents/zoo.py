"""Agent names -> configured stable-baselines3 / sb3-contrib algorithms, with per-env defaults.

Like rl-baselines3-zoo's yaml files, `HYPERPARAMS` holds one dict literal per env id with the
values that differ from the library defaults, each with the reason why. ``n_timesteps`` (the
documented budget, see `default_budget`) and ``n_envs`` are the zoo's own keys; every other
key is a keyword of the algorithm.

```python
from textgym_agents.zoo import default_budget, evaluate, make_agent

model = make_agent("ppo", "GridWorld-v0", seed=0)
model.learn(default_budget("ppo", "GridWorld-v0"))
print(evaluate(model, "GridWorld-v0", episodes=100, seed=1000))  # success_rate >= 0.95
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

import textgym  # noqa: F401  (registers the envs)
from textgym._checks import check_int
from textgym_agents.extractors import ReferencePriorPolicy, TokenExtractor
from textgym_agents.gpt_policy import GPTActorCriticPolicy, gpt_policy_kwargs
from textgym_agents.sb3_env import make_sb3_vec_env
from textgym_agents.scorer import attach_sb3_policy
from textgym_agents.sequence_ppo import SequencePPO

__all__ = [
    "AGENTS",
    "ALGORITHMS",
    "AGENT_ENV_KWARGS",
    "ENV_DEFAULTS",
    "HYPERPARAMS",
    "SB3_AGENTS",
    "TextEpisode",
    "VARIANT_HYPERPARAMS",
    "agent_env_kwargs",
    "default_budget",
    "default_imitation",
    "evaluate",
    "evaluate_reference",
    "is_sequence_agent",
    "make_agent",
    "play_text",
]

SB3_AGENTS: tuple[str, ...] = ("ppo", "a2c", "dqn", "maskable_ppo")  # standard policies
AGENTS: tuple[str, ...] = (*SB3_AGENTS, "gpt", "gpt-sb3")
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "dqn": DQN,
    "maskable_ppo": MaskablePPO,
    # The GPT policy (agents/gpt_policy.py) under SB3's PPO. "gpt" is the sequence-level
    # trainer on TextGen (agents/sequence_ppo.py) and this same PPO on GridWorld, whose
    # observations are not growing token sequences.
    "gpt": PPO,
    "gpt-sb3": PPO,
}
_GPT_AGENTS = ("gpt", "gpt-sb3")

# Env arguments an agent needs on an env, applied before the caller's ``env_kwargs``.
AGENT_ENV_KWARGS: dict[str, dict[str, dict[str, Any]]] = {
    "GridWorld-v0": {
        "gpt": {"obs_mode": "tokens"},  # a transformer reads the grid as tokens
        "gpt-sb3": {"obs_mode": "tokens"},
    },
    "TextGen-v0": {
        # A fresh policy over the whole vocabulary would start far from the reference (a
        # uniform distribution over 2,356 tokens): SB3's standard agents choose among the
        # reference's top-k tokens, MaskablePPO among the whole vocabulary with the
        # reference's top-k masks. The GPT policy starts as the reference, in vocab mode.
        "ppo": {"action_mode": "topk"},
        "a2c": {"action_mode": "topk"},
        "dqn": {"action_mode": "topk"},
    },
}

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

# The GPT reads the robot's cell from 42 tokens, and at first its output hardly depends on it:
# every cell shares one action distribution, which the frequent fires push away from the fires
# as a whole, and the walk stays near the start. Its updates cost some 50 times the MLP's per
# step, so the budget buys few epochs (tests/test_agents_gpt_grid.py has the results).
_GRID_GPT: dict[str, Any] = {
    # Half the training episodes reach the diamond after 33,000-49,000 steps (seeds 0-2); the
    # rest makes the greedy policy exact (after 60,000 steps it still failed for seeds 1, 2).
    "n_timesteps": 100_000,
    "n_envs": 16,
    "n_steps": 64,  # 1,024 steps a rollout
    "batch_size": 64,  # 16 small minibatches a rollout: many updates for the compute
    "n_epochs": 2,  # an epoch costs some 2.5 times the rollout's forward passes
    "learning_rate": _linear(3e-3),  # fast: the first diamonds must count before fire is avoided
    # Keeps the walk random until the diamond is found: with these 2 epochs even the MLP
    # policy found it for 2 of 4 seeds at 0.05, for 4 of 4 at 0.1.
    "ent_coef": 0.1,
    # One-step advantages: a fire blames only the move into it, not the moves that led near
    # it, and the value head (trained on the same one-step targets) learns the cells apart.
    # With 0.95 the walk retreats from the fires and rarely finds the diamond.
    "gae_lambda": 0.0,
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
        # The GPT policy reads obs_mode="tokens" (AGENT_ENV_KWARGS).
        "gpt": _GRID_GPT,
        "gpt-sb3": _GRID_GPT,
    },
    # Budgets of a few minutes on one CPU thread (PPO, topk mode: about 3 min; A2C and DQN
    # are 2x faster, MaskablePPO in vocab mode 2x slower). Measured results: README "Learning
    # results" (tests/test_learning_textgen.py).
    "TextGen-v0": {
        "ppo": {
            "n_timesteps": 100_000,
            "n_envs": 16,  # one batched forward pass of the reference serves 16 sequences
            "n_steps": 96,  # 4 episodes of 24 tokens per row and rollout
            "batch_size": 256,  # 6 minibatches a rollout
            # The policy starts as the reference; SB3's 3e-4 drifts far from it (KL 8 nats
            # per sequence, return 0.15 < the reference's 0.16), 1e-4 gains more RM score
            # than it pays in KL (return 0.34, KL 3.0; seed 0, 100,000 steps).
            "learning_rate": 1e-4,
        },
        "a2c": {
            "n_timesteps": 150_000,
            "n_envs": 16,  # one batched forward pass of the reference serves 16 sequences
            "n_steps": 24,  # one episode of 24 tokens per row and update
            # SB3's RMSprop did not move the policy from the reference at 1e-4 to 7e-4 and
            # drifted the wrong way at 3e-3 and 1e-2 (RM 0.11, -0.23); Adam at 1e-3 with
            # normalised advantages gains steadily (return 0.24 at 100,000 steps, 0.26 at
            # 200,000 against the reference's 0.15; seed 0). 3e-4 was too slow, 3e-3 noisy.
            "use_rms_prop": False,
            "learning_rate": 1e-3,
            "normalize_advantage": True,
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
        # SequencePPO's keywords. The policy starts as the reference: small steps.
        "gpt": {
            "n_timesteps": 100_000,
            "n_envs": 64,  # 64 rows share each forward pass, the policy's and the reference's
            "episodes_per_update": 64,
            "n_epochs": 4,
            "minibatch_episodes": 16,
            "learning_rate": 3e-5,
            "vf_coef": 0.1,  # the value head shares the trunk: keep its gradient small
        },
        "gpt-sb3": {
            "n_timesteps": 20_000,  # every token recomputes its whole prefix: slow
            "n_envs": 16,
            "n_steps": 48,  # 2 episodes of 24 tokens per row and rollout
            "batch_size": 128,
            "n_epochs": 4,
            "learning_rate": 3e-5,
            "vf_coef": 0.1,
        },
    },
}

# GridWorld-v0 with ``random_map=True`` (a new map at every reset): PPO alone does not teach
# the GPT policy to generalise within hours here (4-8% of held-out maps after up to 300,000
# steps), so it starts, as RLHF's policy does, from behaviour cloning (``imitate``: env steps
# of demonstrations by the env's shortest-path expert, `textgym_agents.imitation.clone_expert`), and
# PPO fine-tunes it. Measured: README "Learning results".
_RANDOM_MAP_GPT: dict[str, Any] = {
    "imitate": 200_000,
    "n_timesteps": 150_000,
    "n_envs": 32,
    "n_steps": 64,  # 2,048 steps a rollout
    "batch_size": 256,
    "n_epochs": 4,
    # Small steps from the cloned policy; its critic was fitted with it.
    "learning_rate": _linear(3e-4),
    "ent_coef": 0.01,
}

# Entries that replace an agent's `HYPERPARAMS` when an env argument is set.
VARIANT_HYPERPARAMS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GridWorld-v0", "random_map"): {"gpt": _RANDOM_MAP_GPT, "gpt-sb3": _RANDOM_MAP_GPT},
}

_ZOO_KEYS = ("n_timesteps", "n_envs", "imitate")

# VADER's convention: a compound score above 0.05 is positive.
POSITIVE_THRESHOLD = 0.05


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
    :param env_id: ``"GridWorld-v0"`` or ``"TextGen-v0"``.
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
    grid maps). Its behaviour-cloning stage is not run here but by `textgym_agents.run.train`; from
    Python, call ``clone_expert(model, default_imitation(name, env_id, env_kwargs))`` before
    ``learn``.

    :param name: one of `AGENTS`.
    :param env_id: ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    :param seed: seeds the algorithm and the env.
    :param n_envs: parallel envs (default: the zoo's value for the agent and env, else 1).
    :param env_kwargs: constructor arguments of the env, e.g. ``{"obs_mode": "tokens"}``.
    :param tensorboard_log: TensorBoard log folder, or None (SB3 agents; `textgym_agents.run` logs
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


def evaluate(
    model: BaseAlgorithm | SequencePPO | BasePolicy,
    env_id: str,
    *,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    deterministic: bool | None = None,
    n_envs: int = 16,
    samples: int = 0,
) -> dict[str, Any]:
    """Play ``episodes`` episodes of ``env_id`` with ``model``'s policy and summarise them.

    Action masks are passed to ``predict`` for `MaskablePPO`. The env is a fresh one, with
    the model's policy attached as its KL scorer on TextGen. ``n_envs`` rows play at once,
    each its share of the episodes (so short episodes are not over-represented).

    :param model: a trained agent (e.g. from `make_agent`), or an SB3 policy.
    :param env_id: the env to play.
    :param episodes: number of episodes.
    :param seed: seed of the evaluation env. The agent samples from torch's global
        generator, which this leaves as it is (in `textgym_agents.run.train` it continues the
        training's seeded stream); wrap the call in `torch_seeded` for a standalone
        reproducible evaluation.
    :param env_kwargs: constructor arguments of the env (use the training ones, e.g.
        `agent_env_kwargs`).
    :param deterministic: act greedily rather than sample. Default: greedy on GridWorld; on
        TextGen sample, because the policy *is* the distribution over texts (its KL to the
        reference, which the return includes, is that of the sampling policy).
    :param n_envs: rows playing at once (at most ``episodes``).
    :param samples: TextGen: also return the first ``samples`` episodes' prompt, text, RM
        score and KL.
    :return: ``deterministic`` (whether it acted greedily), ``mean_return``, ``std_return``,
        ``mean_length``; on GridWorld ``success_rate``
        (the share of episodes that reached the diamond); on TextGen ``mean_rm_score``,
        ``positive_share`` (RM score > 0.05: VADER's "positive"), ``reference_perplexity``
        (the reference model's perplexity of the generated tokens: fluency; in ``"topk"``
        mode among the candidates) and, with a scorer, ``mean_kl_per_sequence``; ``samples``
        if asked for.
    """
    is_text = env_id.startswith("TextGen")
    deterministic = not is_text if deterministic is None else deterministic
    venv = make_sb3_vec_env(env_id, n_envs=_rows(episodes, n_envs), seed=seed, **(env_kwargs or {}))
    act = _agent_policy(model, venv, deterministic)
    result = _summarise(_play(venv, act, env_id, episodes), env_id, episodes, samples)
    return {"deterministic": deterministic, **result}


@contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Seed torch's generators for the agent's sampling, so the same seed plays the same
    episodes; the caller's random state is restored afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _agent_policy(
    model: BaseAlgorithm | SequencePPO | BasePolicy, venv, deterministic: bool
) -> Callable[[Any], np.ndarray]:
    """``act(obs) -> actions`` of ``model`` on ``venv``, whose TextGen envs get the model's
    policy as their KL scorer."""
    policy = model if isinstance(model, BasePolicy) else model.policy
    attach_sb3_policy(model if isinstance(model, BaseAlgorithm) else policy, venv)
    if isinstance(model, MaskablePPO):

        def act(obs):
            masks = get_action_masks(venv)
            return model.predict(obs, deterministic=deterministic, action_masks=masks)[0]

    else:

        def act(obs):
            return model.predict(obs, deterministic=deterministic)[0]

    return act


def evaluate_reference(
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    *,
    n_envs: int = 16,
    samples: int = 0,
) -> dict[str, Any]:
    """`evaluate` for TextGen's reference policy: tokens sampled from the env's reference
    distribution (renormalised over the candidates in ``"topk"`` mode), attached as its own
    scorer, so the KL is 0 and the return is the mean RM score. The baseline every TextGen
    agent is measured against."""
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=_rows(episodes, n_envs), seed=seed, **(env_kwargs or {})
    )
    act = _reference_policy(venv, seed)
    return _summarise(_play(venv, act, "TextGen-v0", episodes), "TextGen-v0", episodes, samples)


def _reference_policy(venv, seed: int, temperature: float = 1.0) -> Callable[[Any], np.ndarray]:
    """``act(obs) -> actions`` sampling from the reference distribution of ``venv``'s TextGen
    core at ``temperature``, attached as its own scorer (so the KL is 0 at temperature 1)."""
    core = venv.unwrapped.core

    def logprobs() -> np.ndarray:  # (N, A)
        scaled = core.reference_logprobs().astype(np.float64) / temperature
        return scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)

    core.attach_policy(lambda input_ids, attention_mask: logprobs())
    rng = np.random.default_rng(seed)

    def act(obs):
        cumulative = np.cumsum(np.exp(logprobs()), axis=1)
        return (cumulative > rng.random((len(cumulative), 1)) * cumulative[:, -1:]).argmax(1)

    return act


@dataclass
class TextEpisode:
    """One TextGen episode token by token, as `textgym.render` draws it."""

    prompt: str
    text: str  # the continuation as the env decoded and scored it
    tokens: list[str]  # the generated tokens, each decoded on its own
    step_rewards: list[float]  # the KL part of each token's reward
    rm_score: float
    penalty: float = 0.0  # the missing-EOS penalty paid at the end (0 if none)


def play_text(
    model: BaseAlgorithm | SequencePPO | BasePolicy | None,
    *,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    temperature: float = 1.0,
    n_envs: int = 16,
) -> list[TextEpisode]:
    """Play ``episodes`` TextGen episodes as `evaluate` plays them (sampling, with the acting
    policy attached as the KL scorer) and return them token by token (`textgym render`).

    :param model: a trained agent or policy, or None for the reference policy.
    :param episodes: number of episodes.
    :param seed: seed of the env (and of the reference policy's sampling).
    :param env_kwargs: constructor arguments of the env (use the training ones).
    :param temperature: the reference policy's sampling temperature (only with ``model=None``).
    :param n_envs: rows playing at once (at most ``episodes``).
    """
    if model is not None and temperature != 1.0:
        raise ValueError(
            f"temperature={temperature!r} applies to the reference policy (model=None) only: "
            "an agent samples from its own policy"
        )
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=_rows(episodes, n_envs), seed=seed, **(env_kwargs or {})
    )
    tokenizer = venv.get_attr("tokenizer")[0]
    if model is None:
        act = _reference_policy(venv, seed, temperature)
    else:
        act = _agent_policy(model, venv, deterministic=False)
    played = []
    with torch_seeded(seed):
        infos = _play(venv, act, "TextGen-v0", episodes)
    for info in infos:
        # The generated tokens are the last real ones of the final observation.
        final, steps = info["terminal_observation"], len(info["kl_rewards"])
        end = int(final["attention_mask"].sum())
        tokens = [tokenizer.decode([token]) for token in final["input_ids"][end - steps : end]]
        played.append(
            TextEpisode(
                info["prompt"],
                info["text"],
                tokens,
                info["kl_rewards"],
                info["rm_score"],
                info["eos_penalty"],
            )
        )
    return played


def _rows(episodes: int, n_envs: int) -> int:
    check_int("episodes", episodes, 1)
    return min(n_envs, episodes)


def _play(venv, act, env_id: str, episodes: int) -> list[dict[str, Any]]:
    """Play ``episodes`` episodes with ``act(obs) -> actions``: the last step's info of each,
    with ``last_reward`` and, on TextGen, ``kl_rewards`` (the KL part of every step's reward).
    """
    n_envs, is_text = venv.num_envs, env_id.startswith("TextGen")
    quota = [episodes // n_envs + (row < episodes % n_envs) for row in range(n_envs)]
    played = [[] for _ in range(n_envs)]
    ref_logprob_sum = np.zeros(n_envs)  # TextGen: log pi_ref of each row's episode so far
    kl_rewards = [[] for _ in range(n_envs)]  # TextGen: -beta * KL of each row's steps so far
    obs = venv.reset()
    while any(len(rows) < q for rows, q in zip(played, quota)):
        obs, rewards, dones, infos = venv.step(act(obs))
        if is_text:
            ref_logprob_sum += [info["ref_logprob"] for info in infos]
            for row, info in enumerate(infos):
                kl_rewards[row].append(info["kl_reward"])
        for row in np.flatnonzero(dones):
            if len(played[row]) < quota[row]:
                played[row].append(
                    {
                        **infos[row],
                        "last_reward": float(rewards[row]),
                        "ref_logprob_sum": ref_logprob_sum[row],
                        "kl_rewards": kl_rewards[row],
                    }
                )
            ref_logprob_sum[row] = 0.0
            kl_rewards[row] = []
    venv.close()
    # Row-major order: the first episodes of every row come first.
    return [row[i] for i in range(max(quota)) for row in played if i < len(row)]


def _summarise(
    done: list[dict[str, Any]], env_id: str, episodes: int, samples: int
) -> dict[str, Any]:
    """The summary `evaluate` returns of the episodes `_play` played."""
    is_text = env_id.startswith("TextGen")
    returns = [info["episode"]["r"] for info in done]
    result: dict[str, Any] = {
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean([info["episode"]["l"] for info in done])),
    }
    if env_id.startswith("GridWorld"):
        # Only the diamond ends an episode with reward +1 (fire gives -1, a timeout 0).
        result["success_rate"] = float(np.mean([info["last_reward"] == 1.0 for info in done]))
    if is_text:
        scores = np.array([info["rm_score"] for info in done])
        result["mean_rm_score"] = float(scores.mean())
        result["positive_share"] = float(np.mean(scores > POSITIVE_THRESHOLD))
        tokens = sum(info["episode"]["l"] for info in done)
        result["reference_perplexity"] = float(
            np.exp(-sum(info["ref_logprob_sum"] for info in done) / tokens)
        )
        if all("episode_kl" in info for info in done):
            result["mean_kl_per_sequence"] = float(np.mean([info["episode_kl"] for info in done]))
        if samples:
            result["samples"] = [
                {key: info.get(key) for key in ("prompt", "text", "rm_score", "episode_kl")}
                for info in done[:samples]
            ]
    return result
