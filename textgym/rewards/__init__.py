"""Reward models: one protocol, ``score(prompts, texts) -> np.ndarray``, batched.

- `VaderSentiment` (``"sentiment"``): lexicon sentiment, the default task's RM.
- `HFRewardModel`: any ``AutoModelForSequenceClassification`` (a label or its single logit).
- `CallableRewardModel`: any Python callable ``fn(prompts, texts) -> scores``.
- `LexiconReward` (``"lexicon"``): the exact task's reward, a word lexicon with negation.
- `train_reward_model`: a Bradley-Terry RM learned from preference pairs (`load_pairs`,
  `bundled_preferences_path`), saved as a directory that `HFRewardModel` loads.
"""

from __future__ import annotations

import os
from typing import Any

from textgym.rewards.base import (
    CallableRewardModel,
    RewardModel,
    RewardModelError,
    checked_score,
)
from textgym.rewards.hf import HFRewardModel
from textgym.rewards.learned import (
    PreferencePair,
    bundled_preferences_path,
    load_pairs,
    train_reward_model,
)
from textgym.rewards.lexicon import LexiconReward
from textgym.rewards.sentiment import VaderSentiment

__all__ = [
    "CallableRewardModel",
    "HFRewardModel",
    "LexiconReward",
    "PreferencePair",
    "RewardModel",
    "RewardModelError",
    "VaderSentiment",
    "bundled_preferences_path",
    "checked_score",
    "load_pairs",
    "resolve_reward_model",
    "train_reward_model",
]

_NAMED = {"sentiment": VaderSentiment, "vader": VaderSentiment, "lexicon": LexiconReward}


def resolve_reward_model(spec: Any = None, **hf_kwargs: Any) -> RewardModel:
    """Turn TextGen's ``reward_model`` argument into a `RewardModel`.

    :param spec: ``None`` (VADER sentiment), a `RewardModel`, a callable
        ``(prompts, texts) -> scores``, a name (``"sentiment"``), or a path to a HF
        sequence-classification model saved with its trained head (see `HFRewardModel`).
    :param hf_kwargs: passed to `HFRewardModel` when ``spec`` is a path.
    """
    if spec is None:
        return VaderSentiment()
    if isinstance(spec, RewardModel):
        return spec
    if isinstance(spec, str | os.PathLike):
        key = os.fspath(spec)
        if key in _NAMED:
            return _NAMED[key]()
        if os.path.isdir(key):
            return HFRewardModel(key, **hf_kwargs)
        raise ValueError(
            f"reward_model={key!r} is neither a known name {sorted(_NAMED)} nor an existing "
            "directory with a sequence-classification model"
        )
    if callable(spec):
        return CallableRewardModel(spec)
    raise TypeError(
        f"reward_model={spec!r} has type {type(spec).__name__}: expected a RewardModel, a "
        f"callable (prompts, texts) -> scores, a name in {sorted(_NAMED)} or a model path"
    )
