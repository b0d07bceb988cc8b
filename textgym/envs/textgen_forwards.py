"""The reference model's forwards in TextGen: its KV cache over the rows' sequences, the
forwards a step, a start, a snapshot and a restore run on it, and the check that an episode
fits the reference.

A forward that fails midway may leave the cache updated in some layers and not in others, so
the cache is then dropped, and rebuilt by the next forward from the rows' tokens, which the
core writes only after every forward succeeded. Pickling drops it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from textgym.envs.textgen_prompts import PromptStarts
from textgym.envs.textgen_rows import Rows
from textgym.kv_cache import IncrementalLM

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class ReferenceForwards:
    """The KV-cached reference ``model`` over every row of ``rows`` (left-padded with
    ``pad_token_id`` in the cache), and the forwards run on it."""

    def __init__(self, model: PreTrainedModel, rows: Rows, pad_token_id: int) -> None:
        self.model = model
        self.rows = rows
        self.pad_token_id = pad_token_id
        # None when it must be rebuilt from the rows' tokens (after unpickling, or a forward
        # that failed midway): see `run`.
        self.lm: IncrementalLM | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and deepcopy) everything but the KV cache, which the copy rebuilds."""
        return {**self.__dict__, "lm": None}

    def run(self, run: Callable[..., Any], *args: Any) -> Any:
        """``run(kv, *args)`` on the KV-cached reference ``kv``; if it raises, the cache (perhaps
        updated in some layers and not in others) is dropped, to be rebuilt from the unchanged
        tokens."""
        kv = self.lm if self.lm is not None else self._rebuilt()
        try:
            return run(kv, *args)
        except BaseException:
            self.lm = None
            raise

    def _rebuilt(self) -> IncrementalLM:
        """The KV-cached reference over every row's tokens, by one forward over each row's
        whole sequence (ended rows too: a partial start later needs every row cached)."""
        rows = self.rows
        kv = IncrementalLM(self.model, rows.num_rows, self.pad_token_id)
        if rows.started:
            kv.start(list(range(rows.num_rows)), rows.sequences())
        self.lm = kv
        return kv

    def step(
        self,
        gen: np.ndarray,
        tokens: np.ndarray,
        going: np.ndarray,
        restart: tuple[np.ndarray, PromptStarts] | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The forwards of a step: ``tokens`` (of rows ``gen``) fed to the rows still
        ``going``, then the prompts of the ``restart`` rows; the next logits of each (None
        where there are none)."""
        if going.size or restart is not None:
            return self.run(self._step_forwards, gen, tokens, going, restart)
        return None, None

    def _step_forwards(
        self,
        kv: IncrementalLM,
        gen: np.ndarray,
        tokens: np.ndarray,
        going: np.ndarray,
        restart: tuple[np.ndarray, PromptStarts] | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        n = self.rows.num_rows
        logits = None
        if going.size == n:
            logits = kv.advance(torch.from_numpy(tokens))
        elif going.size:
            feed = np.full(n, self.rows.pad, dtype=np.int64)
            feed[gen] = tokens
            step_rows = np.zeros(n, dtype=bool)
            step_rows[going] = True
            logits = kv.advance(torch.from_numpy(feed), step_rows)
            logits = logits[torch.as_tensor(going, device=logits.device)]
        if restart is None:
            return logits, None
        rows, starts = restart
        return logits, kv.start(rows.tolist(), starts.ids)


def check_reference_fits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    top_k: int | None,
    max_prompt_tokens: int,
    max_new_tokens: int,
) -> int:
    """The reference ``model``'s vocabulary size; raise unless the ``tokenizer``, ``top_k`` and
    the episode's length fit it."""
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"the tokenizer of model has {len(tokenizer)} tokens but the reference "
            f"model scores only {vocab_size}: expected a reference with the same "
            "vocabulary"
        )
    if top_k is not None and top_k > vocab_size:
        raise ValueError(
            f"top_k={top_k} exceeds the vocabulary of {vocab_size} tokens: "
            f"expected 1 <= top_k <= {vocab_size}"
        )
    config = model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    length = max_prompt_tokens + max_new_tokens
    if positions is not None and length > positions:
        raise ValueError(
            f"max_prompt_tokens + max_new_tokens = {length} exceeds the {positions} "
            f"positions of the reference model: expected at most {positions} tokens per "
            "episode"
        )
    return vocab_size
