"""Learned reward models: preference pairs, Bradley-Terry training, the bundled set, train-rm."""

from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import textgym  # noqa: F401  (registers the envs)
from textgym.prompts import load_prompts
from textgym.rewards import (
    HFRewardModel,
    PreferencePair,
    VaderSentiment,
    bundled_preferences_path,
    load_pairs,
    train_reward_model,
)
from textgym.versions import installed_versions
from textgym_agents.cli import main

PROMPTS = ["the movie was", "i watched this film", "a quiet drama about", "the plot was"]
FILLER = ["the", "story", "was", "and", "a", "family", "in", "town", "soundtrack", "film"]
GOOD, BAD = ["great", "wonderful"], ["boring", "terrible"]
# Small enough to train in a second on the tiny test model, large enough to learn.
FAST = {"epochs": 4, "batch_size": 16, "learning_rate": 3e-3, "heldout": 0.25, "progress": False}


def learnable_pairs(n: int = 160, seed: int = 0) -> list[PreferencePair]:
    """Chosen texts hold a positive word where rejected ones hold a negative one."""
    rng = random.Random(seed)

    def text(words: list[str]) -> str:
        parts = rng.choices(FILLER, k=rng.randint(1, 4)) + [rng.choice(words)]
        parts += rng.choices(FILLER, k=rng.randint(0, 3))
        return " " + " ".join(parts)

    return [PreferencePair(rng.choice(PROMPTS), text(GOOD), text(BAD)) for _ in range(n)]


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def trained_rm(tiny_gpt2, tmp_path_factory):
    """A reward model trained on the learnable pairs, and its training summary."""
    out = tmp_path_factory.mktemp("rm") / "model"
    summary = train_reward_model(learnable_pairs(), out, backbone=tiny_gpt2, **FAST)
    return out, summary


