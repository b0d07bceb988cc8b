"""What the policy, the reference and the RM see: a cut prompt keeps BOS, the RM scores the
prompt text the policy conditioned on, and an RM input is cut so the continuation survives."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import CORPUS

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen import TextGenEnv
from textgym.prompts import cut_left, load_prompts, special_affixes
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


# ---------------------------------------------------------------- prompt files


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("p.jsonl", '"fine"\n\n{"prompt": "x"\n', r"p.jsonl' line 3 is not valid JSON"),
        ("p.jsonl", '"fine"\n{"prompt": 3}\n', r"p.jsonl' line 2 holds 3: expected a string"),
        ("p.jsonl", '{"title": "x"}\n', r"p.jsonl' line 1 has no field in \('prompt'"),
        ("p.jsonl", '"\\ud800 lone"\n', r"p.jsonl' line 1 holds '\\ud800' .*not valid Unicode"),
        ("p.JSONL", '"fine"\n[1, 2]\n', r"p.JSONL' line 2 holds the message 1"),
        ("p.json", '["a", ]', r"p.json' is not valid JSON .*expected a JSON list"),
        ("p.json", '{"prompt": "a"}', r"p.json' holds a JSON dict: expected a JSON list"),
        ("p.json", '["a", 3]', r"p.json' item 1 holds 3"),
        ("p.txt", b"caf\xe9\n", r"p.txt' is not UTF-8 text .*expected a UTF-8 encoded file"),
        ("p.jsonl", b'"caf\xe9"\n', r"p.jsonl' is not UTF-8 text"),
    ],
)
def test_malformed_prompt_files_are_refused_naming_file_and_line(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=match):
        load_prompts(path)


def test_prompt_files_by_suffix_in_any_case_and_without_a_bom(tmp_path):
    chat = [{"role": "user", "content": "hi"}]
    bom = "\ufeff"
    files = {
        "a.txt": bom + "first\n\nsecond\r\n",
        "b.jsonl": bom + '"first"\n\n{"text": "second"}\n',
        "c.JSONL": '"first"\r\n{"prompt": "second"}\r\n',
        "d.json": bom + json.dumps(["first", {"messages": chat}]),
        "e.Json": json.dumps(["first", "line\u2028separator"]),
        "f.jsonl": json.dumps("a\u2028b") + "\n",  # JSON Lines split at \n only
        "g.csv": 'a, "b"\n{"prompt": "c"}\n',  # any other suffix: one prompt per line
    }
    loaded = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        loaded[name] = load_prompts(tmp_path / name)
    assert loaded == {
        "a.txt": ["first", "second"],
        "b.jsonl": ["first", "second"],
        "c.JSONL": ["first", "second"],
        "d.json": ["first", chat],
        "e.Json": ["first", "line\u2028separator"],
        "f.jsonl": ["a\u2028b"],
        "g.csv": ['a, "b"', '{"prompt": "c"}'],
    }


@pytest.mark.parametrize(
    "prompts, match",
    [
        (["ok", "lone \ud800 surrogate"], r"prompts\[1\] holds '\\ud800' at character 5"),
        ([[{"role": "user", "content": "\udfff"}]], r"prompts\[0\] holds '\\udfff'"),
    ],
)
def test_prompts_with_a_lone_surrogate_are_refused_naming_the_prompt(tiny_gpt2, prompts, match):
    with pytest.raises(ValueError, match=match):
        TextGenEnv(model=str(tiny_gpt2), prompts=prompts)


# ---------------------------------------------------------------- HF reward models


@pytest.mark.parametrize("kind", ["causal-lm", "base"])
def test_a_checkpoint_without_a_classification_head_is_refused(tiny_gpt2, tmp_path, kind):
    """Loaded as a classifier, a causal LM or a bare trunk gets a random head: random scores."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    loader = AutoModelForCausalLM if kind == "causal-lm" else AutoModel
    path = tmp_path / kind
    loader.from_pretrained(str(tiny_gpt2)).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(path)
    match = r"reward_model='.*' has no trained weights for \['score.weight'\].*random"
    with pytest.raises(ValueError, match=match):
        HFRewardModel(path, label=0)
    with pytest.raises(ValueError, match=match):
        TextGenEnv(model=str(tiny_gpt2), prompts=[SHORT], reward_model=str(path))


def test_a_saved_random_head_is_a_deliberate_choice_and_loads(tiny_reward_model):
    rm = HFRewardModel(tiny_reward_model)  # head drawn once and saved with the model
    assert rm.score([SHORT], [" and more"]).shape == (1,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size=0: expected an integer >= 1"),
        ({"include_prompt": "yes"}, "include_prompt='yes' must be True or False"),
        ({"label": True}, "label=True has type bool"),
    ],
)
def test_bad_hf_reward_model_arguments_are_refused_before_loading(tiny_reward_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HFRewardModel(tiny_reward_model, **kwargs)
