"""Learning results on the default TextGen task (slow: ``python -m pytest -m slow``).

Measured (2-core CPU, torch 2 threads, nothing else running; `textgym train` prints the same):

- ``gpt`` (sequence-level PPO), 100,000 steps: see README "Training" for the figures.
- SB3 agents at their zoo budgets beat the reference policy's return in their action mode.
"""

from __future__ import annotations

import time

import pytest

from agents.zoo import (
    SB3_AGENTS,
    agent_env_kwargs,
    default_budget,
    evaluate,
    evaluate_reference,
    make_agent,
)

pytestmark = pytest.mark.slow
ENV = "TextGen-v0"


def test_gpt_policy_makes_90_percent_positive_within_6_nats_and_20_minutes():
    agent = make_agent("gpt", ENV, seed=0)
    start = time.perf_counter()
    agent.learn(default_budget("gpt", ENV))
    minutes = (time.perf_counter() - start) / 60
    result = evaluate(agent, ENV, episodes=200, seed=10_000)
    assert result["positive_share"] >= 0.90, result
    assert result["mean_kl_per_sequence"] <= 6.0, result
    assert minutes <= 20, minutes


@pytest.mark.parametrize("name", SB3_AGENTS)
def test_sb3_agents_beat_the_reference_return(name):
    env_kwargs = agent_env_kwargs(name, ENV)
    model = make_agent(name, ENV, seed=0)
    model.learn(default_budget(name, ENV))
    result = evaluate(model, ENV, episodes=200, seed=10_000, env_kwargs=env_kwargs)
    reference = evaluate_reference(200, seed=10_000, env_kwargs=env_kwargs)
    assert result["mean_return"] > reference["mean_return"], (result, reference)
