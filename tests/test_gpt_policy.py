"""The GPT actor-critic policy: starts at the reference, scores for free, no dropout, saves."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

import textgym  # noqa: F401  (registers the envs)
from textgym_agents.backends.sb3.vec_env import make_sb3_vec_env
from textgym_agents.policies.gpt_forward import prefix_groups
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy, gpt_policy_kwargs
from textgym_agents.policies.scorer import AttachPolicyCallback, attach_sb3_policy

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]


def textgen_ppo(path, n_envs=2, **env_kwargs):
    kwargs = {"model": str(path), "prompts": PROMPTS, "max_new_tokens": 5, **env_kwargs}
    venv = make_sb3_vec_env("TextGen-v0", n_envs=n_envs, seed=0, **kwargs)
    model = PPO(
        GPTActorCriticPolicy,
        venv,
        n_steps=10,
        batch_size=10,
        n_epochs=1,
        gamma=1.0,
        seed=0,
        policy_kwargs=gpt_policy_kwargs(venv),
    )
    return model, venv


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_policy_starts_as_the_reference_so_the_kl_is_zero(tiny_gpt2, action_mode):
    model, venv = textgen_ppo(tiny_gpt2, action_mode=action_mode, top_k=5, kl_coef=1.0)
    attach_sb3_policy(model)
    obs = venv.reset()
    for _ in range(4):
        actions, _ = model.predict(obs)  # predict() also runs the policy's forward
        obs_t, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            model.policy(obs_t)
        obs, rewards, dones, infos = venv.step(actions)
        for info in infos:
            assert abs(info["kl"]) < 1e-5


def test_scoring_costs_no_second_forward_during_training(tiny_gpt2):
    model, venv = textgen_ppo(tiny_gpt2, n_envs=3)
    calls = []
    trunk = model.policy.trunk.base_model
    hook = trunk.register_forward_pre_hook(lambda module, args: calls.append(1))
    model.learn(30, callback=AttachPolicyCallback())  # one rollout: 10 steps x 3 envs
    hook.remove()
    assert venv.unwrapped.core.scorer is not None and model.policy.scorer_misses == 0
    # 10 acting forwards + 1 bootstrap value + 3 minibatches of the update; scoring the
    # KL reward with a forward of its own would add 10 more.
    assert len(calls) == 10 + 1 + 3


def test_dropout_is_off_even_in_training_mode(tiny_gpt2):
    model, venv = textgen_ppo(tiny_gpt2)
    obs_t, _ = model.policy.obs_to_tensor(venv.reset())
    model.policy.set_training_mode(True)
    first = model.policy.get_distribution(obs_t).distribution.logits
    second = model.policy.get_distribution(obs_t).distribution.logits
    assert torch.equal(first, second)
    assert not any(
        isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.policy.trunk.modules()
    )


def test_ppo_update_moves_the_policy_and_save_load_round_trips(tiny_gpt2, tmp_path):
    model, venv = textgen_ppo(tiny_gpt2, action_mode="topk", top_k=4)
    obs = venv.reset()
    obs_t, _ = model.policy.obs_to_tensor(obs)
    before = model.policy.get_distribution(obs_t).distribution.probs.detach().clone()
    model.learn(40, callback=AttachPolicyCallback())
    after = model.policy.get_distribution(obs_t).distribution.probs.detach()
    assert not torch.allclose(before, after)
    model.save(tmp_path / "agent.zip")
    loaded = PPO.load(tmp_path / "agent.zip", env=venv)
    again = loaded.policy.get_distribution(obs_t).distribution.probs.detach()
    torch.testing.assert_close(after, again)


def test_gridworld_tokens_gets_a_small_fresh_gpt_with_a_linear_head():
    env = gym.make("GridWorld-v1", obs_mode="tokens")
    kwargs = gpt_policy_kwargs(env)
    assert kwargs["head"] == "linear" and kwargs["init_from"] is None
    model = PPO(
        GPTActorCriticPolicy,
        env,
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        seed=0,
        policy_kwargs=kwargs,
    )
    model.learn(64)
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(int(model.predict(obs, deterministic=True)[0]))
    assert sum(p.numel() for p in model.policy.trunk.parameters()) < 200_000


def test_score_answers_rows_from_the_last_forward_in_any_order(tiny_gpt2):
    model, venv = textgen_ppo(tiny_gpt2, n_envs=3)
    obs = venv.reset()
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        model.policy(obs_t)
    full = model.policy.score(obs)
    rows = [2, 0]
    part = model.policy.score({key: value[rows] for key, value in obs.items()})
    np.testing.assert_array_equal(part, full[rows])
    assert model.policy.scorer_misses == 0
    other = obs["input_ids"].copy()
    other[:, 0] = 7  # never seen: a forward of its own, with the same answer as forward()
    model.policy.score({**obs, "input_ids": other})
    assert model.policy.scorer_misses == 1


def test_bad_heads_are_refused(tiny_gpt2):
    model, venv = textgen_ppo(tiny_gpt2, action_mode="topk", top_k=4)
    with pytest.raises(ValueError, match="head='lm' needs one action per token"):
        PPO(GPTActorCriticPolicy, venv, policy_kwargs={**gpt_policy_kwargs(venv), "head": "lm"})
    with pytest.raises(ValueError, match="head='tree'"):
        PPO(GPTActorCriticPolicy, venv, policy_kwargs={**gpt_policy_kwargs(venv), "head": "tree"})


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_rows_of_one_sequence_share_a_forward_pass_with_the_same_results(tiny_gpt2, action_mode):
    """A per-token batch (the states of whole episodes, shuffled, as RLlib's and SB3's
    minibatches hold them) runs one forward pass per sequence, and every row's logits and
    value equal those of a forward pass of that row alone."""
    model, venv = textgen_ppo(tiny_gpt2, n_envs=3, action_mode=action_mode, max_new_tokens=5)
    obs = venv.reset()
    states = [obs]
    for _ in range(4):
        obs, *_ = venv.step(model.predict(obs)[0])
        states.append(obs)
    batch = {key: np.concatenate([s[key] for s in states]) for key in obs}
    order = np.random.default_rng(0).permutation(len(batch["input_ids"]))
    batch = {key: value[order] for key, value in batch.items()}
    policy = model.policy
    tensors, _ = policy.obs_to_tensor(batch)
    leaders, slots = prefix_groups(tensors["input_ids"].long(), tensors["attention_mask"].sum(-1))
    assert len(leaders) == 3  # 15 states of 3 sequences (no episode ended in 4 steps)
    assert sorted(slots[slots >= 0].tolist()) == list(range(15))
    with torch.no_grad():
        logits, values = policy.logits_and_values(tensors)
        for row in range(15):
            alone = {key: value[row : row + 1] for key, value in tensors.items()}
            row_logits, row_values = policy.logits_and_values(alone)
            torch.testing.assert_close(logits[row], row_logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(values[row], row_values[0], atol=1e-5, rtol=1e-5)


def test_prefix_groups_keeps_rows_that_share_no_prefix_apart():
    ids = torch.tensor([[1, 2, 3, 0], [1, 2, 0, 0], [1, 3, 0, 0], [1, 2, 3, 4], [5, 0, 0, 0]])
    lengths = torch.tensor([3, 2, 2, 4, 1])
    leaders, slots = prefix_groups(ids, lengths)
    groups = {int(g[0]): sorted(int(r) for r in g if r >= 0) for g in slots}
    assert groups == {3: [0, 1, 3], 2: [2], 4: [4]}
    assert sorted(leaders.tolist()) == [2, 3, 4]


def test_evaluation_reports_the_exact_kl_beside_the_sampled_one(tiny_gpt2):
    from textgym_agents.training.evaluation import evaluate

    model, _ = textgen_ppo(tiny_gpt2, n_envs=2, max_new_tokens=4)
    env_kwargs = {"model": str(tiny_gpt2), "max_new_tokens": 4}
    before = evaluate(model, "TextGen-v0", episodes=4, seed=0, env_kwargs=env_kwargs)
    assert abs(before["mean_exact_kl_per_sequence"]) < 1e-4  # the policy is the reference
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.policy.trunk.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    after = evaluate(model, "TextGen-v0", episodes=8, seed=0, env_kwargs=env_kwargs)
    assert np.isfinite(after["mean_exact_kl_per_sequence"])
    assert after["mean_exact_kl_per_sequence"] > 0.01
