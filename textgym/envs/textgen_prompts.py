"""The prompts TextGen episodes begin from: the prompt set encoded once, the prompts that
``reset(options=...)`` asks for, and the draws of the env's random generator."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from textgym._checks import is_int
from textgym.prompts import EncodedPrompt, Prompt, encode_prompt, load_prompts, special_affixes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

RESET_OPTIONS = ("prompt", "prompt_index")  # the keys of reset(options=...); at most one


class PromptStarts(NamedTuple):
    """The prompts new episodes begin from, checked and encoded: one entry per row started."""

    ids: list[list[int]]  # the token ids the policy conditions on
    texts: list[str]  # their text (see `encode_prompt`), what the RM and info["prompt"] get
    indices: np.ndarray  # (k,) int64: index in the prompt set, -1 for a prompt given as text

    def take(self, rows: np.ndarray) -> PromptStarts:
        """The entries of ``rows``."""
        return PromptStarts(
            [self.ids[r] for r in rows], [self.texts[r] for r in rows], self.indices[rows]
        )


class PromptSet:
    """A prompt set encoded for ``tokenizer`` (cut from the left to ``max_prompt_tokens``,
    keeping BOS; warned once), and the starts episodes take from it or from given prompts.

    :param prompts: a list of prompts (strings or chat conversations), a path (.txt one per
        line, .jsonl), or None for the bundled set (see `load_prompts`).
    """

    def __init__(
        self,
        prompts: str | os.PathLike | Sequence[Prompt] | None,
        tokenizer: PreTrainedTokenizerBase,
        max_prompt_tokens: int,
    ) -> None:
        self.prompts = load_prompts(prompts)
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self._warned_truncation = False
        specials = sum(map(len, special_affixes(tokenizer)))  # BOS: kept by every cut
        if max_prompt_tokens <= specials:
            raise ValueError(
                f"max_prompt_tokens={max_prompt_tokens} leaves no room for prompt text: the "
                f"tokenizer of model={tokenizer.name_or_path!r} adds {specials} special "
                f"token(s) that a cut prompt keeps; expected max_prompt_tokens > {specials}"
            )
        encoded = [
            encode_prompt(tokenizer, p, max_prompt_tokens, f"prompts[{i}]")
            for i, p in enumerate(self.prompts)
        ]
        self._warn_truncated(sum(e.cut for e in encoded))
        self.ids = [e.ids for e in encoded]
        self.texts = [e.text for e in encoded]  # what the policy sees, for the RM

    def __len__(self) -> int:
        return len(self.prompts)

    def encode(self, prompt: Prompt, argument: str = "prompt") -> EncodedPrompt:
        """``prompt`` (a string or a chat conversation) as the policy sees it: token ids cut
        from the left to ``max_prompt_tokens`` keeping BOS (warning once), and their text."""
        encoded = encode_prompt(self.tokenizer, prompt, self.max_prompt_tokens, argument)
        self._warn_truncated(int(encoded.cut))
        return encoded

    def _warn_truncated(self, count: int) -> None:
        if count and not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(
                f"{count} prompt(s) are longer than max_prompt_tokens={self.max_prompt_tokens} "
                "tokens and are cut from the left (their ends and the tokenizer's special "
                "tokens such as BOS are kept); shown once",
                UserWarning,
                stacklevel=4,
            )

    def starts(self, indices: Sequence[int] | np.ndarray) -> PromptStarts:
        """The prompts of the set at ``indices`` (valid indices, as drawn by an env)."""
        indices = np.asarray(indices, dtype=np.int64)
        return PromptStarts(
            [self.ids[i] for i in indices], [self.texts[i] for i in indices], indices
        )

    def given(self, prompts: Sequence[Prompt], arguments: Sequence[str]) -> PromptStarts:
        """``prompts`` (strings or conversations) checked and encoded; a bad one raises naming
        its ``arguments`` entry."""
        encoded = [self.encode(p, name) for p, name in zip(prompts, arguments, strict=True)]
        return PromptStarts(
            [e.ids for e in encoded], [e.text for e in encoded], np.full(len(encoded), -1)
        )

    def from_options(
        self, options: Mapping[str, Any], count: int, per_row: bool
    ) -> PromptStarts | None:
        """The prompts that ``reset(options=...)`` asks for, for ``count`` rows, checked before
        anything changes; None when the options choose none (the env draws them).

        ``options`` (keys already checked against `RESET_OPTIONS`) holds at most one of
        ``"prompt_index"``, an index into the prompt set, and ``"prompt"``, a prompt (a string
        or a chat conversation). With ``per_row`` (the vector env) either may also be a list of
        ``count`` of them, one per row; a single one then applies to every row.
        """
        if "prompt" in options and "prompt_index" in options:
            raise ValueError(
                f"options={dict(options)!r} gives both 'prompt' and 'prompt_index': expected "
                "at most one of them"
            )
        if "prompt_index" in options:
            entries = _option_entries(options, "prompt_index", count, per_row, is_int)
            size = len(self.prompts)
            for name, index in entries:
                if not (is_int(index) and 0 <= index < size):
                    raise ValueError(
                        f"{name}={index!r}: expected an integer in [0, {size}), an index into "
                        f"the {size} prompts"
                    )
            return self.starts([index for _, index in entries])
        if "prompt" in options:
            entries = _option_entries(options, "prompt", count, per_row, lambda p: type(p) is str)
            return self.given([p for _, p in entries], [name for name, _ in entries])
        return None

    def draw(self, rng: np.random.Generator, count: int, group_size: int) -> np.ndarray:
        """Prompt-set indices for ``count`` rows (whole groups of ``group_size``): one draw per
        group from ``rng``, repeated for each of its rows."""
        draws = rng.integers(len(self.prompts), size=count // group_size)
        return np.repeat(draws, group_size)


def _option_entries(
    options: Mapping[str, Any], key: str, count: int, per_row: bool, is_one: Callable[[Any], bool]
) -> list[tuple[str, Any]]:
    """``options[key]`` as ``count`` entries ``(name, value)``, one per row: a single value
    (``is_one``) applies to every row; with ``per_row`` a list of ``count`` gives one each."""
    value, name = options[key], f"options[{key!r}]"
    if per_row and not is_one(value) and isinstance(value, list | tuple | np.ndarray):
        if len(value) != count:
            raise ValueError(
                f"{name}={value!r} has {len(value)} entries: expected one per row ({count}), "
                "or a single one for every row"
            )
        return [(f"{name}[{i}]", entry) for i, entry in enumerate(value)]
    return [(name, value)] * count
