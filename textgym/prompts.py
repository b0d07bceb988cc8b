"""Prompts: where they come from, and the token ids and text a policy conditions on.

A prompt is a string or a chat conversation: a list of ``{"role": ..., "content": ...}``
messages, rendered with the tokenizer's chat template and ``add_generation_prompt=True``, as
TRL does. Prompt sets come from a list, a .jsonl or .json file of records, a file of any other
suffix (.txt) read one prompt per line, or the bundled set (see `load_prompts`). A prompt
longer than its budget is cut from the left, keeping the special tokens the tokenizer puts
around every text (BOS), so the model still sees the start it was trained on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # transformers is imported only when a model is loaded
    from transformers import PreTrainedTokenizerBase

BUNDLED_PROMPTS = Path(__file__).resolve().parent / "assets" / "prompts.txt"

Prompt = str | list[dict[str, str]]
"""A plain-text prompt, or a chat conversation of ``{"role", "content"}`` messages."""

_JSONL_KEYS = ("prompt", "text", "messages")
_EXPECTED = 'a string or a list of {"role": str, "content": str} chat messages'
_RECORD = f"{_EXPECTED}, or an object with one of them in a field {_JSONL_KEYS}"


class EncodedPrompt(NamedTuple):
    """A prompt as the policy sees it."""

    ids: list[int]  # the token ids the policy conditions on, special tokens included
    text: str  # the text of those ids: the prompt, or the rendered conversation, as kept
    cut: bool  # whether tokens were cut from the left to fit the budget


def load_prompts(source: str | os.PathLike | Sequence[Prompt] | None = None) -> list[Prompt]:
    """Load prompts from ``source``; ``None`` gives the bundled review openings.

    ``source`` is a list of prompts (strings or chat conversations) or a path to a UTF-8 file
    (a leading byte-order mark is dropped), chosen by its suffix, in any case:

    - ``.jsonl``: one JSON record per line, blank lines skipped. A record is a string, a list
      of chat messages, or an object whose ``"prompt"`` or ``"text"`` field holds one of those
      or whose ``"messages"`` field holds a list of chat messages (the first of the three
      fields present is read; a ``"messages"`` field holding anything else is refused).
    - ``.json``: one JSON list of such records.
    - anything else (``.txt``): one string prompt per line, blank lines skipped.

    Raises ``ValueError`` for an empty set, a malformed prompt or record (naming the file and
    the line), a file that is not UTF-8 or a string that is not valid Unicode (a lone
    surrogate), and ``FileNotFoundError`` for a missing file.
    """
    if source is None:
        source = BUNDLED_PROMPTS
    if isinstance(source, str | os.PathLike):
        prompts = _read_file(Path(source))
    elif isinstance(source, Sequence):
        prompts = [check_prompt(prompt, f"prompts[{i}]") for i, prompt in enumerate(source)]
    else:
        raise TypeError(
            f"prompts={source!r} has type {type(source).__name__}: expected a list of prompts "
            f"({_EXPECTED}) or a path to a .txt, .jsonl or .json file"
        )
    if not prompts:
        raise ValueError(f"prompts={source!r} is empty: expected at least one prompt")
    return prompts


def check_prompt(prompt: Any, argument: str) -> Prompt:
    """Return ``prompt`` if it is a string or a list of chat messages, else raise naming it."""
    if isinstance(prompt, str):
        _check_unicode(prompt, argument)
        return prompt
    if not isinstance(prompt, list):
        hint = " (pass one conversation as prompts=[messages])" if isinstance(prompt, dict) else ""
        raise TypeError(
            f"{argument}={prompt!r} has type {type(prompt).__name__}: expected {_EXPECTED}{hint}"
        )
    if not prompt:
        raise ValueError(f"{argument} is an empty conversation: expected {_EXPECTED}")
    for message in prompt:
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise ValueError(f"{argument} holds the message {message!r}: expected {_EXPECTED}")
        _check_unicode(message["role"], argument)
        _check_unicode(message["content"], argument)
    return prompt


def _check_unicode(text: str, argument: str) -> None:
    """Refuse a string that cannot be encoded (a lone surrogate, from a bad JSON escape or a
    mis-decoded file): tokenizers fail on it with errors that do not say which prompt."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"{argument} holds {text[err.start : err.end]!r} at character {err.start}, which is "
            "not valid Unicode (a lone surrogate): expected text that encodes as UTF-8"
        ) from None


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, max_tokens: int, argument: str = "prompt"
) -> EncodedPrompt:
    """The token ids of ``prompt``, cut from the left to ``max_tokens``, and their text.

    A string is tokenized with the tokenizer's special tokens (BOS). A conversation is rendered
    with the chat template and tokenized without them, since templates write their own (TRL
    does the same). A cut keeps the special prefix and suffix (see `cut_left`); the text is
    then the decoded kept tokens that came from the prompt, so it never holds a BOS that the
    tokenizer added. An uncut prompt's text is the string, or the rendered conversation.
    """
    prompt = check_prompt(prompt, argument)
    chat = not isinstance(prompt, str)
    text = _render_chat(tokenizer, prompt, argument) if chat else prompt
    ids = tokenizer(text, add_special_tokens=not chat)["input_ids"]
    if not ids:
        raise ValueError(f"{argument}={prompt!r} encodes to no tokens: expected a non-empty prompt")
    if len(ids) <= max_tokens:
        return EncodedPrompt(ids, text, False)
    prefix, suffix = special_affixes(tokenizer)
    kept = cut_left(ids, max_tokens, prefix, suffix)
    start, stop = (0, len(kept)) if chat else (len(prefix), len(kept) - len(suffix))
    return EncodedPrompt(kept, tokenizer.decode(kept[start:stop]), True)


