"""Branches of a TextGen episode: `TextGenState`, one sequence's mid-episode state that
``snapshot`` takes and ``restore`` (or ``fork``) continues, the settings it was made with (its
signature), and the checks a state passes before a restore writes anything."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from textgym._checks import is_int, is_number
from textgym.kv_cache import CachedRow
from textgym.rewards import CallableRewardModel, HFRewardModel, RewardModel, VaderSentiment


@dataclass(frozen=True)
class TextGenState:
    """One sequence's mid-episode state, taken by ``snapshot`` and given to ``restore`` (or
    ``fork``) to continue it exactly: its tokens, what the episode has earned so far, the
    reference's next-token distribution and the reference's KV cache of the sequence.

    Restoring writes it into a row at the cost of a copy, not a forward pass. The state holds
    only the sequence and the settings it was made with (``signature``): not the env's random
    generator (the prompts later resets draw), not the KL controller's current beta (a training
    quantity: the steps after a restore pay the restoring env's beta), not the attached scorer.
    `TextGenCore.restore` refuses a state whose settings or contents do not fit the env.
    """

    tokens: np.ndarray  # (P + T,) int64: the prompt's ids, then the T generated ones
    prompt_len: int  # P
    prompt_index: int  # as in info["prompt_index"]
    prompt: str  # as in info["prompt"]
    kl_rewards: np.ndarray  # (T,) float32: the KL part of each step's reward so far
    kl_sum: float  # the episode's summed KL estimate so far (with a scorer)
    exact_kl_sum: float  # the episode's summed exact KL so far (with a scorer)
    next_logprobs: torch.Tensor  # (V,) the reference's next-token log-probs
    candidate_ids: torch.Tensor  # (top_k,) "topk" mode's candidates
    candidate_logprobs: torch.Tensor  # (top_k,)
    cache: CachedRow  # the reference's keys and values of the sequence
    signature: dict[str, Any]  # the settings it was made with (see `TextGenCore.signature`)

    @property
    def generated(self) -> np.ndarray:
        """The generated token ids."""
        return self.tokens[self.prompt_len :]


def signature_of(core: Any) -> dict[str, Any]:
    """The settings of ``core`` (a `TextGenCore`) that decide what a state becomes after a
    restore, by name (see `TextGenCore.signature`)."""
    ref = core.reference_model
    return {
        "model": str(core.tokenizer.name_or_path),
        "reference_model": str(ref.config.name_or_path),
        "dtype": str(ref.dtype),
        "vocab_size": core.vocab_size,
        "action_mode": core.action_mode,
        "top_k": core.top_k,
        "top_p": core.top_p,
        "max_prompt_tokens": core.max_prompt_tokens,
        "max_new_tokens": core.max_new_tokens,
        "constraint": core.constraint,
        "kl_estimator": core.kl_penalty.estimator,
        **core.kl_penalty.settings,
        "reward_model": _reward_model_key(core.reward_model),
        "missing_eos_penalty": core.missing_eos_penalty,
        "normalize_reward": (core.reward_gain, core.reward_bias),
    }


def check_state(
    state: TextGenState,
    signature: Mapping[str, Any],
    *,
    vocab_size: int,
    max_prompt_tokens: int,
    max_new_tokens: int,
    candidates: int,
    topk: bool,
    prompt_texts: Sequence[str],
) -> None:
    """Raise ``ValueError`` naming what differs unless ``state`` was made with the settings of
    ``signature`` (every one that differs named) and holds a sequence mid-episode that fits
    an env of them: its shapes, its vocabulary of ``vocab_size`` tokens, its number of
    ``candidates`` (read as actions' tokens when ``topk``) and its ``prompt_texts``. Then every
    write of a restore but the cache's splice is a copy that cannot fail."""
    differences = _setting_differences(state.signature, signature)
    if differences:
        raise ValueError(
            f"state was taken from an env with other settings ({'; '.join(differences)}): "
            "expected a state of an env with the same settings (see TextGenCore.signature)"
        )
    tokens, prompt_len, vocab = state.tokens, state.prompt_len, vocab_size
    if not (isinstance(tokens, np.ndarray) and tokens.ndim == 1 and tokens.dtype.kind in "iu"):
        raise ValueError(f"state.tokens={tokens!r}: expected a 1-D integer numpy array")
    fits = is_int(prompt_len) and 1 <= prompt_len <= max_prompt_tokens
    gen = len(tokens) - prompt_len if fits else -1
    if not 0 <= gen < max_new_tokens:
        raise ValueError(
            f"state holds {len(tokens)} tokens with prompt_len={prompt_len!r}: expected a "
            f"prompt of 1 to {max_prompt_tokens} tokens followed by 0 to "
            f"{max_new_tokens - 1} generated ones (an episode in progress)"
        )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab):
        outside = tokens[(tokens < 0) | (tokens >= vocab)]
        raise ValueError(
            f"state.tokens hold the id(s) {outside[:8].tolist()}, outside the vocabulary: "
            f"expected token ids in [0, {vocab})"
        )
    k = candidates
    arrays = {  # name: (value, its type, shape, dtype kind, what it is)
        "kl_rewards": (state.kl_rewards, np.ndarray, (gen,), "f", "a KL reward per token"),
        "next_logprobs": (state.next_logprobs, torch.Tensor, (vocab,), "f", "log-probs"),
        "candidate_ids": (state.candidate_ids, torch.Tensor, (k,), "i", "token ids"),
        "candidate_logprobs": (state.candidate_logprobs, torch.Tensor, (k,), "f", "log-probs"),
    }
    for name, (value, kind, shape, dtype, what) in arrays.items():
        if not (
            isinstance(value, kind)
            and tuple(value.shape) == shape
            and _dtype_kind(value.dtype) == dtype
        ):
            got = f"{type(value).__name__} {getattr(value, 'dtype', '')}".rstrip()
            raise ValueError(
                f"state.{name} is a {got} of shape {tuple(getattr(value, 'shape', ()))}: "
                f"expected a {kind.__name__} of {'floats' if dtype == 'f' else 'ints'} of "
                f"shape {shape} ({what}) in this env"
            )
    if topk:  # only there are the candidates read (as actions' tokens)
        low, high = torch.aminmax(state.candidate_ids)
        if int(low) < 0 or int(high) >= vocab:
            raise ValueError(
                f"state.candidate_ids={state.candidate_ids.tolist()}: expected token ids in "
                f"[0, {vocab})"
            )
    for name in ("kl_sum", "exact_kl_sum"):
        if not is_number(getattr(state, name)):
            raise ValueError(f"state.{name}={getattr(state, name)!r}: expected a number")
    cache = state.cache
    if not (
        isinstance(cache, CachedRow)
        and cache.mask.dim() == 1
        and cache.length == len(tokens)
        and len(cache.keys) == len(cache.values)
        and all(
            keys.dim() == 3 and keys.shape[1] == cache.mask.shape[0] and keys.shape == v.shape
            for keys, v in zip(cache.keys, cache.values)
        )
    ):
        raise ValueError(
            f"state.cache does not hold the keys and values of the state's {len(tokens)} "
            "tokens: expected the CachedRow snapshot() took with them"
        )
    index, prompt, count = state.prompt_index, state.prompt, len(prompt_texts)
    if not isinstance(prompt, str):
        raise ValueError(f"state.prompt={prompt!r}: expected the prompt's text, a str")
    if not (is_int(index) and (index == -1 or (0 <= index < count))):
        raise ValueError(
            f"state.prompt_index={index!r}: expected -1 (a prompt given to reset) or an "
            f"index into this env's {count} prompts"
        )
    if index >= 0 and prompt_texts[index] != prompt:
        raise ValueError(
            f"state.prompt_index={index} is the prompt {prompt_texts[index]!r} in "
            f"this env, but the state's prompt is {prompt!r}: expected a state of an env "
            "with the same prompts"
        )


