"""The reference policy (`textgym.reference`): acting and scoring as the reference model."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401  (registers the envs)
from textgym.reference import ReferencePolicy, sample_tokens

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]


def kwargs(path, **extra):
    return {"model": str(path), "prompts": PROMPTS, "max_new_tokens": 4, **extra}


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_at_temperature_one_every_kl_reward_is_exactly_zero(tiny_gpt2, action_mode):
    env = gym.make("TextGen-v0", **kwargs(tiny_gpt2, action_mode=action_mode, top_k=4))
    policy = ReferencePolicy(env.unwrapped.core, seed=0)
    env.unwrapped.attach_policy(policy)
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(int(policy.act()[0]))
        assert info["kl"] == 0.0 and info["kl_reward"] == 0.0


def test_a_vector_env_with_restarting_rows_scores_only_the_stepped_rows(tiny_gpt2):
    envs = gym.make_vec(
        "TextGen-v0", num_envs=3, vectorization_mode="vector_entry_point", **kwargs(tiny_gpt2)
    )
    policy = ReferencePolicy(envs.unwrapped.core, temperature=2.0, seed=0)
    envs.unwrapped.attach_policy(policy)
    envs.reset(seed=0)
    eos = envs.unwrapped.core.eos_token_id
    actions = policy.act()
    actions[0] = eos  # row 0 ends now and restarts on the next step, without stepping
    envs.step(actions)
    expected = policy.logprobs()  # (3, A) before the step, at temperature 2
    actions = policy.act()
    _, _, _, _, infos = envs.step(actions)
    assert infos["_kl"].tolist() == [False, True, True]
    np.testing.assert_allclose(
        infos["policy_logprob"][1:], expected[[1, 2], actions[1:]], rtol=1e-6
    )


def test_temperature_flattens_the_distribution_and_sampling_is_seeded(tiny_gpt2):
    env = gym.make("TextGen-v0", **kwargs(tiny_gpt2))
    env.reset(seed=0)
    core = env.unwrapped.core
    cold, hot = ReferencePolicy(core), ReferencePolicy(core, temperature=3.0)
    for policy in (cold, hot):
        np.testing.assert_allclose(np.exp(policy.logprobs()).sum(1), 1.0, atol=1e-6)
    entropy = [-(np.exp(p.logprobs()) * p.logprobs()).sum() for p in (cold, hot)]
    assert entropy[1] > entropy[0]
    draws = [ReferencePolicy(core, seed=5).act() for _ in range(2)]
    np.testing.assert_array_equal(*draws)
    with pytest.raises(ValueError, match="temperature=0"):
        ReferencePolicy(core, temperature=0)


def test_sample_tokens_draws_from_the_tempered_softmax():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]).repeat(20_000, 1))
    generator = torch.Generator().manual_seed(0)
    counts = np.bincount(sample_tokens(logits, generator=generator).numpy(), minlength=3)
    np.testing.assert_allclose(counts / counts.sum(), [0.7, 0.2, 0.1], atol=0.01)
    flat = np.bincount(sample_tokens(logits, 1e6, generator).numpy(), minlength=3)
    np.testing.assert_allclose(flat / flat.sum(), [1 / 3] * 3, atol=0.015)
    # Tokens of probability 0 (a constraint's -inf log-probs) are never drawn, even at the ends.
    masked = torch.log(torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]]).repeat(20_000, 1))
    drawn = np.bincount(sample_tokens(masked, generator=generator).numpy(), minlength=5)
    assert drawn[[0, 2, 4]].sum() == 0 and abs(drawn[1] / drawn.sum() - 0.5) < 0.015
