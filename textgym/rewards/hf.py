"""Any Hugging Face sequence-classification model as a reward model."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch


class HFRewardModel:
    """Scores ``prompt + text`` with an ``AutoModelForSequenceClassification``.

    :param path: model name or local directory (loaded from safetensors).
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

        from textgym.lm import resolve_device

        self.name = os.fspath(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.name, trust_remote_code=trust_remote_code
            )
            self.model = AutoModelForSequenceClassification.from_pretrained(
                self.name, trust_remote_code=trust_remote_code, use_safetensors=True
            )
        except (OSError, ValueError) as err:
            raise ValueError(
                f"reward_model={self.name!r}: could not load a sequence-classification model "
                f"({err}); expected a directory saved with save_pretrained or a Hub name"
            ) from err
        self.model.to(resolve_device(device)).eval().requires_grad_(False)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.label = self._label_index(label)
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
        inputs = [p + t for p, t in zip(prompts, texts)] if self.include_prompt else list(texts)
        scores = []
        for start in range(0, len(inputs), self.batch_size):
            batch = self.tokenizer(
                inputs[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
            ).to(self.model.device)
            logits = self.model(**batch).logits.float()
            scores.append(logits[:, self.label].cpu().numpy())
        return np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)

    def __repr__(self) -> str:
        return f"HFRewardModel({self.name!r}, label={self.label})"