def _reward_model_key(model: RewardModel) -> Any:
    """What makes two reward models score alike, for `TextGenCore.signature`: the function a
    callable wraps, VADER (it has no settings), an HF model's path, label and
    ``include_prompt``; any other reward model is compared as itself (``==``)."""
    if isinstance(model, CallableRewardModel):
        return model.fn
    if isinstance(model, VaderSentiment):
        return "VaderSentiment"
    if isinstance(model, HFRewardModel):
        return ("HFRewardModel", model.name, model.label, model.include_prompt)
    return model


def _setting_differences(theirs: Any, ours: Mapping[str, Any]) -> list[str]:
    """``"name: the state's X, this env's Y"`` for each setting in which the signature
    ``theirs`` (a state's) differs from ``ours``."""
    if not isinstance(theirs, Mapping):
        return [f"signature={theirs!r}, expected a dict of settings like {list(ours)}"]
    if theirs == ours:  # the common case, at the cost of one comparison
        return []

    def shown(settings: Mapping[str, Any], key: str) -> str:
        return repr(settings[key]) if key in settings else "none"

    return [
        f"{key}: the state's {shown(theirs, key)}, this env's {shown(ours, key)}"
        for key in [*ours, *(key for key in theirs if key not in ours)]
        if key not in theirs or key not in ours or theirs[key] != ours[key]
    ]


def _dtype_kind(dtype: np.dtype | torch.dtype) -> str:
    """A numpy or torch dtype's kind: ``"f"`` floats, ``"i"`` integers, ``"b"`` bools, ``"c"``
    complex numbers."""
    if isinstance(dtype, torch.dtype):
        if dtype == torch.bool:
            return "b"
        return "f" if dtype.is_floating_point else "c" if dtype.is_complex else "i"
    kind = np.dtype(dtype).kind
    return "i" if kind == "u" else kind
