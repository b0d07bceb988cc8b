"""The rows' sequences of the TextGen core: each row's prompt and generated tokens (its
observation), its prompt's text and index, whether its episode is live, what the episode has
earned so far, and the texts of the episodes that end, decoded once.

Every write here is a plain copy that cannot fail, so the core runs them last (validate,
then commit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from textgym.envs.textgen_infos import StepResult
from textgym.envs.textgen_prompts import PromptStarts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from textgym.envs.textgen_branches import TextGenState


class Rows:
    """The sequences of ``num_rows`` rows, each a prompt followed by at most
    ``max_new_tokens`` generated tokens, right-padded with ``pad`` to ``seq_len`` tokens."""

    def __init__(self, num_rows: int, seq_len: int, max_new_tokens: int, pad: int) -> None:
        n = self.num_rows = num_rows
        self.pad = pad
        self.input_ids = np.full((n, seq_len), pad, dtype=np.int64)
        self.attention_mask = np.zeros((n, seq_len), dtype=np.int64)
        self.prompt_len = np.zeros(n, dtype=np.int64)
        self.gen_len = np.zeros(n, dtype=np.int64)
        self.prompt_index = np.zeros(n, dtype=np.int64)
        self.row_prompt: list[str] = [""] * n
        self.active = np.zeros(n, dtype=bool)
        self.started = False  # whether every row has begun an episode once (then each has a state)
        self.kl_sum = np.zeros(n, dtype=np.float64)
        self.kl_rewards = np.zeros((n, max_new_tokens), dtype=np.float32)  # per generated token
        self.exact_kl_sum = np.zeros(n, dtype=np.float64)

    def start(self, rows: np.ndarray, starts: PromptStarts) -> None:
        """Begin a new episode in each of ``rows`` from ``starts``, one per row."""
        self.input_ids[rows] = self.pad
        self.attention_mask[rows] = 0
        for row, ids, text in zip(rows, starts.ids, starts.texts):
            self.input_ids[row, : len(ids)] = ids
            self.attention_mask[row, : len(ids)] = 1
            self.row_prompt[row] = text
        self.prompt_len[rows] = [len(ids) for ids in starts.ids]
        self.prompt_index[rows] = starts.indices
        self.gen_len[rows] = 0
        self.kl_sum[rows] = 0.0
        self.kl_rewards[rows] = 0.0
        self.exact_kl_sum[rows] = 0.0
        self.active[rows] = True
        self.started = True

    def append(
        self, rows: np.ndarray, tokens: np.ndarray, gen_len: np.ndarray, kl_rewards: np.ndarray
    ) -> None:
        """Append ``tokens`` to ``rows`` (now ``gen_len`` generated tokens long, their length
        plus one) with the KL part of the reward each earned, ``kl_rewards``."""
        positions = self.prompt_len[rows] + self.gen_len[rows]
        self.input_ids[rows, positions] = tokens
        self.attention_mask[rows, positions] = 1
        self.gen_len[rows] = gen_len
        self.kl_rewards[rows, gen_len - 1] = kl_rewards

    def end(self, rows: np.ndarray) -> None:
        """End the episodes of ``rows``."""
        self.active[rows] = False

    def _generated(self, row: int) -> np.ndarray:
        start = self.prompt_len[row]
        return self.input_ids[row, start : start + self.gen_len[row]]

    def finished(
        self, rows: np.ndarray, last: np.ndarray, tokenizer: PreTrainedTokenizerBase
    ) -> tuple[list[str], list[str]]:
        """The prompts and texts the RM judges of the episodes of ``rows`` that end now: the
        prompts as the policy saw them (cut, chat-rendered), and the generated texts, each with
        the token of ``last`` it appends now (-1: none), decoded at once."""
        texts = []
        for row, token in zip(rows, last):
            generated = self._generated(row).tolist()
            texts.append(generated + [int(token)] if token >= 0 else generated)
        return [self.row_prompt[row] for row in rows], tokenizer.batch_decode(
            texts, skip_special_tokens=True
        )

    def next_states(
        self, rows: np.ndarray, tokens: np.ndarray
    ) -> list[tuple[np.ndarray, list[int]]]:
        """The states of ``rows`` after each appends its token of ``tokens``, as a constraint
        reads them: the prompt's ids and the generated ones."""
        return [
            (self.input_ids[row, : self.prompt_len[row]], [*self._generated(row).tolist(), token])
            for row, token in zip(rows.tolist(), tokens.tolist())
        ]

    def sequences(self) -> list[list[int]]:
        """Every row's tokens, prompt and generated (ended rows too)."""
        lengths = self.prompt_len + self.gen_len
        return [ids[:length].tolist() for ids, length in zip(self.input_ids, lengths)]

    def observe(self, index: Any) -> dict[str, np.ndarray]:
        """Fresh copies of the token ids and attention mask of the rows at ``index``."""
        return {
            "input_ids": self.input_ids[index].copy(),
            "attention_mask": self.attention_mask[index].copy(),
        }

    def info(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The ``prompt`` and ``prompt_index`` of ``rows``, one value per row."""
        return {
            "prompt": np.array([self.row_prompt[row] for row in rows], dtype=object),
            "prompt_index": self.prompt_index[rows].copy(),
        }

    def report(self, result: StepResult) -> None:
        """Every row's prompt and prompt index into ``result``."""
        result.prompt[:] = self.row_prompt
        result.prompt_index[:] = self.prompt_index

    def snapshot(self, row: int) -> dict[str, Any]:
        """``row``'s fields of a `TextGenState`: its tokens, prompt and what it earned so far."""
        length, gen = int(self.prompt_len[row] + self.gen_len[row]), int(self.gen_len[row])
        return {
            "tokens": self.input_ids[row, :length].copy(),
            "prompt_len": int(self.prompt_len[row]),
            "prompt_index": int(self.prompt_index[row]),
            "prompt": self.row_prompt[row],
            "kl_rewards": self.kl_rewards[row, :gen].copy(),
            "kl_sum": float(self.kl_sum[row]),
            "exact_kl_sum": float(self.exact_kl_sum[row]),
        }

    def restore(self, rows: np.ndarray, state: TextGenState) -> None:
        """Continue ``state`` (checked) in each of ``rows``, replacing what they held."""
        length, gen = len(state.tokens), len(state.kl_rewards)
        self.input_ids[rows] = self.pad
        self.input_ids[rows, :length] = state.tokens
        self.attention_mask[rows] = 0
        self.attention_mask[rows, :length] = 1
        self.prompt_len[rows] = state.prompt_len
        self.gen_len[rows] = gen
        self.prompt_index[rows] = state.prompt_index
        for row in rows:
            self.row_prompt[row] = state.prompt
        self.kl_rewards[rows] = 0.0
        self.kl_rewards[rows, :gen] = state.kl_rewards
        self.kl_sum[rows] = state.kl_sum
        self.exact_kl_sum[rows] = state.exact_kl_sum
        self.active[rows] = True
