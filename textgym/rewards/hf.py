"""Any Hugging Face sequence-classification model as a reward model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from textgym._checks import check_int, is_int
from textgym.prompts import cut_left, special_affixes

if TYPE_CHECKING:  # transformers is imported only when a model is loaded
    from transformers import BatchEncoding, PreTrainedTokenizerBase


def tokenize_for_reward(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    texts: Sequence[str],
    include_prompt: bool = True,
    max_length: int | None = None,
) -> BatchEncoding:
    """The padded batch a sequence-classification RM scores: ``prompt + text`` (or ``text``).

    An input longer than ``max_length`` (default: the tokenizer's ``model_max_length``) is cut
    from the left, keeping the special tokens the tokenizer puts around every text (BOS;
    CLS/SEP), so the continuation is always scored whole. An input that already begins with
    those tokens (a conversation rendered by a chat template that writes BOS) does not get
    them twice. `HFRewardModel` scores and `train_reward_model` trains through this one
    function, so a learned RM sees at use exactly the strings it was trained on.
    """
    inputs = [p + t for p, t in zip(prompts, texts)] if include_prompt else list(texts)
    limit = max_length or tokenizer.model_max_length
    prefix, suffix = special_affixes(tokenizer)
    rows = []
    # verbose=False: inputs over model_max_length are expected here, and cut below.
    for ids in tokenizer(inputs, add_special_tokens=False, verbose=False)["input_ids"]:
        ids = ids if prefix and ids[: len(prefix)] == prefix else prefix + ids
        rows.append(cut_left(ids + suffix, limit, prefix, suffix))
    return tokenizer.pad({"input_ids": rows}, return_tensors="pt")


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, argument: str) -> None:
    """Give a tokenizer without a pad token its EOS (or UNK) token as pad.

    Sequence-classification models pool the last non-pad token, so padding must be
    possible; the pad id must also be copied to the model's ``config.pad_token_id``.
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"{argument}: the tokenizer has no pad, eos or unk token, so texts of different "
            "lengths cannot be batched; expected a tokenizer that defines one of them"
        )


class HFRewardModel:
    """Scores ``prompt + text`` with an ``AutoModelForSequenceClassification``.

    An input longer than the model accepts (the smaller of its tokenizer's
    ``model_max_length`` and its position embeddings) is cut from the left, keeping the
    tokenizer's special tokens, so the continuation is always scored. The strings are scored
    as given: for a chat prompt the env passes the conversation as rendered by the policy's
    chat template, and no second template is applied, which suits an RM trained on that
    format (one of the same model family, or one trained with `train_reward_model` on such
    prompts).

    :param path: model name or local directory (loaded from safetensors) holding a trained
        classification head; a checkpoint without one (a base or causal LM, whose head would be
        drawn at random) is refused.
    :param label: which output is the reward: ``None`` for a model with a single logit (a
        Bradley-Terry RM), else a label index or a label name from ``config.id2label``.
    :param include_prompt: score the prompt and the continuation together (default) or the
        continuation alone.
    :param batch_size: texts per forward pass.
    :param device: where to run it (default: CUDA if available, else CPU).
    :param trust_remote_code: allow code shipped with the model to run.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        label: int | str | None = None,
        include_prompt: bool = True,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from textgym.lm import quiet_loading, resolve_device

        check_int("batch_size", batch_size, low=1)
        if not isinstance(include_prompt, bool):
            raise ValueError(f"include_prompt={include_prompt!r} must be True or False")
        if not (label is None or isinstance(label, str) or is_int(label)):
            raise ValueError(
                f"label={label!r} has type {type(label).__name__}: expected None, a label index "
                "or a label name"
            )
        self.name = os.fspath(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.name, trust_remote_code=trust_remote_code
            )
            with quiet_loading():
                self.model, loading = AutoModelForSequenceClassification.from_pretrained(
                    self.name,
                    trust_remote_code=trust_remote_code,
                    use_safetensors=True,
                    output_loading_info=True,
                )
        except (OSError, ValueError) as err:
            raise ValueError(
                f"reward_model={self.name!r}: could not load a sequence-classification model "
                f"({err}); expected a directory saved with save_pretrained or a Hub name"
            ) from err
        # A base or causal-LM checkpoint loads "successfully" with a freshly drawn head.
        fresh = sorted({*loading["missing_keys"], *(k[0] for k in loading["mismatched_keys"])})
        if fresh:
            raise ValueError(
                f"reward_model={self.name!r} has no trained weights for {fresh}: loading it as "
                "a sequence classifier draws them at random (a base or causal-LM checkpoint "
                "has no classification head), so its scores would be random; expected a model "
                "saved with its sequence-classification head (a trained reward model, e.g. from "
                "textgym.rewards.train_reward_model). For a deliberately random head, save one "
                "once with AutoModelForSequenceClassification.from_pretrained(path, "
                "num_labels=1).save_pretrained(new_path) and load new_path"
            )
        self.model.to(resolve_device(device)).eval().requires_grad_(False)
        ensure_pad_token(self.tokenizer, f"reward_model={self.name!r}")
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.label = self._label_index(label)
        config = self.model.config
        positions = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        self.max_length = min(self.tokenizer.model_max_length, positions or float("inf"))
        self.include_prompt = include_prompt
        self.batch_size = batch_size

    def _label_index(self, label: int | str | None) -> int:
        num_labels = self.model.config.num_labels
        if label is None:
            if num_labels != 1:
                names = list(self.model.config.id2label.values())
                raise ValueError(
                    f"reward_model={self.name!r} has {num_labels} labels {names}: pass "
                    "HFRewardModel(path, label=...) naming the label that is the reward"
                )
            return 0
        if isinstance(label, str):
            by_name = {v: int(k) for k, v in self.model.config.id2label.items()}
            if label not in by_name:
                raise ValueError(f"label={label!r} is not one of {sorted(by_name)}")
            return by_name[label]
        if not 0 <= int(label) < num_labels:
            raise ValueError(f"label={label!r} is out of range: expected 0 <= label < {num_labels}")
        return int(label)

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        scores = []
        for start in range(0, len(texts), self.batch_size):
            end = start + self.batch_size
            batch = tokenize_for_reward(
                self.tokenizer,
                prompts[start:end],
                texts[start:end],
                self.include_prompt,
                self.max_length,
            ).to(self.model.device)
            logits = self.model(**batch).logits.float()
            scores.append(logits[:, self.label].cpu().numpy())
        return np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)

    def __repr__(self) -> str:
        return f"HFRewardModel({self.name!r}, label={self.label})"
