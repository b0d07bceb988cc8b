"""Groups of TextGen rows: ``group_size`` rows that start from one prompt and end together.

Rows ``g*k`` to ``g*k + k - 1`` form group ``g``. A row whose text ends (EOS or
``max_new_tokens``) while its group still generates is idle: its actions are ignored until the
whole group ends, and then every row of it ends on one step. With ``group_size=1`` every row is
its own group, nothing is ever idle, and an episode ends with its text.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from textgym._checks import check_int
from textgym.envs.textgen_infos import StepResult
from textgym.envs.textgen_prompts import PromptStarts


class Ends(NamedTuple):
    """Which rows a step ends, decided before anything is written."""

    done: np.ndarray  # the rows whose episode ends now (sorted)
    idle: np.ndarray  # the rows whose text ends now while their group goes on
    last: np.ndarray  # per done row, the token it appends now (-1: none, an idle row's)
    eos: np.ndarray  # per done row, whether its text ended with EOS

    def stopped(self) -> np.ndarray:
        """The rows that have no next token from now on (sorted): done or idle."""
        return np.union1d(self.done, self.idle) if self.idle.size else self.done


class Groups:
    """The group of every row of ``num_rows``, which rows are idle, and when groups end."""

    def __init__(self, num_rows: int, group_size: int) -> None:
        check_int("num_rows", num_rows, low=1)
        check_int("group_size", group_size, low=1)
        if num_rows % group_size:
            raise ValueError(
                f"group_size={group_size} does not divide the {num_rows} row(s): expected a "
                "divisor of num_envs (a group is that many rows that share a prompt; the "
                "single TextGenEnv has one row, so groups need gym.make_vec)"
            )
        self.size = group_size
        self.grouped = group_size > 1
        # `ended_eos` says whether an idle row's text ended with EOS (for the penalty at the end).
        self.idle = np.zeros(num_rows, dtype=bool)
        self.ended_eos = np.zeros(num_rows, dtype=bool)
        self.group = np.zeros(num_rows, dtype=np.int64)  # each row's group episode id
        self.started = 0  # group episodes begun so far

    def check(self, rows: np.ndarray, argument: str) -> None:
        """Raise naming ``argument`` unless the sorted ``rows`` are whole groups."""
        k = self.size
        if k == 1:
            return
        whole = len(rows) % k == 0 and bool(
            (rows.reshape(-1, k) == rows[::k, None] + np.arange(k)).all()
            and (rows[::k] % k == 0).all()
        )
        if not whole:
            raise ValueError(
                f"{argument} select rows {rows.tolist()}, which split a group: with "
                f"group_size={k} rows start and step in whole groups (rows g*{k} to g*{k}+{k - 1})"
            )

    def check_starts(self, rows: np.ndarray, starts: PromptStarts, argument: str) -> None:
        """Raise naming ``argument`` unless ``rows`` are whole groups and ``starts`` (one per
        row) give each group one prompt."""
        self.check(rows, argument)
        k = self.size
        for i in range(0, len(rows) if k > 1 else 0, k):
            for j in range(i + 1, i + k):
                if starts.ids[j] != starts.ids[i]:
                    raise ValueError(
                        f"{argument}: rows {rows[i]} and {rows[j]} are in one group "
                        f"(group_size={k}) but were given different prompts: expected one "
                        "prompt per group"
                    )

    def begin(self, rows: np.ndarray) -> None:
        """New group episodes in ``rows`` (whole groups, sorted), numbered on from the last."""
        self.idle[rows] = False
        groups = len(rows) // self.size
        self.group[rows] = self.started + np.repeat(np.arange(groups), self.size)
        self.started += groups

    def generating(self, rows: np.ndarray, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stepped ``rows`` that generate a token, and their ``acts``: idle rows wait."""
        if not self.grouped:
            return rows, acts
        going = ~self.idle[rows]
        return rows[going], acts[going]

    def ends(
        self,
        active: np.ndarray,
        gen: np.ndarray,
        tokens: np.ndarray,
        ended: np.ndarray,
        hit_eos: np.ndarray,
    ) -> Ends:
        """After rows ``gen`` append ``tokens`` (their texts ``ended`` now, with ``hit_eos``),
        the `Ends` of the step: alone, an episode ends with its text; in a group, when every
        text of the group has (of the ``active`` rows)."""
        if not self.grouped:
            return Ends(gen[ended], gen[:0], tokens[ended], hit_eos[ended])
        text_over = self.idle.copy()
        text_over[gen[ended]] = True
        eos = self.ended_eos.copy()
        eos[gen[ended]] = hit_eos[ended]
        k = self.size
        done = np.repeat(text_over.reshape(-1, k).all(1), k) & active
        done_rows = np.flatnonzero(done)
        last = np.full(len(active), -1, dtype=np.int64)
        last[gen] = tokens
        return Ends(done_rows, gen[ended & ~done[gen]], last[done_rows], eos[done_rows])

    def commit(self, ends: Ends, gen: np.ndarray, ended: np.ndarray, hit_eos: np.ndarray) -> None:
        """Write the step's `Ends` (see `ends` for the arguments)."""
        if not self.grouped:
            return
        self.idle[ends.done] = False
        self.idle[ends.idle] = True
        self.ended_eos[gen[ended]] = hit_eos[ended]

    def report(self, result: StepResult) -> None:
        """Every row's group and idle flag into ``result`` (with groups)."""
        if self.grouped:
            result.group[:] = self.group
            result.idle[:] = self.idle

    def info(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``group`` and ``idle`` of ``rows`` for a reset info (with groups; else nothing)."""
        if not self.grouped:
            return {}
        return {"group": self.group[rows].copy(), "idle": self.idle[rows].copy()}

    def mask_idle(self, mask: np.ndarray, rows: np.ndarray | None) -> None:
        """An idle row ignores its action: its row of the action ``mask`` allows action 0 alone."""
        idle = self.idle if rows is None else self.idle[np.asarray(rows, dtype=np.int64)]
        if idle.any():
            mask[idle] = False
            mask[idle, 0] = True
