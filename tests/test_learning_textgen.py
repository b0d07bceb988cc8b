"""Learning results on the default TextGen task (slow: ``python -m pytest -m slow``).

Measured (2-core CPU, torch 2 threads, nothing else running; `textgym train` prints the same):

- ``gpt`` (sequence-level PPO), 100,000 steps: 100% positive continuations, KL 3.75 nats per
  sequence, in 6.4 minutes (one thread, machine shared): README, "The main job".
- ``ppo`` (SB3, topk mode, `ReferencePriorPolicy`), 100,000 steps: mean return 0.34 against
  the reference's 0.20 (200 evaluation episodes each).
- ``a2c`` (the same policy, Adam at 1e-3, normalised advantages), 150,000 steps: mean return
  0.255 against the reference's 0.152 (seed 0; seeds 1 and 2: 0.319, 0.280; 300 episodes).
"""

from __future__ import annotations

import time

import pytest

from textgym_agents.backends.sb3.zoo import agent_env_kwargs, default_budget, make_agent
from textgym_agents.training.evaluation import evaluate, evaluate_reference

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


@pytest.mark.parametrize("agent", ["ppo", "a2c"])
def test_actor_critic_agents_beat_the_reference_return(agent: str):
    # PPO and A2C start as the reference (ReferencePriorPolicy); MaskablePPO and DQN do not
    # beat it within their budgets (docs/results.md).
    env_kwargs = agent_env_kwargs(agent, ENV)
    model = make_agent(agent, ENV, seed=0)
    model.learn(default_budget(agent, ENV))
    result = evaluate(model, ENV, episodes=500, seed=10_000, env_kwargs=env_kwargs)
    reference = evaluate_reference(500, seed=10_000, env_kwargs=env_kwargs)
    assert result["mean_return"] > reference["mean_return"] + 0.05, (result, reference)
