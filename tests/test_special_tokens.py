"""Vocab-mode actions that are special tokens but not EOS (pad, bos): legal, ordinary tokens
for the models, priced by the KL penalty, never offered by action_masks()."""

from __future__ import annotations

import logging
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen import TextGenEnv

PROMPTS = ["the movie was", "a quiet drama about a family in"]


@pytest.fixture
def transformers_log(caplog):
    """What transformers logs during the test; it propagates nothing and warns once per
    process, so its handler is joined and its once-only warnings re-armed."""
    logging.Logger.warning_once.cache_clear()
    logger = logging.getLogger("transformers")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def make_single(**kwargs) -> gym.Env:
    """The bundled model, whose config names its pad token (so transformers checks for it)."""
    env = gym.make("TextGen-v0", prompts=PROMPTS, max_new_tokens=4, **kwargs)
    vocab = env.action_space.n
    env.unwrapped.attach_policy(lambda obs: np.full((len(obs["input_ids"]), vocab), -np.log(vocab)))
    return env


def test_making_an_env_logs_no_transformers_warning(transformers_log):
    # One prompt keeps the cache dense while normalize_reward samples the reference, and
    # feeds pad to the samples that ended.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("TextGen-v0", prompts=PROMPTS[:1], normalize_reward=True)
        env.reset(seed=0)
    assert transformers_log.records == []


def test_pad_and_bos_are_ordinary_tokens_in_the_single_env(transformers_log):
    env = make_single()
    tokenizer, model = env.unwrapped.tokenizer, env.unwrapped.reference_model
    pad, bos = tokenizer.pad_token_id, tokenizer.bos_token_id
    assert len({pad, bos, tokenizer.eos_token_id}) == 3
    obs, _ = env.reset(seed=0, options={"prompt_index": 0})
    start = int(obs["attention_mask"].sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for action in (pad, bos):
            obs, reward, terminated, _, info = env.step(action)
            assert np.isfinite(reward) and not terminated
            assert info["ref_logprob"] < np.log(1e-3)  # the reference prices them
        obs, *_, info = env.step(tokenizer.encode(" great")[0])
        obs, _, terminated, _, info = env.step(tokenizer.eos_token_id)
    assert transformers_log.records == []
    assert terminated and "<|" not in info["text"]
    assert info["text"] == tokenizer.decode(obs["input_ids"][start:], skip_special_tokens=True)
    assert obs["input_ids"][start : start + 2].tolist() == [pad, bos]
    assert obs["attention_mask"][start : start + 4].tolist() == [1, 1, 1, 1]

    # The reference attended to pad and bos like any token: the env's distribution after them
    # is that of one full forward with an all-ones mask.
    env.reset(seed=0, options={"prompt_index": 0})
    env.step(pad)
    env.step(bos)
    ids = torch.as_tensor(obs["input_ids"][None, : start + 2])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
    expected = torch.log_softmax(logits.float(), -1).numpy()
    np.testing.assert_allclose(env.unwrapped.reference_logprobs(), expected, atol=1e-4)


def test_pad_and_bos_step_without_warnings_in_the_vector_env(transformers_log):
    envs = gym.make_vec(
        "TextGen-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        prompts=PROMPTS,
        max_new_tokens=4,
    )
    tokenizer = envs.unwrapped.tokenizer
    pad, bos = tokenizer.pad_token_id, tokenizer.bos_token_id
    vocab = envs.single_action_space.n
    envs.unwrapped.attach_policy(
        lambda obs: np.full((len(obs["input_ids"]), vocab), -np.log(vocab))
    )
    envs.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for actions in ([pad, bos], [bos, pad], [pad, pad]):
            _, rewards, terminated, _, _ = envs.step(np.array(actions))
            assert np.isfinite(rewards).all() and not terminated.any()
    assert transformers_log.records == []


@pytest.mark.parametrize("top_k, top_p", [(None, 1.0), (10, 1.0), (None, 0.999)])
def test_action_masks_never_offer_special_tokens_but_eos(top_k, top_p):
    env = make_single(top_k=top_k, top_p=top_p)
    tokenizer = env.unwrapped.tokenizer
    env.reset(seed=0)
    masks = [env.unwrapped.action_masks()]
    env.step(tokenizer.pad_token_id)
    masks.append(env.unwrapped.action_masks())
    for mask in masks:
        assert mask[tokenizer.eos_token_id]
        assert not mask[tokenizer.pad_token_id] and not mask[tokenizer.bos_token_id]
    if top_k is None and top_p == 1.0:
        assert masks[0].sum() == env.action_space.n - 2

    envs = gym.make_vec(
        "TextGen-v0", num_envs=2, vectorization_mode="vector_entry_point", top_k=top_k
    )
    envs.reset(seed=0)
    masks = envs.unwrapped.action_masks()
    assert masks[:, tokenizer.eos_token_id].all()
    assert not masks[:, [tokenizer.pad_token_id, tokenizer.bos_token_id]].any()


def test_action_masks_never_offer_ids_beyond_the_tokenizer(tiny_gpt2, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A reference whose embedding matrix is padded beyond the tokenizer, as many Hub models'.
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    model.resize_token_embeddings(len(tokenizer) + 8)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    env = TextGenEnv(model=str(tmp_path), prompts=PROMPTS, top_k=None)
    env.reset(seed=0)
    mask = env.action_masks()
    assert mask.shape == (len(tokenizer) + 8,)
    assert mask[: len(tokenizer)].all() and not mask[len(tokenizer) :].any()


def test_gymnasium_check_env_passes_and_logs_nothing(transformers_log):
    from gymnasium.utils.env_checker import check_env

    env = make_single()
    check_env(env.unwrapped)
    assert transformers_log.records == []
