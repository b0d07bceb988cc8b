"""Learned reward models: Bradley-Terry training from preference pairs.

A preference pair says that, as a continuation of ``prompt``, ``chosen`` was preferred over
``rejected``. `train_reward_model` fits a sequence-classification model with one output
``r`` so that ``sigmoid(r(chosen) - r(rejected))`` is the probability of that preference
(the Bradley-Terry model of Ouyang et al., 2022), optionally with reward centring
(Eisenstein et al., 2023), and saves it as a normal Hugging Face model directory that
`HFRewardModel` and TextGen's ``reward_model=PATH`` load.

One concept, kept whole (about 500 lines): the pairs, the split, the backbone, the loop, the
held-out evaluation and the atomic save are the steps of one training, each used only here.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from textgym._checks import check_int, is_number
from textgym.rewards.hf import ensure_pad_token, tokenize_for_reward
from textgym.runfiles import claim
from textgym.versions import installed_versions

_BUNDLED_PREFERENCES = Path(__file__).resolve().parent.parent / "assets" / "preferences.jsonl"
_KEYS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    """As a continuation of ``prompt``, ``chosen`` was preferred over ``rejected``."""

    prompt: str
    chosen: str
    rejected: str


def bundled_preferences_path() -> Path:
    """The bundled synthetic preference set of the default task.

    Pairs of the bundled reference model's continuations of the bundled prompts, labelled by
    the gold judge (VADER) with Bradley-Terry label noise. ``scripts/make_preferences.py``
    builds it; ``preferences.json`` beside it records the settings and the labels' agreement
    with VADER.
    """
    return _BUNDLED_PREFERENCES


def load_pairs(path: str | os.PathLike | None = None) -> list[PreferencePair]:
    """Read preference pairs from a ``.jsonl`` file (``None``: the bundled set).

    Each non-blank line is a JSON object with string fields ``prompt``, ``chosen`` and
    ``rejected`` (other fields are ignored).

    :param path: the file.
    :raises FileNotFoundError: when ``path`` is not a file.
    :raises ValueError: naming the file and line of a malformed record, or for a file
        without pairs.
    """
    path = Path(bundled_preferences_path() if path is None else path)
    expected = 'one {"prompt": ..., "chosen": ..., "rejected": ...} JSON object per line'
    if not path.is_file():
        raise FileNotFoundError(
            f"pairs={str(path)!r} is not a file: expected a .jsonl file with {expected}"
        )
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"pairs={str(path)!r} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where} is not valid JSON ({err}): expected {expected}") from err
            if not isinstance(record, dict):
                raise ValueError(
                    f"{where} holds a {type(record).__name__}, not an object: expected {expected}"
                )
            for key in _KEYS:
                if key not in record:
                    raise ValueError(f"{where} has no {key!r} key: expected {expected}")
                if not isinstance(record[key], str):
                    raise ValueError(
                        f"{where}: {key}={record[key]!r} has type {type(record[key]).__name__}: "
                        "expected str"
                    )
            pairs.append(PreferencePair(*(record[key] for key in _KEYS)))
    if not pairs:
        raise ValueError(f"pairs={str(path)!r} holds no pairs: expected {expected}")
    return pairs


def train_reward_model(
    pairs: Sequence[PreferencePair],
    out: str | os.PathLike,
    *,
    backbone: str | os.PathLike | None = None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 3e-4,
    center_coef: float = 0.0,
    heldout: float = 0.1,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a Bradley-Terry reward model on ``pairs`` and save it to ``out``.

    The loss per pair is ``-logsigmoid(r_chosen - r_rejected)`` plus, with reward centring,
    ``center_coef * (r_chosen + r_rejected) ** 2``: Bradley-Terry fixes rewards only up to a
    constant, and the penalty pins that constant so rewards stay near 0. The model scores
    ``prompt + continuation`` exactly as `HFRewardModel` does. AdamW with a linearly
    decaying learning rate, gradient norm clipped at 1.

    The held-out pairs are a deterministic share of ``pairs`` chosen by a hash of their
    content, so the split does not depend on ``seed`` or the order of ``pairs`` and runs
    with different seeds are compared on the same held-out pairs. ``seed`` sets the new
    output layer's initial weights and the order of the training batches.

    ``out`` receives the model and tokenizer (``save_pretrained``, safetensors) and
    ``training.json``: the arguments, the pairwise accuracy (share of pairs with
    ``r_chosen > r_rejected``) on the training and held-out pairs, the loss per epoch, the
    mean and std of the held-out rewards, and the time taken. Every ``*_loss`` is the plain
    Bradley-Terry loss, so they compare with each other whatever ``center_coef`` is; the
    centring penalty the optimiser also minimised, ``center_coef * (r_chosen + r_rejected)
    ** 2`` averaged over the epoch's batches, is recorded beside each epoch's
    ``train_loss`` as ``train_center_penalty`` (0 without centring).

    Nothing is written to ``out`` until everything is: the model, tokenizer and
    ``training.json`` are written into a new temporary directory beside ``out`` (named
    ``<out>.tmp-<random>``, created before training so that an unwritable location fails
    fast), which then replaces ``out``. When training or saving fails, the temporary
    directory (and any parent directory created for it) is removed and ``out`` is left as
    it was, so the call can simply be repeated. (Should ``out`` be filled by something else
    during training, the trained model stays in the temporary directory and the error
    names it.)

    :param pairs: the preference pairs (see `load_pairs`).
    :param out: a new or empty directory; a non-empty one is refused.
    :param backbone: a causal LM or sequence-classification model (name or directory) with
        its tokenizer; ``None`` is the bundled tiny model. A causal LM gets a new
        one-output head. A sequence-classification model must have one output
        (``num_labels=1``), whose head is trained further; one with more outputs is refused
        rather than silently given a new head, since its trained head would be thrown away
        (re-save it with ``from_pretrained(..., num_labels=1,
        ignore_mismatched_sizes=True)`` to start from its trunk on purpose).
    :param epochs: passes over the training pairs.
    :param batch_size: pairs per optimiser step.
    :param learning_rate: AdamW's initial learning rate.
    :param center_coef: weight of the reward-centring penalty (0: none). Keep it small
        (Eisenstein et al. use 0.01): a large one, against rewards that start far from 0,
        dominates the clipped gradient and can shrink every reward to the same value.
    :param heldout: share of the pairs held out for evaluation, in ``[0, 1)``. With 0 (or
        too few pairs to hold any out) every held-out figure in ``training.json`` is
        ``None``, the curve has no held-out entries, and the reward mean and std are over
        the training pairs.
    :param seed: initialisation and batch-order seed.
    :param device: where to train (default: CUDA if available, else CPU).
    :param progress: show a tqdm progress bar.
    :return: what ``training.json`` holds.
    :raises ValueError: naming the argument, for a bad argument or a backbone that cannot
        be loaded as a one-output sequence-classification model.
    :raises FileExistsError: when ``out`` is not a new or empty directory.
    """
    from textgym.lm import resolve_device

    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    if not (is_number(learning_rate) and 0 < learning_rate < math.inf):
        raise ValueError(f"learning_rate={learning_rate!r}: expected a finite number > 0")
    if not (is_number(center_coef) and 0 <= center_coef < math.inf):
        raise ValueError(f"center_coef={center_coef!r}: expected a finite number >= 0")
    if not (is_number(heldout) and 0 <= heldout < 1):
        raise ValueError(f"heldout={heldout!r}: expected a share in [0, 1)")
    pairs = list(pairs)
    for i, pair in enumerate(pairs):
        if not isinstance(pair, PreferencePair):
            raise TypeError(
                f"pairs[{i}]={pair!r} has type {type(pair).__name__}: expected a "
                "PreferencePair (see load_pairs)"
            )
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"out={str(out)!r} exists and is not an empty directory: expected a new or empty "
            "directory (a trained reward model is never overwritten)"
        )
    train_idx, held_idx = _split(pairs, heldout)
    train_pairs = [pairs[i] for i in train_idx]
    held_pairs = [pairs[i] for i in held_idx]

    start = time.perf_counter()
    torch.manual_seed(seed)  # the new score head's initial weights
    tokenizer, model, source = _load_backbone(backbone)
    with _staged_directory(out) as staging:
        model.to(resolve_device(device))
        curve = _fit(
            model,
            tokenizer,
            train_pairs,
            held_pairs,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            center_coef=center_coef,
            seed=seed,
            progress=progress,
        )
        final_train = _evaluate(model, tokenizer, train_pairs, batch_size)
        final_held = _evaluate(model, tokenizer, held_pairs, batch_size) if held_pairs else None
        rewards = (final_held or final_train)["rewards"]
        summary = {
            "args": {
                "backbone": source,
                "epochs": epochs,
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "center_coef": center_coef,
                "heldout": heldout,
                "seed": seed,
            },
            "pairs": {
                "total": len(pairs),
                "train": len(train_pairs),
                "heldout": len(held_pairs),
                "sha256": _fingerprint(pairs),
            },
            "train_accuracy": final_train["accuracy"],
            "heldout_accuracy": final_held["accuracy"] if final_held else None,
            "train_loss": final_train["loss"],
            "heldout_loss": final_held["loss"] if final_held else None,
            "curve": curve,
            # Over the chosen and rejected texts of the held-out pairs (training pairs without).
            "reward_mean": round(float(np.mean(rewards)), 4),
            "reward_std": round(float(np.std(rewards)), 4),
            "seconds": round(time.perf_counter() - start, 1),
            "versions": installed_versions(),
        }
        with _quiet_transformers():
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        text = json.dumps(summary, indent=2) + "\n"
        (staging / "training.json").write_text(text, encoding="utf-8")
    return summary


