"""The reward-model protocol, the checks every score goes through, and plain callables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


class RewardModelError(RuntimeError):
    """A reward model raised, or returned scores that cannot be used."""


@runtime_checkable
class RewardModel(Protocol):
    """Scores finished texts: ``score(prompts, texts) -> np.ndarray`` of shape ``(len(texts),)``.

    ``texts`` are the generated continuations (without the prompt); ``prompts`` the prompts
    they continue, as the text the policy conditioned on: a string prompt as given, a chat
    conversation as rendered by the policy tokenizer's chat template (role markers and the
    generation prompt included), and a prompt cut to ``max_prompt_tokens`` as the decoded text
    of the tokens kept. ``prompt + text`` is thus always the episode's whole text, less the
    special tokens the tokenizer adds around every text (BOS; a chat template's own markers
    stay). Calls are batched: one call scores every sequence that finished on a step.
    """

    name: str

    def score(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray: ...


class CallableRewardModel:
    """Wraps any Python callable ``fn(prompts, texts) -> scores`` as a `RewardModel`.

    :param fn: the scoring function; it receives lists of strings and returns one number per text.
    :param name: how errors and logs refer to it (default: the function's name).
    """

    def __init__(
        self, fn: Callable[[Sequence[str], Sequence[str]], Sequence[float]], name: str | None = None
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn={fn!r} is not callable: expected fn(prompts, texts) -> scores")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or type(fn).__name__

    def score(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        # No cast: `checked_score` refuses strings and bools, which a float cast would parse.
        return np.asarray(self.fn(list(prompts), list(texts)))

    def __repr__(self) -> str:
        return f"CallableRewardModel({self.name})"


def checked_score(model: RewardModel, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """Score ``texts`` and check the result; any failure raises `RewardModelError` naming the RM.

    Scores are numbers (ints or floats): strings such as ``"0.5"`` and bools are refused, not
    parsed, since they mean the RM is not doing what its author thinks.
    """
    name = getattr(model, "name", type(model).__name__)
    try:
        raw = model.score(prompts, texts)
        scores = np.asarray(raw)
    except Exception as err:
        raise RewardModelError(f"reward model {name!r} raised {type(err).__name__}: {err}") from err
    if scores.dtype.kind not in "iuf":
        raise RewardModelError(
            f"reward model {name!r} returned {scores.dtype} scores {scores.tolist()!r}: expected "
            "numbers (ints or floats, not strings, bools or objects), one finite number per text"
        )
    if scores.shape != (len(texts),):
        raise RewardModelError(
            f"reward model {name!r} returned scores of shape {scores.shape} for {len(texts)} "
            f"texts: expected shape ({len(texts)},), one finite number per text"
        )
    if not np.all(np.isfinite(scores)):
        raise RewardModelError(
            f"reward model {name!r} returned non-finite scores {scores.tolist()}: expected one "
            "finite number per text"
        )
    return scores.astype(np.float64)
