"""The exact task's reward: a small sentiment lexicon with negation and intensifiers.

`TextGenExact-v0` needs a reward that is a deterministic function of the whole sequence and
cheap enough to score every sequence of its tree (about 10^4). This one reads the words left
to right: ``not`` flips the next sentiment word, ``very`` doubles it, and the score is the
sum, clipped to [-2, 2] and halved, so it lies in [-1, 1]::

    "very good"      -> +1.0        "not bad"   -> +0.5       "fine dull" -> 0.0
    "good good good" -> +1.0        "not good"  -> -0.5       "plot"      -> 0.0

A modifier applies to the next sentiment word only when nothing else comes between them
(``"not film good"`` is +0.5: the subject word cancels the ``not``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# The words of the exact task's vocabulary, by role (the asset build's grammar uses the same).
SENTIMENT: dict[str, float] = {"good": 1.0, "fine": 0.5, "dull": -0.5, "bad": -1.0}
NEGATION, INTENSIFIER = "not", "very"
SUBJECTS = ("film", "plot")


class LexiconReward:
    """The exact task's reward model (``reward_model="lexicon"``): see the module docstring.

    :param sentiment: word -> score (default `SENTIMENT`).
    :param clip: the summed score is clipped to ``[-clip, clip]`` and divided by ``clip``.
    """

    name = "lexicon"

    def __init__(self, sentiment: Mapping[str, float] | None = None, clip: float = 2.0) -> None:
        if not clip > 0:
            raise ValueError(f"clip={clip!r}: expected a number > 0")
        self.sentiment = dict(SENTIMENT if sentiment is None else sentiment)
        self.clip = float(clip)

    def score_text(self, text: str) -> float:
        total, factor = 0.0, 1.0
        for word in text.split():
            if word == NEGATION:
                factor = -factor
            elif word == INTENSIFIER:
                factor = 2.0 * factor
            else:
                total += factor * self.sentiment.get(word, 0.0)
                factor = 1.0
        return min(max(total, -self.clip), self.clip) / self.clip

    def score(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        return np.array([self.score_text(text) for text in texts], dtype=np.float64)

    # Two lexicons with the same words and clip score alike (`TextGenCore.signature`).
    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LexiconReward)
            and self.sentiment == other.sentiment
            and self.clip == other.clip
        )

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.sentiment.items())), self.clip))

    def __repr__(self) -> str:
        return f"LexiconReward(clip={self.clip})"
