"""Constrained decoding for TextGen: which tokens may come next, as a mask.

A *constraint* is any callable ``constraint(prompt_ids, generated_ids) -> allowed``, passed to
the env as ``constraint=`` (``gym.make("TextGen-v0", constraint=...)``). The env calls it once
per new state of each row (a prompt begun, a token appended; with numpy int64 arrays of the
prompt's ids and the ids generated so far) and takes ``allowed`` as either the allowed token
ids (any sequence or array of ints) or a bool mask over the vocabulary, shape
``(vocab_size,)``. Only a bool dtype is a mask: ``vocab_size`` integers that are all 0 or 1
could be a 0/1 mask or token ids, so they are refused (`ConstraintError`) rather than guessed.

What the env does with the allowed set S (`TextGenEnv`'s section *Constraints* says it for
users):

- **Reference**: pi_ref's next-token distribution is renormalised over S,
  ``log pi_ref_S(a) = log pi_ref(a) - log sum_{b in S} pi_ref(b)`` for a in S, ``-inf``
  outside; ``reference_logprobs()``, the observation's candidates (``"topk"`` mode: the k
  most likely tokens of S) and the KL use it.
- **Policy**: the scorer's log-probs are renormalised over S the same way before the KL
  (sampled and exact): the KL is ``KL(pi_S || pi_ref_S)``, the divergence of the two
  distributions a masked policy actually samples from.
- **Actions**: ``action_masks()`` is the reference's mask intersected with S (S alone when
  that is empty); an action outside S is refused with a ``ValueError`` before anything
  changes. So a constrained env needs an agent that honours ``action_masks()`` (sb3-contrib's
  MaskablePPO, or a policy masking its logits).

Two ready-made constraints: `TokenSet` (a fixed vocabulary) and `Regex` (the text must match a
pattern). Both are plain dataclasses, so two equal ones compare equal (a snapshot of one env
restores into another with an equal constraint).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import regex
import torch

__all__ = ["Constraint", "ConstraintError", "Regex", "TokenSet", "allowed_masks"]

Constraint = Callable[[np.ndarray, np.ndarray], Any]
"""``constraint(prompt_ids, generated_ids) -> allowed token ids, or a (vocab_size,) bool mask``."""


class ConstraintError(RuntimeError):
    """A constraint raised, or returned something that is not a non-empty set of tokens."""


def allowed_masks(
    constraint: Constraint,
    states: Sequence[tuple[Sequence[int], Sequence[int]]],
    vocab_size: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(len(states), vocab_size)`` bool: each ``(prompt_ids, generated_ids)`` state's allowed
    tokens under ``constraint``, checked; raises `ConstraintError` naming the constraint.

    :param constraint: ``constraint(prompt_ids, generated_ids) -> allowed``: token ids, or a
        ``(vocab_size,)`` bool mask (see the module's docstring for what is refused).
    :param states: ``(prompt_ids, generated_ids)`` pairs, one per row.
    :param vocab_size: the number of tokens the mask covers.
    :param device: where the returned tensor lives.
    """
    masks = np.zeros((len(states), vocab_size), dtype=bool)
    for i, (prompt, generated) in enumerate(states):
        prompt = np.asarray(prompt, dtype=np.int64)
        generated = np.asarray(generated, dtype=np.int64)
        try:
            allowed = constraint(prompt, generated)
        except Exception as err:
            raise ConstraintError(f"the constraint {constraint!r} raised: {err!r}") from err
        masks[i] = _as_mask(constraint, allowed, vocab_size, generated)
    return torch.from_numpy(masks).to(device)


