"""A lexicon sentiment reward: VADER's compound score of the generated text."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class VaderSentiment:
    """VADER compound sentiment (Hutto & Gilbert, 2014) of each continuation, in [-1, 1].

    The default task's reward model: it needs no weights and no network, it is fast, and
    it is the gold judge of the default "write a positive review" task. The prompt is not
    scored, only what the policy wrote.
    """

    name = "sentiment"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        return np.array(
            [self._analyzer.polarity_scores(text)["compound"] for text in texts],
            dtype=np.float64,
        )

    def __repr__(self) -> str:
        return "VaderSentiment()"
