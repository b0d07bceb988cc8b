"""The GPT policy on model families whose forward transforms the LM head's logits.

Granite divides the logits by ``logits_scaling``, Gemma-2 softcaps them
(``final_logit_softcapping``); Llama does neither. The policy (SB3's forward, the scorer) and
`SequencePPO` (KV-cached acting and the update) must all read the model's own forward, so the
policy is the env's reference before training and the first PPO ratio is 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_lm
from stable_baselines3 import PPO
from transformers import AutoModelForCausalLM, AutoTokenizer

from textgym_agents.backends.sb3.vec_env import make_sb3_vec_env
from textgym_agents.policies.gpt_policy import (
    GPTActorCriticPolicy,
    causal_lm_forward,
    gpt_policy_kwargs,
    shared_prompt_forward,
)
from textgym_agents.trainers.sequence_ppo import SequencePPO
from textgym_agents.training.train import train

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]
FAMILIES = ("llama", "gemma2", "granite")


def build_family_lm(out: Path, family: str, tokenizer_dir: Path) -> Path:
    """Save a tiny random-weight ``family`` causal LM with the tokenizer of ``tokenizer_dir``."""
    from transformers import (
        Gemma2Config,
        Gemma2ForCausalLM,
        GraniteConfig,
        GraniteForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.eos_token_id,
    }
    torch.manual_seed(0)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif family == "gemma2":
        # Large initial weights give logits of tens, which a cap of 5 changes a lot.
        config = Gemma2Config(
            **common, head_dim=8, final_logit_softcapping=5.0, initializer_range=0.5
        )
        model = Gemma2ForCausalLM(config)
    elif family == "granite":
        # Larger initial weights than the default 0.02, so that the scaling matters.
        config = GraniteConfig(**common, logits_scaling=8.0, initializer_range=0.1)
        model = GraniteForCausalLM(config)
    else:
        raise ValueError(family)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def family_models(tmp_path_factory) -> dict[str, Path]:
    tokenizer_dir = build_tiny_lm(tmp_path_factory.mktemp("tokenizer"), "gpt2")
    return {
        family: build_family_lm(tmp_path_factory.mktemp(family), family, tokenizer_dir)
        for family in FAMILIES
    }


def env_kwargs(path: Path, action_mode: str = "vocab") -> dict:
    return {
        "model": str(path),
        "prompts": PROMPTS,
        "max_new_tokens": 6,
        "action_mode": action_mode,
        "top_k": 5,
    }


@pytest.mark.parametrize("family", ["gemma2", "granite"])
def test_the_test_models_transform_their_logits(family_models, family):
    # Otherwise the tests below could not tell the model's forward from base model + LM head.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(family_models[family])
    ids = torch.arange(2, 12)[None]
    with torch.no_grad():
        own = torch.log_softmax(model(input_ids=ids).logits, -1)
        rebuilt = model.get_output_embeddings()(model.base_model(input_ids=ids).last_hidden_state)
    kl = (own.exp() * (own - torch.log_softmax(rebuilt, -1))).sum(-1)
    assert kl.mean() > 0.05  # nats per token


@pytest.mark.parametrize("family", FAMILIES)
def test_gpt_run_is_the_reference_before_training(family_models, family, tmp_path):
    summary = train(
        "TextGen-v0",
        "gpt",
        steps=8,
        out=tmp_path / "run",
        progress=False,
        eval_episodes=8,
        env_kwargs=env_kwargs(family_models[family]),
        n_envs=4,
        episodes_per_update=4,
        n_epochs=1,
    )
    assert abs(summary["before"]["mean_kl_per_sequence"]) < 1e-3


@pytest.mark.parametrize("group_size", [1, 2])
@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
@pytest.mark.parametrize("family", FAMILIES)
def test_first_ppo_ratio_is_one(family_models, family, action_mode, group_size):
    agent = SequencePPO(
        env_kwargs(family_models[family], action_mode),
        seed=0,
        num_envs=4,
        episodes_per_update=8,
        minibatch_episodes=8,
        n_epochs=1,
        group_size=group_size,  # 2: the update encodes each group's prompt once
    )
    episodes = agent.collect()[:8]
    for e in episodes:
        assert abs(e.kl) < 1e-4  # the env's reference and the acting policy agree
    # The update's forward gives the collected actions the log-probs they were sampled with
    # (up to float rounding: the acting forward is KV-cached and left-padded).
    with torch.no_grad():
        logits, _, _ = agent._forward(episodes)
    logprobs = torch.log_softmax(logits, -1).numpy()
    for i, e in enumerate(episodes):
        recomputed = logprobs[i, np.arange(len(e.actions)), e.actions]
        np.testing.assert_allclose(recomputed, e.logprobs, rtol=0, atol=1e-5)
    # One minibatch: its ratio is measured before the only gradient step (approx_kl: within
    # float32's rounding of exp near 1; before the fix it was 0.1 for Granite, 4 for Gemma-2).
    stats = agent.update(episodes)
    assert stats["clip"] == 0.0 and stats["approx_kl"] < 1e-6


@pytest.mark.parametrize("family", FAMILIES)
def test_sb3_policy_scores_the_reference_before_training(family_models, family):
    # SB3's per-token forward (acting and scoring) on a batch of different prompt lengths.
    venv = make_sb3_vec_env("TextGen-v0", n_envs=3, seed=0, **env_kwargs(family_models[family]))
    model = PPO(
        GPTActorCriticPolicy, venv, n_steps=4, seed=0, policy_kwargs=gpt_policy_kwargs(venv)
    )
    model.policy.memory.misses = 0
    venv.env_method("attach_policy", model.policy.score, indices=[0])
    obs = venv.reset()
    for _ in range(4):
        actions, _ = model.predict(obs)
        obs, _, _, infos = venv.step(actions)
        assert all(abs(info["kl"]) < 1e-5 for info in infos)


def test_a_new_policy_refuses_an_init_from_that_cannot_be_loaded(tmp_path):
    venv = make_sb3_vec_env("TextGen-v0", n_envs=1, seed=0, max_new_tokens=2)
    missing = str(tmp_path / "no-such-model")
    model = PPO(
        GPTActorCriticPolicy,
        venv,
        n_steps=2,
        batch_size=2,
        policy_kwargs={**gpt_policy_kwargs(venv), "init_from": missing},
    )
    with pytest.raises(ValueError, match="init_from=.*no-such-model.*could not be loaded"):
        model.learn(2)
    policy = GPTActorCriticPolicy(
        venv.observation_space,
        venv.action_space,
        lambda _: 1e-4,
        **{**gpt_policy_kwargs(venv), "init_from": missing},
    )
    with pytest.raises(ValueError, match="no-such-model"):
        SequencePPO({"max_new_tokens": 2}, num_envs=1, policy=policy)


def test_saved_agents_load_where_init_from_is_gone(tiny_gpt2, tmp_path):
    model_dir = shutil.copytree(tiny_gpt2, tmp_path / "model")
    kwargs = {"model": str(model_dir), "prompts": PROMPTS, "max_new_tokens": 3}
    agent = SequencePPO(kwargs, seed=0, num_envs=2, episodes_per_update=2)
    assert agent.policy.init_from == str(model_dir)
    agent.save(tmp_path / "policy.zip")
    venv = make_sb3_vec_env("TextGen-v0", n_envs=1, seed=0, **kwargs)
    ppo = PPO(GPTActorCriticPolicy, venv, n_steps=2, policy_kwargs=gpt_policy_kwargs(venv))
    ppo.save(tmp_path / "ppo.zip")
    obs = venv.reset()
    expected = ppo.policy.predict_values(ppo.policy.obs_to_tensor(obs)[0])
    shutil.rmtree(model_dir)

    loaded = GPTActorCriticPolicy.load(str(tmp_path / "policy.zip"))
    for name, value in agent.policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    again = PPO.load(tmp_path / "ppo.zip").policy
    torch.testing.assert_close(again.predict_values(again.obs_to_tensor(obs)[0]), expected)


@pytest.mark.parametrize("family", ("gpt2", *FAMILIES))
def test_a_shared_prompt_forward_equals_the_full_forward_and_its_gradient(
    family_models, tiny_gpt2, family
):
    """Sequences that share prompts: one forward of the distinct prompts and one of the
    continuations give the logits, hidden states and gradients of one forward of each whole
    sequence."""
    path = tiny_gpt2 if family == "gpt2" else family_models[family]
    trunk = AutoModelForCausalLM.from_pretrained(path).float()
    prompts = [[5, 6, 7, 8], [9, 10]]
    pick = [0, 1, 0, 0, 1]
    generated = [[11, 12, 13], [14], [15, 16], [11, 12, 17], [18, 19, 20]]
    steps, width = 3, 4 + 3
    # The plain layout: each whole sequence, right-padded.
    ids = torch.zeros(5, width, dtype=torch.long)
    mask = torch.zeros(5, width, dtype=torch.long)
    where = torch.zeros(5, steps, dtype=torch.long)
    for i, (u, g) in enumerate(zip(pick, generated)):
        sequence = prompts[u] + g
        ids[i, : len(sequence)], mask[i, : len(sequence)] = torch.tensor(sequence), 1
        where[i, : len(g)] = torch.arange(len(prompts[u]) - 1, len(sequence) - 1)
    # The shared layout: distinct prompts left-padded, generated tokens right-padded.
    prompt_ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    prompt_mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    tokens = torch.tensor([g + [0] * (steps - len(g)) for g in generated])
    valid = tokens.new_tensor([[t < len(g) for t in range(steps)] for g in generated]).bool()

    def run(forward):
        trunk.zero_grad()
        logits, hidden = forward()
        (logits[valid].logsumexp(-1).sum() + hidden[valid].square().sum()).backward()
        grads = [p.grad.clone() for p in trunk.parameters() if p.grad is not None]
        return logits.detach()[valid], hidden.detach()[valid], grads

    full = run(lambda: causal_lm_forward(trunk, ids, mask, where))
    shared = run(
        lambda: shared_prompt_forward(trunk, prompt_ids, prompt_mask, torch.tensor(pick), tokens)
    )
    torch.testing.assert_close(shared[0], full[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shared[1], full[1], atol=1e-4, rtol=1e-4)
    assert len(shared[2]) == len(full[2])
    for a, b in zip(shared[2], full[2]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
