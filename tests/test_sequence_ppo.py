"""The sequence-level PPO trainer of the GPT policy (the zoo's ``gpt`` agent on TextGen)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textgym_agents.gpt_policy import GPTActorCriticPolicy
from textgym_agents.sequence_ppo import SequencePPO
from textgym_agents.zoo import make_agent

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]


def trainer(path, *, action_mode="vocab", rm=None, kl_coef=0.5, **kwargs) -> SequencePPO:
    env_kwargs = {
        "model": str(path),
        "prompts": PROMPTS,
        "max_new_tokens": 5,
        "kl_coef": kl_coef,
        "action_mode": action_mode,
        "top_k": 5,
    }
    if rm is not None:
        env_kwargs["reward_model"] = rm
    settings = {"num_envs": 4, "episodes_per_update": 8, "minibatch_episodes": 4, **kwargs}
    return SequencePPO(env_kwargs, seed=0, **settings)


def full_forward_logprobs(agent: SequencePPO, episodes) -> list[np.ndarray]:
    """Each episode's action log-probs from one plain forward pass over its sequence."""
    with torch.no_grad():
        logits, _, _ = agent._forward(episodes)
    logprobs = torch.log_softmax(logits, -1).numpy()
    return [logprobs[i, np.arange(len(e.actions)), e.actions] for i, e in enumerate(episodes)]


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_policy_starts_as_the_reference_so_rewards_are_the_rm_score(tiny_gpt2, action_mode):
    agent = trainer(tiny_gpt2, action_mode=action_mode)
    episodes = agent.collect()
    assert len(episodes) >= 8
    for e in episodes:
        assert abs(e.kl) < 1e-4  # the env's KL, from the trainer's own log-probs
        np.testing.assert_allclose(e.rewards[:-1], 0.0, atol=1e-4)
        assert e.rewards[-1] == pytest.approx(e.rm_score, abs=1e-4)


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_acting_log_probs_match_one_forward_over_the_sequence(tiny_gpt2, action_mode):
    # Rows end at different steps (EOS) and restart mid-rollout: the KV cache is spliced.
    agent = trainer(tiny_gpt2, action_mode=action_mode, episodes_per_update=24)
    episodes = agent.collect()
    assert len({len(e.tokens) for e in episodes}) > 1 or len(episodes) > agent.num_envs
    for e, recomputed in zip(episodes, full_forward_logprobs(agent, episodes)):
        np.testing.assert_allclose(e.logprobs, recomputed, atol=1e-4)
        if action_mode == "topk":
            chosen = e.candidates[np.arange(len(e.tokens)), e.actions]
            np.testing.assert_array_equal(chosen, e.tokens)


def test_acting_after_an_update_uses_the_new_weights(tiny_gpt2):
    agent = trainer(tiny_gpt2, learning_rate=1e-3)
    first = agent.collect()
    before = full_forward_logprobs(agent, first)
    agent.update(first)
    assert not np.allclose(
        np.concatenate(before), np.concatenate(full_forward_logprobs(agent, first))
    )
    # Episodes in flight at the update keep the behaviour log-probs of their earlier tokens;
    # every last token was sampled by the updated policy, through its rebuilt cache.
    second = agent.collect()
    for e, recomputed in zip(second, full_forward_logprobs(agent, second)):
        assert e.logprobs[-1] == pytest.approx(recomputed[-1], abs=1e-4)


def test_update_is_one_forward_per_sequence(tiny_gpt2):
    agent = trainer(tiny_gpt2, n_epochs=2)
    episodes = agent.collect()[:8]
    rows = []
    hook = agent.policy.trunk.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    agent.update(episodes)
    hook.remove()
    # One no-grad pass for the old values, then 2 epochs x 2 minibatches of 4 sequences.
    assert rows == [8, 4, 4, 4, 4]


def test_updates_raise_the_reward(tiny_gpt2):
    # Reward: the share of the letter "e" in the continuation.
    def reward(prompts, texts):
        return [t.count("e") / max(1, len(t)) for t in texts]

    settings = {"num_envs": 8, "episodes_per_update": 16, "minibatch_episodes": 8}
    agent = trainer(tiny_gpt2, rm=reward, kl_coef=0.0, learning_rate=1e-2, **settings)
    before = np.mean([e.rm_score for e in agent.collect()])
    for _ in range(14):
        agent.update(agent.collect())
    after = np.mean([e.rm_score for e in agent.collect()])
    assert after > before + 0.1, (before, after)


def test_learn_counts_generated_tokens_and_calls_back(tiny_gpt2):
    agent = trainer(tiny_gpt2)
    seen = []
    agent.learn(30, callback=lambda a, stats: seen.append(stats))
    assert agent.num_timesteps >= 30
    assert seen and seen[-1].timesteps == agent.num_timesteps
    assert all(s.tokens > 0 and s.collect_seconds > 0 and s.update_seconds > 0 for s in seen)
    stop = []
    agent.learn(10_000, callback=lambda a, stats: stop.append(1) or False)
    assert len(stop) == 1


def test_the_env_cannot_be_stepped_behind_the_trainers_back(tiny_gpt2):
    agent = trainer(tiny_gpt2)
    agent.collect()
    with pytest.raises(RuntimeError, match="SequencePPO"):
        for _ in range(2):  # the first step may only restart rows that just finished
            agent.env.step(np.zeros(agent.num_envs, dtype=np.int64))


def test_save_and_load_round_trip(tiny_gpt2, tmp_path):
    agent = trainer(tiny_gpt2, learning_rate=1e-3)
    agent.update(agent.collect())
    agent.save(tmp_path / "policy.zip")
    loaded = GPTActorCriticPolicy.load(str(tmp_path / "policy.zip"))
    episodes = agent.collect()[:4]
    expected = full_forward_logprobs(agent, episodes)
    agent.policy = loaded
    for a, b in zip(expected, full_forward_logprobs(agent, episodes)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("num_envs", 0), ("episodes_per_update", 0), ("n_epochs", 1.5), ("clip_range", 0.0)],
)
def test_bad_settings_name_the_argument(tiny_gpt2, argument, value):
    with pytest.raises(ValueError, match=argument):
        trainer(tiny_gpt2, **{argument: value})


def test_zoo_gpt_on_textgen_is_the_sequence_trainer(tiny_gpt2):
    agent = make_agent(
        "gpt", "TextGen-v0", n_envs=2, env_kwargs={"model": str(tiny_gpt2), "max_new_tokens": 3}
    )
    assert isinstance(agent, SequencePPO) and agent.num_envs == 2
    assert agent.env.unwrapped.core.action_mode == "vocab"
