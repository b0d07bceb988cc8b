"""KV-cached incremental scoring of a causal LM, batched.

Every TextGen step costs one incremental forward of the reference model. `IncrementalLM`
keeps one KV cache for a batch of rows and advances all rows with a single forward pass.
Rows are left-padded so that every row's newest token sits in the last cache column; a row
that starts a new episode has its prompt's keys and values computed on their own and
spliced into the right end of the cache, while the other rows keep theirs. Columns that
no row attends to any more are dropped, so the cache stays bounded however long it runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel


def cache_keyword(model: PreTrainedModel) -> str:
    """The forward keyword that takes a KV cache: transformers 5.24 renamed
    ``past_key_values`` to ``cache`` (the old name warns, and is to go in 5.40); earlier
    versions know only ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache a forward returned, under either name (see `cache_keyword`)."""
    cache = out.get("cache")
    return cache if cache is not None else out.past_key_values


def cache_layers(cache: Any) -> list:
    """The layers of a ``DynamicCache``, each with ``keys`` and ``values`` ``(B, heads, T, d)``
    tensors that may be indexed per row; raises for caches without them."""
    layers = getattr(cache, "layers", None)
    if layers is None or any(getattr(layer, "keys", None) is None for layer in layers):
        raise TypeError(
            f"{type(cache).__name__} is not a supported KV cache: batched resets need a "
            "DynamicCache whose layers hold keys and values"
        )
    return layers


class IncrementalLM:
    """A frozen causal LM that advances a batch of rows one token at a time with a KV cache.

    :param model: the causal LM (used in eval mode, under ``torch.inference_mode``).
    :param num_rows: how many sequences advance together.
    :param pad_token_id: the token fed for left padding (masked out, never attended to).
    """

    def __init__(self, model: PreTrainedModel, num_rows: int, pad_token_id: int) -> None:
        self.model = model
        self.num_rows = num_rows
        self.pad_token_id = pad_token_id
        self.device = model.device
        self._cache_keyword = cache_keyword(model)
        self._cache = None
        # (N, T) bool, which cache columns each row attends to; None while the cache is dense
        # (every row exactly T tokens long, no padding). Dense is the common case at batch 1,
        # and then a step is the raw incremental forward: an all-ones mask, HF's own positions.
        self._mask: torch.Tensor | None = None
        self._lengths: torch.Tensor | None = None  # (N,) real tokens per row; None while dense
        self._length = 0  # T

    @property
    def cache_length(self) -> int:
        return self._length

    @torch.inference_mode()
    def start(self, rows: Sequence[int], prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Begin new sequences in ``rows`` from token lists ``prompts``.

        Rows that start from the same tokens (the rows of a group, say) share one encoding: each
        distinct prompt goes through the model once, and its keys and values are copied into
        every row that starts from it.

        Returns the next-token logits after each prompt, ``(len(rows), V)`` float32.
        """
        rows = list(rows)
        distinct: dict[tuple[int, ...], int] = {}
        inverse = [distinct.setdefault(tuple(map(int, p)), len(distinct)) for p in prompts]
        ids, mask = self._left_pad(list(distinct))  # (u, P)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache, logits = output_cache(out), out.logits[:, -1, :].float()
        if len(distinct) < len(prompts):
            pick = torch.as_tensor(inverse, device=self.device)
            for layer in cache_layers(cache):
                layer.keys, layer.values = layer.keys[pick], layer.values[pick]
            mask, logits = mask[pick], logits[pick]
        if self._cache is None or len(rows) == self.num_rows:
            if rows != list(range(self.num_rows)):
                raise ValueError("the first start() must begin every row, in order")
            self._cache = cache
            self._mask, self._lengths = mask.bool(), mask.sum(-1)
            self._length = mask.shape[1]
        else:
            layers = [(layer.keys, layer.values) for layer in cache_layers(cache)]
            self._splice(torch.as_tensor(rows, device=self.device), layers, mask.bool())
        self._densify_if_possible()
        return logits

    @torch.inference_mode()
    def snapshot(self, row: int) -> CachedRow:
        """A copy of one row's cache: the keys and values of the columns from its first
        attended one on, and which of them it attends to. `restore` writes it back."""
        if self._cache is None:
            raise RuntimeError("IncrementalLM.snapshot() called before start()")
        mask = (
            torch.ones(self._length, dtype=torch.bool, device=self.device)
            if self._mask is None
            else self._mask[row]
        )
        first = int(mask.long().argmax())  # the row attends to at least its first token
        return CachedRow(
            keys=[layer.keys[row, :, first:].clone() for layer in cache_layers(self._cache)],
            values=[layer.values[row, :, first:].clone() for layer in cache_layers(self._cache)],
            mask=mask[first:].clone(),
        )

    @torch.inference_mode()
    def restore(self, rows: Sequence[int], state: CachedRow) -> None:
        """Write ``state`` (a `snapshot`) into each of ``rows``, in place of what they held."""
        if self._cache is None:
            raise RuntimeError("IncrementalLM.restore() called before start()")
        count = len(rows)
        to = self.device
        layers = [
            (
                keys.to(to).unsqueeze(0).expand(count, -1, -1, -1),
                values.to(to).unsqueeze(0).expand(count, -1, -1, -1),
            )
            for keys, values in zip(state.keys, state.values, strict=True)
        ]
        mask = state.mask.to(to).unsqueeze(0).expand(count, -1)
        self._splice(torch.as_tensor(list(rows), device=self.device), layers, mask)
        self._densify_if_possible()

    @torch.inference_mode()
    def advance(self, tokens: torch.Tensor, live: Sequence[bool] | None = None) -> torch.Tensor:
        """Feed one token per row, ``(N,)`` int64; returns the next-token logits ``(N, V)``.

        :param live: optional ``(N,)`` bool mask; rows outside it are fed a masked dummy token
            and keep their length (their logits are meaningless).
        """
        if self._cache is None:
            raise RuntimeError("IncrementalLM.advance() called before start()")
        ids = tokens.view(-1, 1).to(self.device)
        if self._mask is None and live is None:
            # The mask is all ones, yet passing it says that a fed pad token is an ordinary
            # token, not padding (transformers warns about pad tokens fed without a mask).
            ones = torch.ones(self.num_rows, self._length + 1, dtype=torch.long, device=self.device)
            out = self.model(
                input_ids=ids,
                attention_mask=ones,
                **{self._cache_keyword: self._cache},
                use_cache=True,
            )
        else:
            self._materialize()
            column = (
                torch.ones(self.num_rows, 1, dtype=torch.bool, device=self.device)
                if live is None
                else torch.as_tensor(live, device=self.device).view(-1, 1)
            )
            self._mask = torch.cat([self._mask, column], dim=1)
            out = self.model(
                input_ids=ids,
                attention_mask=self._mask.long(),
                position_ids=self._lengths.view(-1, 1),
                **{self._cache_keyword: self._cache},
                use_cache=True,
            )
            self._lengths = self._lengths + column.view(-1).long()
        self._cache = output_cache(out)
        self._length += 1
        if self._mask is not None:
            self._compact()
            self._densify_if_possible()
        return out.logits[:, -1, :].float()

    def _materialize(self) -> None:
        """Leave dense mode: write out the all-true mask and the equal lengths."""
        if self._mask is None:
            self._mask = torch.ones(
                self.num_rows, self._length, dtype=torch.bool, device=self.device
            )
            self._lengths = torch.full((self.num_rows,), self._length, device=self.device)

    def _densify_if_possible(self) -> None:
        if self._mask is not None and bool(self._mask.all()):
            self._mask = self._lengths = None

    def _left_pad(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            if len(prompt) == 0:
                raise ValueError("a prompt must have at least one token")
            ids[i, width - len(prompt) :] = torch.as_tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _splice(
        self,
        rows: torch.Tensor,
        layers: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
    ) -> None:
        """Write keys and values (per layer, ``(k, H, W, D)``) into the right end of ``rows``'
        cache; ``mask`` ``(k, W)`` bool says which of the W columns they attend to."""
        self._materialize()
        width, total = mask.shape[1], self._length
        if width > total:
            # The prompt is longer than the cache: grow every row on the left with masked columns.
            grow = width - total
            for layer in cache_layers(self._cache):
                layer.keys = _pad_left(layer.keys, grow)
                layer.values = _pad_left(layer.values, grow)
            self._mask = _pad_left(self._mask, grow)
            total = self._length = width
        for old, (keys, values) in zip(cache_layers(self._cache), layers, strict=True):
            old.keys[rows, :, total - width :] = keys
            old.values[rows, :, total - width :] = values
        self._mask[rows] = False
        self._mask[rows, total - width :] = mask
        self._lengths[rows] = mask.sum(-1)

    def _compact(self) -> None:
        """Drop the leading cache columns that no row attends to any more."""
        first = int(self._mask.any(0).long().argmax())
        # Amortised: slicing copies the cache, so only do it when enough has piled up.
        if first < max(16, self._length // 4):
            return
        for layer in cache_layers(self._cache):
            layer.keys = layer.keys[:, :, first:].contiguous()
            layer.values = layer.values[:, :, first:].contiguous()
        self._mask = self._mask[:, first:]
        self._length -= first


@dataclass
class CachedRow:
    """One row of an `IncrementalLM` cache, copied out by `IncrementalLM.snapshot`: per layer
    the keys and values ``(H, C, D)`` of the row's last C columns, and ``mask`` ``(C,)`` bool,
    the columns it attends to (the first one always)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor

    @property
    def length(self) -> int:
        """The row's tokens: prompt plus everything fed since."""
        return int(self.mask.sum())


def _pad_left(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """Prepend ``count`` zero columns along the sequence axis (dim 2 for KV, 1 for masks)."""
    dim = 2 if tensor.dim() == 4 else 1
    shape = list(tensor.shape)
    shape[dim] = count
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
