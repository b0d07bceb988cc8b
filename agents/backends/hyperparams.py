"""The zoo's hyperparameters, as data: one dict literal per env id, like rl-baselines3-zoo's
yaml files, with the values that differ from the library defaults, each with the reason why.
``n_timesteps`` (the documented budget), ``n_envs`` and ``imitate`` are the zoo's own keys;
every other key is a keyword of the algorithm (`textgym_agents.backends.sb3.zoo.make_agent`
applies them).

Agent names mean one thing per env, and the table says which: ``gpt`` is the GPT policy
trained the best way each env allows, `SequencePPO` (sequence-level PPO with a KV cache) on
TextGen and SB3's PPO on GridWorld (whose observations are not growing token sequences);
``gpt-sb3`` is the GPT policy under SB3's PPO on both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import textgym  # noqa: F401  (registers the envs)

SB3_AGENTS: tuple[str, ...] = ("ppo", "a2c", "dqn", "maskable_ppo")  # standard policies

AGENTS: tuple[str, ...] = (*SB3_AGENTS, "gpt", "gpt-sb3")

# Env arguments an agent needs on an env, applied before the caller's ``env_kwargs``.
AGENT_ENV_KWARGS: dict[str, dict[str, dict[str, Any]]] = {
    "GridWorld-v1": {
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
AGENT_ENV_KWARGS["GridWorld-v0"] = AGENT_ENV_KWARGS["GridWorld-v1"]

# Algorithm keywords every agent gets on an env, before its own entry in HYPERPARAMS.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "GridWorld-v1": {"gamma": 0.99},
    "GridWorld-v0": {"gamma": 0.99},
    # Every token shapes the finished text equally: no discount.
    "TextGen-v0": {"gamma": 1.0},
}


def linear(start: float) -> Callable[[float], float]:
    """A learning rate that decays linearly from ``start`` to 0 over the budget."""
    return lambda progress_remaining: start * progress_remaining


# The GridWorld-v0 entries make every agent reach the diamond from seeds 0, 1 and 2 (see
# tests/test_agents_sb3.py for the measured results). The diamond is rare under a random walk
# (0.7% of episodes, 10 moves past three fires), so exploration decides.
# PPO and MaskablePPO share their GridWorld settings.
_GRID_PPO: dict[str, Any] = {
    "n_timesteps": 200_000,
    "n_envs": 8,
    "n_steps": 128,  # 1,024 steps a rollout: many updates in a small budget
    "batch_size": 256,  # 4 minibatches a rollout
    "learning_rate": linear(1e-3),  # fast at first, then settles the greedy policy
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
    "learning_rate": linear(3e-3),  # fast: the first diamonds must count before fire is avoided
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
    # GridWorld-v1 (the 4x4 map, shaped) is learnt at the libraries' defaults
    # (scripts/stock_defaults.py; one env, as SB3 defaults to), so the zoo's SB3 agents are
    # those defaults with a budget. The GPT keeps the settings tuned for v0 below.
    "GridWorld-v1": {
        "ppo": {"n_timesteps": 100_000},
        "a2c": {"n_timesteps": 100_000},
        "dqn": {"n_timesteps": 100_000},
        "maskable_ppo": {"n_timesteps": 100_000},
        "gpt": _GRID_GPT,
        "gpt-sb3": _GRID_GPT,
    },
    # v0's default map (6x6): tuned so that exploration finds the diamond.
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
            "learning_rate": linear(1e-3),
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
    # are 2x faster, MaskablePPO in vocab mode 2x slower). Measured results: docs/results.md
    # (tests/test_learning_textgen.py).
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
            "n_timesteps": 20_000,  # acting recomputes every token's whole prefix: slow
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
# of demonstrations by the env's shortest-path expert,
# `textgym_agents.trainers.imitation.clone_expert`), and PPO fine-tunes it. Measured:
# docs/results.md.
_RANDOM_MAP_GPT: dict[str, Any] = {
    "imitate": 200_000,
    "n_timesteps": 150_000,
    "n_envs": 32,
    "n_steps": 64,  # 2,048 steps a rollout
    "batch_size": 256,
    "n_epochs": 4,
    # Small steps from the cloned policy; its critic was fitted with it.
    "learning_rate": linear(3e-4),
    "ent_coef": 0.01,
}

# Entries that replace an agent's `HYPERPARAMS` when an env argument is set.
VARIANT_HYPERPARAMS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("GridWorld-v0", "random_map"): {"gpt": _RANDOM_MAP_GPT, "gpt-sb3": _RANDOM_MAP_GPT},
    ("GridWorld-v1", "random_map"): {"gpt": _RANDOM_MAP_GPT, "gpt-sb3": _RANDOM_MAP_GPT},
}

# Ray RLlib backend (`textgym_agents.backends.rllib`, ``train(..., backend="rllib")``): its agents,
# their env arguments and PPOConfig keywords.
RLLIB_AGENTS: tuple[str, ...] = ("ppo", "gpt")

# PPOConfig.training keywords (and the zoo's n_timesteps, n_envs) per env and agent: the
# values that differ from RLlib's defaults, each with its reason. Every tuned entry uses PPO's
# clipped objective alone, as SB3 and SequencePPO do (RLlib's default adds a KL loss).
RLLIB_HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    # RLlib's own PPO at its defaults (its KL loss included) learns GridWorld-v1
    # (scripts/stock_defaults.py --library rllib): the zoo adds only a budget. The GPT keeps
    # the settings tuned for v0 below.
    "GridWorld-v1": {"ppo": {"n_timesteps": 100_000, "n_envs": 2}},  # one env per runner
    # v0's default map (6x6): tuned so that exploration finds the diamond.
    "GridWorld-v0": {
        # The SB3 entry's settings (one-step advantages, 1,024 steps an update) with a far
        # larger entropy bonus: RLlib always standardises advantages, and once fire is avoided
        # the small value differences near the fires, blown up to unit scale, teach the walk
        # to back away from them and it stops finding the diamond (0% of seeds at 0.05 and
        # 0.2, 2 of 3 at 0.5, 4 of 5 at 1.0). At 2.0 seeds 0-4 all reach it, every greedy
        # check from 154,000 steps on (measured with num_env_runners=0).
        "ppo": {
            "n_timesteps": 300_000,
            "n_envs": 8,
            "use_kl_loss": False,
            "train_batch_size_per_learner": 1024,  # many updates in a small budget
            "minibatch_size": 256,
            "lr": [[0, 1e-3], [300_000, 1e-5]],  # fast at first, then settles the greedy policy
            "entropy_coeff": 2.0,
            # One-step advantages: a fire blames only the move into it (see the SB3 entry).
            "lambda_": 0.0,
            "gamma": 0.99,
            "grad_clip": 0.5,
            # RLlib's default module, smaller: SB3's MlpPolicy size, separate value layers.
            "model_config": {
                "fcnet_hiddens": [64, 64],
                "fcnet_activation": "tanh",
                "vf_share_layers": False,
            },
        },
        "gpt": {
            "n_timesteps": 100_000,
            "n_envs": 16,
            "use_kl_loss": False,
            "train_batch_size_per_learner": 1024,
            "minibatch_size": 64,
            "num_epochs": 2,
            "lr": 1e-3,
            "entropy_coeff": 0.1,
            "lambda_": 0.0,
            "gamma": 0.99,
        },
    },
    "TextGen-v0": {
        "ppo": {
            "n_timesteps": 100_000,
            "n_envs": 16,
            "use_kl_loss": False,
            "train_batch_size_per_learner": 1536,  # 4 episodes of 24 tokens per row
            "minibatch_size": 256,
            "lr": 1e-4,  # as the SB3 entry: 3e-4 drifts far from the reference
            "gamma": 1.0,  # every token shapes the finished text equally
        },
        # SequencePPO's settings: 64 rows, an episode each per update, 4 epochs of 16-episode
        # minibatches, small steps from the reference, a small value gradient.
        "gpt": {
            "n_timesteps": 100_000,
            "n_envs": 64,
            "use_kl_loss": False,
            "train_batch_size_per_learner": 1536,
            "minibatch_size": 384,
            "num_epochs": 4,
            "lr": 3e-5,
            "vf_loss_coeff": 0.1,
            "grad_clip": 0.5,
            "gamma": 1.0,
        },
    },
}

RLLIB_HYPERPARAMS["GridWorld-v1"]["gpt"] = RLLIB_HYPERPARAMS["GridWorld-v0"]["gpt"]

# Env arguments an agent needs (as in the SB3 zoo): SB3-style agents choose among the
# reference's top-k tokens; the GPT reads GridWorld as tokens.
RLLIB_ENV_KWARGS: dict[str, dict[str, dict[str, Any]]] = {
    "GridWorld-v0": {"gpt": {"obs_mode": "tokens"}},
    "GridWorld-v1": {"gpt": {"obs_mode": "tokens"}},
    "TextGen-v0": {"ppo": {"action_mode": "topk"}},
}
