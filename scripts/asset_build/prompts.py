"""The bundled prompts: sentiment-neutral openings from held-out fillers, checked against the
corpus."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from asset_build.vocabulary import GENRES, HELD_INTROS, HELD_WATCHERS, PROMPT_FRAMES

# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------


def prompt_candidates(frame: str, held: dict[str, list[str]]) -> list[str]:
    """Every filling of a prompt frame with held-out fillers (and any genre)."""
    choices: dict[str, list[str]] = {
        **held,
        "hwatcher": HELD_WATCHERS,
        "hfilm": ["film", "movie"],
        "hintro": HELD_INTROS,
        "genre": [g for g, _ in GENRES],
    }
    out = [frame]
    for name in re.findall(r"\{(\w+)\}", frame):
        out = [t.replace("{" + name + "}", v, 1) for t in out for v in choices[name]]
    return out


def build_prompts(
    rng: random.Random,
    docs: Sequence[str],
    held: dict[str, list[str]],
    analyzer,
    min_count: int = 250,
) -> tuple[list[str], dict]:
    """Neutral, held-out review openings that occur nowhere in ``docs``.

    Each frame of ``PROMPT_FRAMES`` is filled with held-out fillers, and a filling
    is kept only if it has 3-8 words, VADER finds nothing but neutral words in it,
    and it is not a (case-insensitive) substring of any corpus document.
    """
    haystack = "\n".join(docs).lower()
    prompts: list[str] = []
    stats = {"candidates": 0, "dropped_in_corpus": 0, "dropped_vader": 0, "dropped_length": 0}
    for frame, quota in PROMPT_FRAMES:
        candidates = sorted(set(prompt_candidates(frame, held)))
        rng.shuffle(candidates)
        kept = 0
        for text in candidates:
            if kept >= quota:
                break
            stats["candidates"] += 1
            if not 3 <= len(text.split()) <= 8:
                stats["dropped_length"] += 1
                continue
            # Not just a zero compound (which can hide cancelling words): no word
            # in the opening may carry any VADER sentiment at all.
            if analyzer.polarity_scores(text)["neu"] != 1.0:
                stats["dropped_vader"] += 1
                continue
            if text.lower() in haystack:
                stats["dropped_in_corpus"] += 1
                continue
            prompts.append(text)
            kept += 1
    rng.shuffle(prompts)
    if len(prompts) < min_count:
        raise RuntimeError(f"only {len(prompts)} prompts survived the filters")
    stats["kept"] = len(prompts)
    return prompts, stats