@pytest.fixture(scope="module")
def offset_backbone(tiny_gpt2, tmp_path_factory):
    """A one-output classifier on tiny_gpt2 whose rewards all start near +1."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("offset")
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_gpt2, num_labels=1)
    model.config.pad_token_id = tokenizer.eos_token_id
    with torch.no_grad():  # every final hidden state gets a constant part the head reads as +1
        model.transformer.ln_f.bias.fill_(1.0)
        model.score.weight.add_(1.0 / model.config.n_embd)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def leftovers(parent: Path) -> list[str]:
    """Staging directories train_reward_model left in ``parent``."""
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- loading pairs
def test_load_pairs_reads_jsonl_and_skips_blank_lines(tmp_path):
    records = [{"prompt": "p", "chosen": " good", "rejected": " bad", "extra": 1}] * 2
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n")
    assert load_pairs(path) == [PreferencePair("p", " good", " bad")] * 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "p", "chosen": "c"}', "line 2 has no 'rejected' key"),
        ('{"prompt": "p", "chosen": "c", "rejected": 3}', "line 2: rejected=3 has type int"),
        ("not json", "line 2 is not valid JSON"),
        ('["p", "c", "r"]', "line 2 holds a list"),
    ],
)
def test_malformed_pair_error_names_file_line_and_problem(tmp_path, line, message):
    good = json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as err:
        load_pairs(path)
    assert "bad.jsonl" in str(err.value)


def test_empty_or_missing_pairs_file_is_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    with pytest.raises(ValueError, match="empty.jsonl.*holds no pairs"):
        load_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="nope.jsonl.*is not a file"):
        load_pairs(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- training
def test_training_lifts_heldout_accuracy_far_above_chance(trained_rm):
    _, summary = trained_rm
    assert summary["pairs"] == {
        "total": 160,
        "train": 120,
        "heldout": 40,
        "sha256": summary["pairs"]["sha256"],
    }
    assert summary["heldout_accuracy"] >= 0.9 and summary["train_accuracy"] >= 0.9
    losses = [point["train_loss"] for point in summary["curve"]]
    assert len(losses) == FAST["epochs"] and losses[-1] < losses[0] < 0.8


def test_reward_centring_pulls_an_offset_mean_reward_to_zero(offset_backbone, tmp_path):
    """Bradley-Terry sees only reward differences, so a backbone whose rewards start at +1
    keeps that offset; the centring penalty pulls the mean to 0 and keeps the accuracy."""
    pairs = learnable_pairs()
    assert HFRewardModel(offset_backbone).score(
        [p.prompt for p in pairs], [p.chosen for p in pairs]
    ).mean() == pytest.approx(1.0, abs=0.1)

    runs = {
        coef: train_reward_model(
            pairs, tmp_path / f"rm{coef}", backbone=offset_backbone, center_coef=coef, **FAST
        )
        for coef in (0.0, 0.1)
    }
    assert runs[0.0]["reward_mean"] > 0.7
    assert abs(runs[0.1]["reward_mean"]) < 0.3 * runs[0.0]["reward_mean"]
    assert runs[0.1]["heldout_accuracy"] >= 0.9 and runs[0.1]["reward_std"] > 0.5


def test_every_loss_is_bradley_terry_and_the_centring_penalty_is_apart(
    offset_backbone, trained_rm, tmp_path
):
    """With a learning rate too small to move the model, the epoch's running train loss is the
    final train loss (up to dropout), even where the centring penalty of rewards near +1 each,
    (1 + 1) ** 2 = 4, is far larger than the Bradley-Terry loss; the penalty is recorded apart."""
    summary = train_reward_model(
        learnable_pairs(32),
        tmp_path / "rm",
        backbone=offset_backbone,
        epochs=1,
        batch_size=16,
        learning_rate=1e-12,
        center_coef=1.0,
        heldout=0.25,
        progress=False,
    )
    (point,) = summary["curve"]
    assert point["train_center_penalty"] == pytest.approx(4.0, rel=0.25)
    assert point["train_loss"] == pytest.approx(summary["train_loss"], abs=0.1)
    assert summary["train_loss"] == pytest.approx(np.log(2), abs=0.1)  # rewards barely differ
    assert point["heldout_loss"] == summary["heldout_loss"]
    # Without centring the penalty is recorded as 0.
    assert all(point["train_center_penalty"] == 0 for point in trained_rm[1]["curve"])


def test_saved_model_scores_in_textgen_as_in_hf_reward_model(tiny_gpt2, trained_rm):
    out, _ = trained_rm
    assert {"model.safetensors", "tokenizer.json", "training.json"} <= {
        p.name for p in out.iterdir()
    }
    rm = HFRewardModel(out)
    assert rm.model.config.num_labels == 1 and rm.model.config.pad_token_id is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no policy scorer attached
        env = gym.make(
            "TextGen-v0", model=tiny_gpt2, reward_model=str(out), prompts=PROMPTS, max_new_tokens=3
        )
        env.reset(seed=0)
        terminated = False
        while not terminated:
            _, _, terminated, _, info = env.step(0)
    expected = rm.score([info["prompt"]], [info["text"]])[0]
    assert info["rm_score"] == pytest.approx(expected, abs=1e-5)


def test_saved_model_reproduces_the_recorded_accuracy(trained_rm):
    """`HFRewardModel` scores the very strings training saw: its accuracy over all pairs is the
    recorded train and held-out accuracies, weighted by their pair counts."""
    out, summary = trained_rm
    pairs = learnable_pairs()
    rm = HFRewardModel(out)
    chosen = rm.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = rm.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    counts = summary["pairs"]
    recorded = (
        counts["train"] * summary["train_accuracy"]
        + counts["heldout"] * summary["heldout_accuracy"]
    ) / counts["total"]
    assert np.mean(chosen > rejected) == pytest.approx(recorded, abs=2e-3)
    assert json.loads((out / "training.json").read_text())["args"]["backbone"] == str(
        summary["args"]["backbone"]
    )


def test_training_refuses_a_non_empty_out_before_training(tiny_gpt2, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="out=.*not an empty directory"):
        train_reward_model(learnable_pairs(8), tmp_path, backbone=tiny_gpt2, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_without_heldout_pairs_every_heldout_figure_is_none(tiny_gpt2, tmp_path):
    out = tmp_path / "rm"
    summary = train_reward_model(
        learnable_pairs(16),
        out,
        backbone=tiny_gpt2,
        epochs=2,
        batch_size=8,
        heldout=0,
        progress=False,
    )
    assert summary["pairs"]["train"] == 16 and summary["pairs"]["heldout"] == 0
    assert summary["heldout_accuracy"] is None and summary["heldout_loss"] is None
    assert 0 <= summary["train_accuracy"] <= 1 and summary["train_loss"] > 0
    assert [sorted(point) for point in summary["curve"]] == [
        ["epoch", "train_center_penalty", "train_loss", "train_running_accuracy"]
    ] * 2
    assert np.isfinite(summary["reward_mean"]) and summary["reward_std"] > 0  # training pairs
    assert json.loads((out / "training.json").read_text()) == summary
    assert summary["versions"] == installed_versions()  # what decides the figures
    assert [p.name for p in tmp_path.iterdir()] == ["rm"]


@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "empty-out"])
@pytest.mark.parametrize("failing", ["model", "training.json"])
def test_a_failed_save_leaves_out_as_it_was_and_can_be_repeated(
    tiny_gpt2, tmp_path, monkeypatch, failing, existing
):
    """A save that fails half-way leaves neither a half-written out nor a staging directory
    (nor the parent directory made for it), so the next attempt is not refused."""
    from transformers import PreTrainedModel

    out = tmp_path / "models" / "rm"
    if existing:
        out.mkdir(parents=True)

    def half_written_model(self, directory, *args, **kwargs):
        (Path(directory) / "model.safetensors").write_bytes(b"half a model")
        raise OSError("No space left on device")

    write_text = Path.write_text

    def failing_summary(self, data, *args, **kwargs):
        if self.name == "training.json":
            write_text(self, data[:100], *args, **kwargs)
            raise OSError("No space left on device")
        return write_text(self, data, *args, **kwargs)

    if failing == "model":
        monkeypatch.setattr(PreTrainedModel, "save_pretrained", half_written_model)
    else:
        monkeypatch.setattr(Path, "write_text", failing_summary)
    train = {"backbone": tiny_gpt2, "epochs": 1, "batch_size": 8, "heldout": 0}
    with pytest.raises(OSError, match="No space left on device"):
        train_reward_model(learnable_pairs(8), out, progress=False, **train)
    if existing:
        assert out.is_dir() and list(out.iterdir()) == []
        assert leftovers(out.parent) == []
    else:
        assert list(tmp_path.iterdir()) == []

    monkeypatch.undo()
    train_reward_model(learnable_pairs(8), out, progress=False, **train)
    assert {"model.safetensors", "training.json"} <= {p.name for p in out.iterdir()}
    assert leftovers(out.parent) == []


def test_a_classifier_backbone_with_more_outputs_is_refused_by_name(tiny_gpt2, tmp_path, cli_error):
    """Its trained head does not fit one output: a clear error (also from train-rm), not a
    size-mismatch RuntimeError, and nothing written."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    backbone = tmp_path / "two-labels"
    config = GPT2Config.from_pretrained(tiny_gpt2, num_labels=2)
    GPT2ForSequenceClassification(config).save_pretrained(backbone)
    AutoTokenizer.from_pretrained(tiny_gpt2).save_pretrained(backbone)
    out = tmp_path / "rm"
    expected = r"backbone=.*GPT2ForSequenceClassification with 2 outputs: expected .*num_labels=1"
    with pytest.raises(ValueError, match=expected):
        train_reward_model(learnable_pairs(8), out, backbone=backbone, progress=False)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [vars(p) for p in learnable_pairs(8)])
    argv = ["train-rm", "--pairs", pairs, "--out", str(out), "--backbone", str(backbone)]
    assert re.search("train-rm: " + expected, cli_error(argv))
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heldout": 1.0}, "heldout=1.0"),
        ({"epochs": 0}, "epochs=0"),
        ({"learning_rate": -1.0}, "learning_rate=-1.0"),
        ({"center_coef": float("nan")}, "center_coef=nan"),
        # Booleans are ints to Python, but never a meant number.
        ({"learning_rate": True}, "learning_rate=True: expected a finite number > 0"),
        ({"center_coef": True}, "center_coef=True: expected a finite number >= 0"),
        ({"heldout": False}, r"heldout=False: expected a share in \[0, 1\)"),
        ({"epochs": True}, "epochs=True: expected an integer >= 1"),
        ({"batch_size": True}, "batch_size=True: expected an integer >= 1"),
        ({"seed": False}, "seed=False: expected an integer >= 0"),
    ],
)
def test_bad_training_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_reward_model(learnable_pairs(8), tmp_path / "rm", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_pairs_must_be_preference_pairs(tmp_path):
    with pytest.raises(TypeError, match=r"pairs\[0\].*expected a PreferencePair"):
        train_reward_model([("p", "c", "r")], tmp_path / "rm", progress=False)


# ---------------------------------------------------------------- command line
def test_train_rm_command_trains_saves_and_prints_heldout_accuracy(
    tiny_gpt2, tmp_path, capsys, cli_error
):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [vars(p) for p in learnable_pairs(24)])
    out = tmp_path / "rm"
    argv = ["train-rm", "--pairs", pairs, "--out", str(out), "--backbone", str(tiny_gpt2)]
    main([*argv, "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--no-progress"])
    printed = capsys.readouterr().out
    assert "held-out" in printed and str(out) in printed
    summary = json.loads((out / "training.json").read_text())
    assert summary["args"]["learning_rate"] == 1e-3 and summary["pairs"]["heldout"] == 2
    assert re.search("train-rm: out=.*not an empty directory", cli_error(argv))


