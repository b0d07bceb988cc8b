"""Prompt sources: a list of strings, a .txt (one per line) or .jsonl file, or the bundled set."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

BUNDLED_PROMPTS = Path(__file__).resolve().parent / "assets" / "prompts.txt"

_JSONL_KEYS = ("prompt", "text")


def load_prompts(source: str | os.PathLike | Sequence[str] | None = None) -> list[str]:
    """Load prompts from ``source``; ``None`` gives the bundled review openings.

    A ``.jsonl`` file holds one JSON object per line with a ``"prompt"`` (or ``"text"``)
    field, or one JSON string per line. Blank lines are skipped. Raises ``ValueError`` for an
    empty set and ``FileNotFoundError`` for a missing file.
    """
    if source is None:
        source = BUNDLED_PROMPTS
    if isinstance(source, str | os.PathLike):
        prompts = _read_file(Path(source))
    elif isinstance(source, Sequence):
        prompts = list(source)
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(
                    f"prompts[{i}]={prompt!r} has type {type(prompt).__name__}: expected str"
                )
    else:
        raise TypeError(
            f"prompts={source!r} has type {type(source).__name__}: expected a list of strings "
            "or a path to a .txt or .jsonl file"
        )
    if not prompts:
        raise ValueError(f"prompts={source!r} is empty: expected at least one prompt")
    return prompts


def _read_file(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"prompts={str(path)!r} is not a file: expected a list of strings or a path to a "
            ".txt (one prompt per line) or .jsonl file"
        )
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    prompts = []
    for number, line in enumerate(lines, start=1):
        record = json.loads(line)
        if isinstance(record, dict):
            key = next((k for k in _JSONL_KEYS if k in record), None)
            if key is None:
                raise ValueError(
                    f"prompts={str(path)!r} line {number} has no field in {_JSONL_KEYS}"
                )
            record = record[key]
        if not isinstance(record, str):
            raise ValueError(f"prompts={str(path)!r} line {number}: expected a string prompt")
        prompts.append(record)
    return prompts
