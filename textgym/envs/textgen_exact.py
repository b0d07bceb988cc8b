"""TextGenExact-v0: a TextGen small enough that its KL-regularised optimum is known exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textgym.envs.textgen import TextGenEnv
from textgym.envs.textgen_vector import TextGenVectorEnv

EXACT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "exact"

# The task; any of them can be given again to gym.make, like every TextGen argument.
EXACT_DEFAULTS: dict[str, Any] = {
    "model": str(EXACT_MODEL),
    "reward_model": "lexicon",
    "prompts": ["film", "plot"],
    "max_new_tokens": 4,
    "max_prompt_tokens": 4,
    "kl_coef": 0.1,
}


class TextGenExactEnv(TextGenEnv):
    """
    ## Description

    TextGen-v0's game on a task small enough to enumerate: every sequence the env can generate
    (16,105 per prompt) is known, so the KL-regularised optimum ``pi*(y) = pi_ref(y)
    exp(R(y)/beta) / Z`` and its value ``beta log Z`` are computed exactly, and any policy's
    distance to it (`textgym.exact.ExactSolver`). It is a testbed for RLHF algorithms: does a
    trainer converge to the regularised optimum, and how far from it does it settle?

    - The reference is a real HF causal LM, a tiny GPT-2 (2 layers, 32 wide, 26,368
      parameters) trained on short reviews such as ``"film not bad very good"``, bundled in
      ``textgym/assets/exact`` and built by ``python scripts/build_assets.py --task exact``.
    - Its word-level tokenizer has 12 tokens: ``<|pad|>``, ``<|bos|>``, ``<|endoftext|>``
      (EOS), ``<|unk|>``, and the words ``film plot not very good fine dull bad``.
    - The prompts are ``"film"`` and ``"plot"``; an episode is at most 4 tokens.
    - The reward model is `textgym.rewards.LexiconReward` (``"lexicon"``): the sentiment
      words' scores (good +1, fine +0.5, dull -0.5, bad -1), ``not`` flipping and ``very``
      doubling the next one, summed, clipped to [-2, 2] and halved: a deterministic function
      of the whole text in [-1, 1].
    - ``kl_coef=0.1``: the reference's expected reward is -0.006, the optimum's +0.982 at a
      KL of 2.23 nats, and ``J(pi*) = beta log Z = +0.758`` (mean over the two prompts).

    Action and observation spaces, rewards, infos, groups and branches are TextGen-v0's
    (``Discrete(12)``; observations of 8 tokens). Any TextGen argument can be given to
    ``gym.make`` to change the task (``kl_coef``, ``prompts``, ...); `ExactSolver` then
    enumerates the changed task, in ``"vocab"`` mode, without a constraint or
    ``normalize_reward``, up to about 200,000 sequences.

    ## Version History

    - v0: initial version.
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode, **{**EXACT_DEFAULTS, **kwargs})


class TextGenExactVectorEnv(TextGenVectorEnv):
    """`TextGenExactEnv`'s task as TextGen-v0's batched vector env (`TextGenVectorEnv`)."""

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(num_envs, render_mode=render_mode, **{**EXACT_DEFAULTS, **kwargs})
