"""SB3 agents as TextGen's policy scorer: the KL step reward uses the acting policy."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import textgym  # noqa: F401  (registers the envs)
from textgym_agents.backends.sb3.vec_env import make_sb3_vec_env
from textgym_agents.policies.scorer import (
    AttachPolicyCallback,
    DQNScorer,
    attach_sb3_policy,
    sb3_scorer,
)

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]


def tiny_kwargs(path, **extra):
    return {"model": str(path), "prompts": PROMPTS, "max_new_tokens": 4, **extra}


def test_callback_attaches_the_ppo_policy_to_the_batched_env(tiny_gpt2):
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=3, seed=0, **tiny_kwargs(tiny_gpt2, action_mode="topk", top_k=4)
    )
    model = PPO("MultiInputPolicy", venv, n_steps=8, batch_size=24, n_epochs=1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "no policy scorer" warning
        model.learn(24, callback=AttachPolicyCallback())
    obs = venv.reset()
    actions, _ = model.predict(obs)
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        expected = model.policy.get_distribution(obs_t).log_prob(torch.as_tensor(actions))
    _, rewards, dones, infos = venv.step(actions)
    policy_logprob = np.array([info["policy_logprob"] for info in infos])
    np.testing.assert_allclose(policy_logprob, expected.numpy(), atol=1e-5)
    kl = np.array([info["kl"] for info in infos])
    np.testing.assert_allclose(
        kl, policy_logprob - np.array([info["ref_logprob"] for info in infos]), atol=1e-5
    )


def test_maskable_ppo_scorer_uses_the_masked_distribution(tiny_gpt2):
    venv = make_sb3_vec_env("TextGen-v0", n_envs=2, seed=0, **tiny_kwargs(tiny_gpt2))
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=8, batch_size=16, seed=0)
    attach_sb3_policy(model)
    scorer = venv.unwrapped.core.scorer
    obs = venv.reset()
    logprobs = scorer(obs)
    masks = np.stack(venv.env_method("action_masks"))
    assert np.allclose(np.exp(logprobs).sum(1), 1.0, atol=1e-5)
    assert np.exp(logprobs[~masks]).max() < 1e-6  # no mass outside the reference's top-k


def test_dqn_scorer_is_epsilon_greedy(tiny_gpt2):
    env = make_vec_env(
        "TextGen-v0", n_envs=1, env_kwargs=tiny_kwargs(tiny_gpt2, action_mode="topk", top_k=4)
    )
    model = DQN("MultiInputPolicy", env, learning_starts=0, seed=0)
    model.exploration_rate = 0.2
    obs = env.reset()
    scorer = sb3_scorer(model)
    assert isinstance(scorer, DQNScorer)  # chosen by type
    logprobs = scorer(obs)
    probs = np.sort(np.exp(logprobs[0]))
    np.testing.assert_allclose(probs, [0.05, 0.05, 0.05, 0.85], atol=1e-6)


def test_each_env_of_a_dummy_vec_env_gets_its_own_scorer(tiny_gpt2):
    env = make_vec_env("TextGen-v0", n_envs=2, env_kwargs=tiny_kwargs(tiny_gpt2))
    model = MaskablePPO("MultiInputPolicy", env, n_steps=8, batch_size=16, seed=0)
    attach_sb3_policy(model)
    scorers = env.get_attr("core")
    assert scorers[0].scorer is not scorers[1].scorer
    model.learn(16)
    _, _, _, infos = env.step(np.array([env.envs[0].unwrapped.tokenizer.eos_token_id] * 2))
    assert all("kl" in info for info in infos)


def test_gridworld_envs_are_left_alone():
    model = PPO("MlpPolicy", gym.make("GridWorld-v1"), n_steps=16, batch_size=16)
    attach_sb3_policy(model)  # nothing to attach to, and no error
    model.learn(16, callback=AttachPolicyCallback())


@pytest.mark.parametrize("n_envs", [1, 2])
def test_kl_step_reward_is_minus_beta_k1_of_the_acting_policy(tiny_gpt2, n_envs):
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=n_envs, seed=0, **tiny_kwargs(tiny_gpt2, kl_coef=0.5, max_new_tokens=8)
    )
    model = PPO("MultiInputPolicy", venv, n_steps=8, batch_size=8, seed=0)
    attach_sb3_policy(model)
    obs = venv.reset()
    for _ in range(3):
        actions, _ = model.predict(obs)
        obs, rewards, dones, infos = venv.step(actions)
        for reward, done, info in zip(rewards, dones, infos):
            if not done:
                assert reward == pytest.approx(-0.5 * info["kl"], abs=1e-5)


def test_dqn_kl_stays_finite_from_the_first_step(tiny_gpt2):
    # Before learning_starts DQN acts uniformly, whatever its exploration rate says.
    from textgym_agents.backends.sb3.zoo import make_agent

    env_kwargs = {**tiny_kwargs(tiny_gpt2, action_mode="topk", top_k=4), "max_new_tokens": 3}
    model = make_agent("dqn", "TextGen-v0", n_envs=2, env_kwargs=env_kwargs, learning_starts=16)
    assert model.exploration_rate == 1.0  # an untrained DQN explores, in learn() and predict()
    kls = []

    class Record(BaseCallback):
        def _on_step(self):
            kls.extend(info["kl"] for info in self.locals["infos"])
            return True

    model.learn(48, callback=Record())
    assert kls and np.isfinite(kls).all()
