"""What the policy, the reference and the RM see: a cut prompt keeps BOS, the RM scores the
prompt text the policy conditioned on, and an RM input is cut so the continuation survives."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import CORPUS

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen import TextGenEnv
from textgym.prompts import cut_left, special_affixes
from textgym.rewards.hf import HFRewardModel, ensure_pad_token, tokenize_for_reward

LONG = " ".join(CORPUS)  # ~200 tokens for the tiny tokenizers
SHORT = "the movie was great"


def tokenizer_of(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


class Recorder:
    """A callable RM that keeps the prompts it was given."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, prompts, texts):
        self.prompts.extend(prompts)
        return [0.0] * len(texts)


@pytest.fixture(scope="module")
def short_classifier(tiny_gpt2, tmp_path_factory) -> Path:
    """A random single-logit GPT-2 classifier with only 64 positions, on tiny_gpt2's tokenizer
    (whose model_max_length is unset, so the model's positions are the limit)."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = tokenizer_of(tiny_gpt2)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        num_labels=1,
        pad_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("short-rm")
    GPT2ForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_hf_reward_model_scores_the_continuation_after_a_long_prompt(short_classifier):
    rm = HFRewardModel(short_classifier, device="cpu")
    assert rm.max_length == 64
    assert len(rm.tokenizer(LONG)["input_ids"]) >= 200
    good, bad = rm.score([LONG, LONG], [" and it was wonderful", " and it was awful"])
    assert good != bad
    # The long input scores exactly as its last 64 tokens do.
    ids = rm.tokenizer(LONG + " and it was awful")["input_ids"]
    tail = rm.tokenizer.decode(ids[-64:])
    assert rm.tokenizer(tail)["input_ids"] == ids[-64:]
    assert rm.score([""], [tail])[0] == pytest.approx(bad, abs=1e-6)


def test_reward_inputs_are_cut_from_the_left_keeping_bos(tiny_llama):
    tokenizer = tokenizer_of(tiny_llama)
    ensure_pad_token(tokenizer, "test")
    ending = " and it was wonderful"
    batch = tokenize_for_reward(tokenizer, [LONG, SHORT], [ending, ending], max_length=24)
    full = tokenizer(LONG + ending)["input_ids"]
    assert full[0] == tokenizer.bos_token_id
    assert batch["input_ids"][0].tolist() == [tokenizer.bos_token_id] + full[-23:]
    short = tokenizer(SHORT + ending)["input_ids"]
    assert len(short) < 24 and batch["input_ids"][1, : len(short)].tolist() == short
    assert batch["attention_mask"].sum(1).tolist() == [24, len(short)]


def test_reward_input_that_starts_with_bos_does_not_get_a_second_one(tiny_llama):
    tokenizer = tokenizer_of(tiny_llama)
    ensure_pad_token(tokenizer, "test")
    batch = tokenize_for_reward(tokenizer, ["<s>the movie"], [" was great"])
    assert batch["input_ids"][0].tolist() == tokenizer("the movie was great")["input_ids"]


def test_cut_left_keeps_the_special_prefix_and_suffix():
    cls, sep = 101, 102
    assert cut_left([cls, 1, 2, 3, 4, 5, sep], 5, [cls], [sep]) == [cls, 3, 4, 5, sep]
    assert cut_left([1, 2, 3, 4, 5], 3, [cls], [sep]) == [3, 4, 5]  # no specials to keep
    assert cut_left([cls, 1, 2], 5, [cls], [sep]) == [cls, 1, 2]  # short enough: unchanged
    with pytest.raises(ValueError, match="max_tokens=2"):
        cut_left([cls, 1, 2, 3, sep], 2, [cls], [sep])


def test_special_affixes_find_the_bos_the_tokenizer_adds(tiny_gpt2, tiny_llama):
    bundled = TextGenEnv().tokenizer
    assert special_affixes(bundled) == ([bundled.bos_token_id], [])
    llama = tokenizer_of(tiny_llama)
    assert special_affixes(llama) == ([llama.bos_token_id], [])
    assert special_affixes(tokenizer_of(tiny_gpt2)) == ([], [])


@pytest.mark.parametrize("fixture", ["tiny_llama", None])  # None: the bundled model
def test_cut_prompt_observation_starts_with_bos(fixture, request):
    model = None if fixture is None else str(request.getfixturevalue(fixture))
    with pytest.warns(UserWarning, match="max_prompt_tokens=8"):
        env = gym.make(
            "TextGen-v0",
            model=model,
            prompts=[LONG],
            max_prompt_tokens=8,
            max_new_tokens=2,
            reward_model=Recorder(),
        )
    tokenizer = env.unwrapped.tokenizer
    full = tokenizer(LONG)["input_ids"]
    assert full[0] == tokenizer.bos_token_id and len(full) > 8
    obs, info = env.reset(seed=0)
    assert obs["input_ids"][:8].tolist() == [tokenizer.bos_token_id] + full[-7:]
    assert obs["attention_mask"].sum() == 8
    assert info["prompt"] == tokenizer.decode(full[-7:])


def test_single_env_rm_receives_the_prompt_text_the_policy_saw(tiny_llama):
    rm = Recorder()
    with pytest.warns(UserWarning, match="max_prompt_tokens=8"):
        env = gym.make(
            "TextGen-v0",
            model=str(tiny_llama),
            prompts=[LONG, SHORT],
            max_prompt_tokens=8,
            max_new_tokens=2,
            reward_model=rm,
        )
    tokenizer = env.unwrapped.tokenizer
    word = tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    finals = []
    for index in (0, 1):
        env.reset(options={"prompt_index": index})
        env.step(word)
        obs, _, terminated, _, info = env.step(word)
        assert terminated
        finals.append(info)
        # prompt + text is the whole episode as the policy saw it, BOS aside.
        assert tokenizer.decode(obs["input_ids"][1 : obs["attention_mask"].sum()]) == (
            info["prompt"] + info["text"]
        )
    kept = tokenizer.decode(tokenizer(LONG)["input_ids"][-7:])
    assert rm.prompts == [kept, SHORT]
    assert [info["prompt"] for info in finals] == rm.prompts
    env.reset(options={"prompt": LONG})  # a given prompt is cut the same way
    env.step(word)
    env.step(word)
    assert rm.prompts[-1] == kept


def test_vector_env_rm_receives_the_prompt_text_the_policy_saw(tiny_llama):
    rm = Recorder()
    with pytest.warns(UserWarning, match="max_prompt_tokens=8"):
        envs = gym.make_vec(
            "TextGen-v0",
            num_envs=2,
            vectorization_mode="vector_entry_point",
            model=str(tiny_llama),
            prompts=[LONG],
            max_prompt_tokens=8,
            max_new_tokens=2,
            reward_model=rm,
        )
    tokenizer = envs.unwrapped.tokenizer
    word = tokenizer(" the", add_special_tokens=False)["input_ids"][0]
    obs, info = envs.reset(seed=0)
    full = tokenizer(LONG)["input_ids"]
    assert obs["input_ids"][:, :8].tolist() == [[tokenizer.bos_token_id] + full[-7:]] * 2
    envs.step(np.full(2, word))
    _, _, terminated, _, infos = envs.step(np.full(2, word))
    kept = tokenizer.decode(full[-7:])
    assert terminated.all() and rm.prompts == [kept, kept]
    assert list(infos["prompt"]) == [kept, kept]


def test_bundled_prompts_are_not_cut_and_the_rm_gets_them_as_written():
    rm = Recorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = TextGenEnv(reward_model=rm, max_new_tokens=1)
    assert not [w for w in caught if "max_prompt_tokens" in str(w.message)]
    tokenizer = env.tokenizer
    for index, prompt in enumerate(env.prompts):
        obs, info = env.reset(options={"prompt_index": index})
        ids = tokenizer(prompt)["input_ids"]
        assert len(ids) <= env.unwrapped.core.max_prompt_tokens and ids[0] == tokenizer.bos_token_id
        assert obs["input_ids"][: len(ids)].tolist() == ids and obs["attention_mask"].sum() == len(
            ids
        )
        assert info["prompt"] == prompt
    env.step(tokenizer.eos_token_id)
    assert rm.prompts == [env.prompts[-1]]


def test_max_prompt_tokens_must_leave_room_beside_bos(tiny_llama):
    with pytest.raises(ValueError, match=r"max_prompt_tokens=1 .*model=.*1 special token"):
        TextGenEnv(model=str(tiny_llama), prompts=[SHORT], max_prompt_tokens=1)