def _as_mask(constraint: Any, allowed: Any, vocab_size: int, generated: np.ndarray) -> np.ndarray:
    where = f"after {len(generated)} generated token(s) {generated.tolist()[-8:]}"
    array = np.asarray(allowed)
    if array.dtype == bool:
        if array.shape != (vocab_size,):
            raise ConstraintError(
                f"the constraint {constraint!r} returned a bool mask of shape {array.shape} "
                f"{where}: expected shape ({vocab_size},), one entry per token of the vocabulary"
            )
        mask = array.copy()
    else:
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise ConstraintError(
                f"the constraint {constraint!r} returned {allowed!r} {where}: expected the "
                f"allowed token ids (ints) or a ({vocab_size},) bool mask"
            )
        if array.size == vocab_size and ((array == 0) | (array == 1)).all():
            raise ConstraintError(
                f"the constraint {constraint!r} returned {vocab_size} integers, all 0 or 1, "
                f"{where}: a 0/1 mask or token ids? Expected a bool mask of shape "
                f"({vocab_size},) (only a bool dtype is a mask: np.asarray(mask, dtype=bool)) "
                "or a sequence or array of the allowed token ids"
            )
        if array.size and (array.min() < 0 or array.max() >= vocab_size):
            raise ConstraintError(
                f"the constraint {constraint!r} allowed token id(s) outside [0, {vocab_size}) "
                f"{where}: expected ids of the vocabulary"
            )
        mask = np.zeros(vocab_size, dtype=bool)
        mask[array.astype(np.int64)] = True
    if not mask.any():
        raise ConstraintError(
            f"the constraint {constraint!r} allowed no token {where}: expected at least one "
            "(allow EOS where the text may end)"
        )
    return mask


@dataclasses.dataclass(frozen=True)
class TokenSet:
    """A fixed vocabulary: only ``ids`` (and EOS, when ``eos_token_id`` is given) may be
    generated. ``TokenSet.from_words(tokenizer, words)`` builds it from the tokens of words."""

    ids: tuple[int, ...]
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        ids = tuple(sorted({int(i) for i in self.ids}))
        if not ids or ids[0] < 0:
            raise ValueError(f"ids={self.ids!r}: expected a non-empty set of token ids >= 0")
        object.__setattr__(self, "ids", ids)

    @classmethod
    def from_words(cls, tokenizer: Any, words: Sequence[str], end: bool = True) -> TokenSet:
        """The tokens of ``words`` (each with and without a leading space), plus EOS when
        ``end``."""
        ids = {i for word in words for text in (word, " " + word) for i in tokenizer.encode(
            text, add_special_tokens=False
        )}  # fmt: skip
        return cls(tuple(ids), tokenizer.eos_token_id if end else None)

    def __call__(self, prompt_ids: np.ndarray, generated_ids: np.ndarray) -> list[int]:
        return list(self.ids) if self.eos_token_id is None else [*self.ids, self.eos_token_id]


@dataclasses.dataclass(eq=False)
class Regex:
    """The generated text must match ``pattern`` (Python ``regex`` syntax, matched in full):
    a token is allowed when the text with it appended can still become a match, EOS when the
    text already is one.

    Each check runs the pattern once per vocabulary token on the text so far (a partial
    match), so it costs ``O(V)`` per step: fine for small vocabularies or short texts,
    measurable on 50k-token ones. A token's text is what it adds when decoded after the text
    so far, so word-initial spaces of SentencePiece and byte-level vocabularies are kept.

    :param pattern: the pattern the whole generated text must match.
    :param tokenizer: the env's tokenizer (``env.unwrapped.tokenizer``).
    """

    pattern: str
    tokenizer: Any

    def __post_init__(self) -> None:
        self._compiled = regex.compile(self.pattern)
        self.eos_token_id = self.tokenizer.eos_token_id
        special = set(self.tokenizer.all_special_ids)
        # A token's text after an anchor token, so a leading space is not stripped.
        anchor = self.tokenizer.encode("a", add_special_tokens=False)[:1]
        head = self.tokenizer.decode(anchor)
        self._pieces = [
            None if i in special else self.tokenizer.decode(anchor + [i])[len(head) :]
            for i in range(len(self.tokenizer))
        ]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Regex)
            and other.pattern == self.pattern
            and other.tokenizer.name_or_path == self.tokenizer.name_or_path
        )

    def __hash__(self) -> int:
        return hash((self.pattern, self.tokenizer.name_or_path))

    def __call__(self, prompt_ids: np.ndarray, generated_ids: np.ndarray) -> list[int]:
        text = self.tokenizer.decode(generated_ids, skip_special_tokens=True)
        match = self._compiled.fullmatch
        allowed = [
            i
            for i, piece in enumerate(self._pieces)
            if piece and match(text + piece, partial=True) is not None
        ]
        if self.eos_token_id is not None and match(text) is not None:
            allowed.append(self.eos_token_id)
        return allowed