def _render_chat(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], argument: str
) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{argument} is a chat conversation, but the tokenizer of "
            f"model={tokenizer.name_or_path!r} has no chat template: expected string prompts, "
            "or a model whose tokenizer defines chat_template"
        )
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def special_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after every text: ``([bos], [])``
    for Llama-style tokenizers, ``([], [])`` for GPT-2, ``([cls], [sep])`` for BERT."""
    probe = "a"
    full = tokenizer(probe)["input_ids"]
    body = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start : start + len(body)] == body:
            return full[:start], full[start + len(body) :]
    return [], []  # a tokenizer that changes the text's own tokens: nothing to protect


def cut_left(ids: list[int], max_tokens: int, prefix: list[int], suffix: list[int]) -> list[int]:
    """``ids`` cut from the left to ``max_tokens``, keeping ``prefix`` and ``suffix`` (the
    tokenizer's special tokens, see `special_affixes`) where ``ids`` begins and ends with them.
    """
    if len(ids) <= max_tokens:
        return list(ids)
    head = len(prefix) if prefix and ids[: len(prefix)] == prefix else 0
    tail = len(suffix) if suffix and ids[len(ids) - len(suffix) :] == suffix else 0
    keep = max_tokens - head - tail
    if keep < 1:
        raise ValueError(
            f"max_tokens={max_tokens} leaves no room for text beside the {head + tail} special "
            f"tokens kept: expected max_tokens > {head + tail}"
        )
    end = len(ids) - tail
    return list(ids[:head]) + list(ids[end - keep : end]) + list(ids[end:])


def _read_file(path: Path) -> list[Prompt]:
    where = f"prompts={str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(
            f"{where} is not a file: expected a list of prompts or a path to a .txt (one prompt "
            "per line), .jsonl or .json file"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a leading BOM is not prompt text
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{where} is not UTF-8 text (byte {err.start} is {err.object[err.start : err.end]!r}):"
            " expected a UTF-8 encoded file"
        ) from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        records = _parse_json(text, where, "a JSON list of prompt records")
        if not isinstance(records, list):
            raise ValueError(
                f"{where} holds a JSON {type(records).__name__}: expected a JSON list of prompt "
                f"records, each {_RECORD}"
            )
        return [_record(record, f"{where} item {i}") for i, record in enumerate(records)]
    if suffix == ".jsonl":
        # JSON Lines are split at "\n" only: a JSON string may hold U+2028 and friends.
        numbered = enumerate(text.split("\n"), start=1)
        return [
            _record(_parse_json(line, f"{where} line {number}", _RECORD), f"{where} line {number}")
            for number, line in numbered
            if line.strip()
        ]
    return [
        check_prompt(line, f"{where} line {number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def _parse_json(text: str, where: str, expected: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        at = f"line {err.lineno}, column {err.colno}" if "\n" in text else f"column {err.colno}"
        raise ValueError(
            f"{where} is not valid JSON ({err.msg} at {at}): expected {expected}"
        ) from None


def _record(record: Any, where: str) -> Prompt:
    """The prompt a JSON record holds (see `load_prompts`)."""
    if isinstance(record, dict):
        key = next((k for k in _JSONL_KEYS if k in record), None)
        if key is None:
            raise ValueError(f"{where} has no field in {_JSONL_KEYS}: expected {_RECORD}")
        record = record[key]
        # A string there is a mistake (often messages encoded twice), not a plain prompt.
        if key == "messages" and not isinstance(record, list):
            raise ValueError(
                f"{where} has a 'messages' field holding {record!r}: expected a list of "
                '{"role": str, "content": str} chat messages (a plain prompt goes in "prompt" '
                'or "text")'
            )
    if not isinstance(record, str | list):
        raise ValueError(f"{where} holds {record!r}: expected {_EXPECTED}")
    return check_prompt(record, where)