def _fit(
    model: torch.nn.Module,
    tokenizer: Any,
    train_pairs: list[PreferencePair],
    held_pairs: list[PreferencePair],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    center_coef: float,
    seed: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Train ``model`` in place; return the curve, one point per epoch.

    A point's ``train_loss`` is the plain Bradley-Terry loss, like every other ``*_loss``;
    ``train_center_penalty`` is the centring term that was added to it for the gradient.
    Both are running means over the epoch's batches, taken in training mode.
    """
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    steps_per_epoch = math.ceil(len(train_pairs) / batch_size)
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    rng = np.random.default_rng(seed)

    curve = []
    bar = tqdm(total=total, desc="train-rm", unit="batch", disable=not progress)
    for epoch in range(1, epochs + 1):
        model.train()
        losses, penalties, correct = [], [], 0
        order = rng.permutation(len(train_pairs))
        for first in range(0, len(order), batch_size):
            batch = [train_pairs[i] for i in order[first : first + batch_size]]
            chosen, rejected = _pair_rewards(model, tokenizer, batch)  # (B,), (B,)
            bt_loss = _bt_loss(chosen, rejected)
            penalty = center_coef * ((chosen + rejected) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            (bt_loss + penalty).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(bt_loss.item())
            penalties.append(penalty.item())
            correct += int((chosen > rejected).sum())
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-20:]):.3f}")
        point = {
            "epoch": epoch,
            "train_loss": round(float(np.mean(losses)), 4),
            "train_center_penalty": round(float(np.mean(penalties)), 4),
            "train_running_accuracy": round(correct / len(train_pairs), 4),
        }
        if held_pairs:
            held = _evaluate(model, tokenizer, held_pairs, batch_size)
            point.update(heldout_loss=held["loss"], heldout_accuracy=held["accuracy"])
            bar.set_postfix(epoch=epoch, heldout_accuracy=f"{held['accuracy']:.3f}")
        curve.append(point)
    bar.close()
    return curve


@contextmanager
def _staged_directory(out: Path) -> Iterator[Path]:
    """A new empty directory beside ``out`` to write into, which replaces ``out`` at the end.

    ``out`` must be absent or an empty directory (``os.replace`` replaces an empty directory
    on POSIX). When the body raises, the staging directory, and any parent directory created
    for it, is removed and ``out`` is left as it was. When ``out`` cannot be replaced (it
    was filled meanwhile), the complete staging directory is kept and the error names it.
    """
    target = out.resolve()  # a symlink to an empty directory: replace the directory
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    try:
        with claim(target, "out", beside=True):
            # Staging directories of earlier runs on this out that were killed (the claim
            # says none is running): what a failed run removes itself.
            for stale in target.parent.glob(f"{glob.escape(target.name)}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            # Made with mkdir rather than tempfile.mkdtemp, so it gets the usual permissions
            # (mkdtemp's are owner-only) and the saved model is as readable as any other.
            staging = target.with_name(f"{target.name}.tmp-{secrets.token_hex(8)}")
            staging.mkdir()
            try:
                yield staging
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            try:
                if target.is_dir():
                    shutil.copymode(target, staging)  # an empty out made by the user keeps its mode
                os.replace(staging, target)
            except OSError as err:
                kind = FileExistsError if os.path.lexists(target) else OSError
                raise kind(
                    f"out={str(out)!r} could not be replaced by the trained model ({err}): "
                    f"expected a new or empty directory; the trained model is kept in "
                    f"{str(staging)!r}"
                ) from err
    except BaseException:
        for parent in created:  # deepest first
            try:
                parent.rmdir()
            except OSError:
                break
        raise


def _split(pairs: list[PreferencePair], heldout: float) -> tuple[list[int], list[int]]:
    """Training and held-out indices: the pairs with the smallest content hashes are held out."""
    n_held = round(heldout * len(pairs))
    if heldout > 0:
        n_held = max(n_held, 1)
    if len(pairs) - n_held < 1:
        raise ValueError(
            f"pairs has {len(pairs)} pair(s) and heldout={heldout} holds out {n_held}: expected "
            "at least one pair left to train on"
        )
    keys = [hashlib.sha256(json.dumps(asdict(p)).encode()).hexdigest() for p in pairs]
    ranked = sorted(range(len(pairs)), key=lambda i: (keys[i], i))
    return sorted(ranked[n_held:]), sorted(ranked[:n_held])


def _fingerprint(pairs: list[PreferencePair]) -> str:
    """A hash of the pairs, so ``training.json`` tells which data a model was trained on."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps(asdict(pair)).encode() + b"\n")
    return digest.hexdigest()


def _load_backbone(backbone: str | os.PathLike | None) -> tuple[Any, torch.nn.Module, str]:
    """Tokenizer (with a pad token) and a one-output sequence-classification model.

    A sequence-classification backbone with more than one output is refused: loading it with
    ``num_labels=1`` would fail on the head's shape, or, with ``ignore_mismatched_sizes``,
    silently throw its trained head away.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from textgym.lm import _model_source

    source = _model_source(backbone, "backbone")
    expected = (
        "expected a causal LM or a sequence-classification model with one output "
        "(num_labels=1), saved with save_pretrained (safetensors) or a Hub name"
    )
    rehead = (
        "to train from its trunk with a new head, re-save it with its tokenizer after "
        "AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, "
        "ignore_mismatched_sizes=True)"
    )
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
            config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"backbone={source!r}: could not load a tokenizer and a model config ({err}); "
            f"{expected}"
        ) from err
    classifiers = [
        name
        for name in getattr(config, "architectures", None) or []
        if name.endswith("ForSequenceClassification")
    ]
    if classifiers and config.num_labels != 1:
        raise ValueError(
            f"backbone={source!r} is a {classifiers[0]} with {config.num_labels} outputs: "
            f"{expected}; {rehead}"
        )
    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=1, use_safetensors=True, trust_remote_code=False
            )
    except (OSError, ValueError, RuntimeError) as err:
        # RuntimeError: a head of another shape in a checkpoint whose config does not say so.
        raise ValueError(
            f"backbone={source!r}: could not load a one-output sequence-classification model "
            f"({err}); {expected} (for a classifier with more outputs, {rehead})"
        ) from err
    ensure_pad_token(tokenizer, f"backbone={source!r}")
    # Sequence-classification heads pool the last token that is not padding.
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model, source


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars or load report: the new head's "missing weights" are expected here."""
    from transformers.utils import logging as hf_logging

    from textgym.lm import quiet_loading

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with quiet_loading():
            yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _pair_rewards(
    model: torch.nn.Module, tokenizer: Any, pairs: Sequence[PreferencePair]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the chosen and of the rejected texts, ``(B,)`` each, in one forward pass."""
    prompts = [p.prompt for p in pairs] * 2
    texts = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    batch = tokenize_for_reward(tokenizer, prompts, texts).to(model.device)
    rewards = model(**batch).logits[:, 0].float()  # (2B,)
    return rewards[: len(pairs)], rewards[len(pairs) :]


def _bt_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen - rejected).mean()


@torch.inference_mode()
def _evaluate(
    model: torch.nn.Module, tokenizer: Any, pairs: Sequence[PreferencePair], batch_size: int
) -> dict[str, Any]:
    """Pairwise accuracy, Bradley-Terry loss and all rewards of ``pairs``, in eval mode."""
    model.eval()
    chosen, rejected = [], []
    for first in range(0, len(pairs), batch_size):
        c, r = _pair_rewards(model, tokenizer, pairs[first : first + batch_size])
        chosen.append(c)
        rejected.append(r)
    c, r = torch.cat(chosen), torch.cat(rejected)
    return {
        "accuracy": round(float((c > r).float().mean()), 4),
        "loss": round(float(_bt_loss(c, r)), 4),
        "rewards": torch.cat([c, r]).cpu().numpy(),
    }
