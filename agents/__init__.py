"""Agents that train on any textgym environment through its public API.

The package is arranged by job: `policies` (the GPT policy, extractors, KL scorers), `trainers`
(`SequencePPO`, behaviour cloning), `backends` (stable-baselines3's zoo and VecEnvs; Ray RLlib),
`training` (train, the run directory, checkpoints, logs, evaluation, comparisons) and `cli`
(the ``textgym`` command). What a user reaches for is importable from here::

    from textgym_agents import evaluate_run, train

    summary = train("GridWorld-v1", "ppo", seed=0, out="runs/grid-ppo")
    print(evaluate_run("runs/grid-ppo")["mean_return"])

Each name is imported on first use (``import textgym_agents`` imports neither torch nor an RL
library).
"""

from __future__ import annotations

import importlib
from typing import Any

# Each public name -> the module that defines it.
_EXPORTS = {
    "train": "textgym_agents.training.train",
    "TrainingInterrupted": "textgym_agents.training.recorder",
    "evaluate_run": "textgym_agents.training.evaluation",
    "play_run": "textgym_agents.training.evaluation",
    "evaluate": "textgym_agents.training.evaluation",
    "evaluate_reference": "textgym_agents.training.evaluation",
    "load_agent": "textgym_agents.training.rundir",
    "format_summary": "textgym_agents.training.rundir",
    "compare": "textgym_agents.training.compare",
    "AGENTS": "textgym_agents.backends.sb3.zoo",
    "make_agent": "textgym_agents.backends.sb3.zoo",
    "default_budget": "textgym_agents.backends.sb3.zoo",
    "make_sb3_vec_env": "textgym_agents.backends.sb3.vec_env",
    "GPTActorCriticPolicy": "textgym_agents.policies.gpt_policy",
    "gpt_policy_kwargs": "textgym_agents.policies.gpt_policy",
    "TokenExtractor": "textgym_agents.policies.extractors",
    "ReferencePriorPolicy": "textgym_agents.policies.extractors",
    "AttachPolicyCallback": "textgym_agents.policies.scorer",
    "attach_sb3_policy": "textgym_agents.policies.scorer",
    "SequencePPO": "textgym_agents.trainers.sequence_ppo",
    "clone_expert": "textgym_agents.trainers.imitation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'textgym_agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
