"""Chat prompts: conversations rendered with the tokenizer's chat template, as TRL does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import CORPUS

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen import TextGenEnv
from textgym.prompts import load_prompts

# Writes BOS itself, as Llama's and Mistral's templates do.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
CHAT = [
    {"role": "system", "content": "be kind"},
    {"role": "user", "content": "the movie was"},
]
RENDERED = "<s>system: be kind\nuser: the movie was\nassistant:"


@pytest.fixture(scope="module")
def chat_llama(tiny_llama, tmp_path_factory) -> Path:
    """tiny_llama with a simple chat template on its tokenizer."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("chat-llama") / "model"
    shutil.copytree(tiny_llama, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(out)
    return out


def make(model, prompts, **kwargs) -> TextGenEnv:
    kwargs.setdefault("reward_model", recorder([]))
    kwargs.setdefault("max_prompt_tokens", 48)  # the tiny tokenizer spells the roles out
    return TextGenEnv(model=str(model), prompts=prompts, **kwargs)


def recorder(seen: list[str]):
    def rm(prompts, texts):
        seen.extend(prompts)
        return [0.0] * len(texts)

    return rm


def test_chat_prompt_is_the_rendered_template_with_one_bos(chat_llama):
    env = make(chat_llama, [CHAT])
    tokenizer = env.tokenizer
    obs, info = env.reset(seed=0)
    expected = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True)["input_ids"]
    assert expected.count(tokenizer.bos_token_id) == 1
    assert obs["input_ids"][: len(expected)].tolist() == expected
    assert obs["attention_mask"].sum() == len(expected)
    assert info["prompt"] == RENDERED
    assert env.prompts == [CHAT]


def test_rm_gets_the_rendered_conversation_in_single_and_vector_envs(chat_llama):
    seen: list[str] = []
    kwargs = dict(
        model=str(chat_llama),
        prompts=[CHAT],
        max_prompt_tokens=48,
        max_new_tokens=1,
        reward_model=recorder(seen),
    )
    env = gym.make("TextGen-v0", **kwargs)
    env.reset(seed=0)
    *_, info = env.step(5)
    envs = gym.make_vec("TextGen-v0", 2, vectorization_mode="vector_entry_point", **kwargs)
    envs.reset(seed=0)
    *_, infos = envs.step(np.full(2, 5))
    assert seen == [RENDERED] * 3
    assert info["prompt"] == RENDERED and list(infos["prompt"]) == [RENDERED] * 2


def test_reset_accepts_a_conversation_as_the_prompt(chat_llama):
    env = make(chat_llama, ["plain text"])
    _, info = env.reset(options={"prompt": CHAT})
    assert info["prompt"] == RENDERED


def test_cut_chat_prompt_keeps_the_template_bos(chat_llama):
    long_chat = [{"role": "user", "content": " ".join(CORPUS)}]
    with pytest.warns(UserWarning, match="max_prompt_tokens=8"):
        env = make(chat_llama, [long_chat], max_prompt_tokens=8)
    tokenizer = env.tokenizer
    full = tokenizer.apply_chat_template(long_chat, add_generation_prompt=True)["input_ids"]
    obs, info = env.reset(seed=0)
    assert obs["input_ids"][:8].tolist() == [tokenizer.bos_token_id] + full[-7:]
    # The RM's text is the kept end of the rendered conversation, after the template's BOS.
    assert info["prompt"] == "<s>" + tokenizer.decode(full[-7:])
    rendered = tokenizer.apply_chat_template(long_chat, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith(info["prompt"][len("<s>") :])


def test_jsonl_file_holds_conversations_in_a_field_or_as_a_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    lines = [{"messages": CHAT}, {"prompt": CHAT}, CHAT, {"prompt": "plain"}, "bare"]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    assert load_prompts(path) == [CHAT, CHAT, CHAT, "plain", "bare"]


def test_chat_prompts_without_a_chat_template_raise_naming_prompts_and_model(tiny_llama):
    with pytest.raises(ValueError, match=r"prompts\[1\] is a chat .*model=.*no chat template"):
        TextGenEnv(model=str(tiny_llama), prompts=["plain", CHAT])


@pytest.mark.parametrize(
    "prompts, error, match",
    [
        ([[{"role": "user"}]], ValueError, r"prompts\[0\] holds the message"),
        ([[]], ValueError, r"prompts\[0\] is an empty conversation"),
        ([{"role": "user", "content": "hi"}], TypeError, r"prompts=\[messages\]"),
        (["ok", 3], TypeError, r"prompts\[1\]=3 has type int"),
    ],
)
def test_malformed_prompts_raise_naming_the_prompt(prompts, error, match):
    with pytest.raises(error, match=match):
        load_prompts(prompts)


def test_malformed_jsonl_line_raises_naming_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('"fine"\n{"prompt": 3}\n')
    with pytest.raises(ValueError, match=r"line 2 holds 3"):
        load_prompts(path)


@pytest.mark.parametrize(
    "messages", ["hi", json.dumps(CHAT), {"role": "user", "content": "hi"}, 3, None]
)
def test_a_messages_field_holds_a_list_of_messages_or_is_refused(tmp_path, messages):
    """A string there is no plain prompt: it is refused, as is a lone message."""
    for name, text in {
        "bad.jsonl": '"fine"\n' + json.dumps({"messages": messages}) + "\n",
        "bad.json": json.dumps(["fine", {"messages": messages}]),
    }.items():
        (tmp_path / name).write_text(text)
        where = "line 2" if name.endswith("l") else "item 1"
        with pytest.raises(
            ValueError, match=f"{where} has a 'messages' field holding .*expected a list"
        ):
            load_prompts(tmp_path / name)