def test_train_rm_command_names_a_malformed_pairs_file(tmp_path, cli_error):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "c"}])
    line = cli_error(["train-rm", "--pairs", pairs, "--out", str(tmp_path / "rm")])
    assert "pairs.jsonl' line 1 has no 'rejected' key" in line


# ---------------------------------------------------------------- the bundled set
def test_bundled_preferences_are_well_formed_and_match_their_report():
    import hashlib

    path = bundled_preferences_path()
    report = json.loads(path.with_suffix(".json").read_text())
    data = path.read_bytes()
    assert len(data) == report["bytes"] < 1_500_000
    assert hashlib.sha256(data).hexdigest() == report["sha256"]
    pairs = load_pairs()
    assert len(pairs) == report["pairs"] >= 2000
    prompts = set(load_prompts())
    assert {p.prompt for p in pairs} <= prompts
    assert all(p.chosen != p.rejected for p in pairs)


def test_bundled_labels_agree_with_vader_at_the_reported_noisy_rate():
    report = json.loads(bundled_preferences_path().with_suffix(".json").read_text())
    pairs = load_pairs()
    vader = VaderSentiment()
    chosen = vader.score([], [p.chosen for p in pairs])
    rejected = vader.score([], [p.rejected for p in pairs])
    assert np.all(chosen != rejected)  # exact ties were dropped
    agreement = float(np.mean(chosen > rejected))
    assert agreement == pytest.approx(report["label_agreement"], abs=1e-4)
    # Noisy, yet far better than chance, and as noisy as the label model says.
    assert 0.75 < agreement < 0.95
    assert agreement == pytest.approx(report["expected_agreement"], abs=0.03)
