"""TextGen's spaces: the observation space (the prompt and the generated tokens, right-padded,
with ``"topk"`` mode's candidates) and the check of the actions a step is given."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def observation_space(
    seq_len: int, vocab_size: int, action_mode: str, top_k: int | None
) -> spaces.Dict:
    """The observation space of sequences of ``seq_len`` tokens of a ``vocab_size`` vocabulary;
    in ``"topk"`` ``action_mode`` with the ``top_k`` candidates' ids and reference log-probs."""
    high = vocab_size - 1
    entries = {
        "input_ids": spaces.Box(0, high, (seq_len,), dtype=np.int64),
        "attention_mask": spaces.Box(0, 1, (seq_len,), dtype=np.int64),
    }
    if action_mode == "topk":
        entries["candidate_ids"] = spaces.Box(0, high, (top_k,), dtype=np.int64)
        entries["candidate_logprobs"] = spaces.Box(-np.inf, 0.0, (top_k,), dtype=np.float32)
    return spaces.Dict(entries)


def check_actions(
    actions: Any, rows: np.ndarray, num_rows: int, num_actions: int, argument: str, batched: bool
) -> np.ndarray:
    """The actions of ``rows`` as int64, each of the ``num_rows`` actions checked (stepped or
    not) against ``Discrete(num_actions)``, naming ``argument``; ``batched=False``: one action
    for the one row, a scalar."""
    if type(actions) is int and not batched and 0 <= actions < num_actions:
        return np.array([actions], dtype=np.int64)  # the common single-env case, fast
    arr = np.asarray(actions)
    expected = f"an integer in [0, {num_actions})"
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"{argument}={actions!r} has type {type(actions).__name__} ({arr.dtype}): "
            f"expected {expected}"
        )
    shape = (num_rows,) if batched else ()
    if arr.shape != shape:
        raise ValueError(
            f"{argument}={actions!r} has shape {arr.shape}: expected "
            + (f"shape {shape} with {expected} per row" if batched else f"{expected}, a scalar")
        )
    arr = arr.reshape(num_rows)
    if ((arr < 0) | (arr >= num_actions)).any():
        raise ValueError(f"{argument}={actions!r} is out of range: expected {expected}")
    return arr[rows].astype(np.int64)
