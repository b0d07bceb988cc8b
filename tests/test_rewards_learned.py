"""Learned reward models: preference pairs, Bradley-Terry training, the bundled set, train-rm."""

from __future__ import annotations

import json
import random
import warnings

import gymnasium as gym
import numpy as np
import pytest

import textgym  # noqa: F401  (registers the envs)
from textgym.cli import main
from textgym.prompts import load_prompts
from textgym.rewards import (
    HFRewardModel,
    PreferencePair,
    VaderSentiment,
    bundled_preferences_path,
    load_pairs,
    train_reward_model,
)

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


def test_reward_centring_pulls_an_offset_mean_reward_to_zero(tiny_gpt2, tmp_path):
    """Bradley-Terry sees only reward differences, so a backbone whose rewards start at +1
    keeps that offset; the centring penalty pulls the mean to 0 and keeps the accuracy."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_gpt2, num_labels=1)
    model.config.pad_token_id = tokenizer.eos_token_id
    with torch.no_grad():  # every final hidden state gets a constant part the head reads as +1
        model.transformer.ln_f.bias.fill_(1.0)
        model.score.weight.add_(1.0 / model.config.n_embd)
    model.save_pretrained(tmp_path / "offset")
    tokenizer.save_pretrained(tmp_path / "offset")
    pairs = learnable_pairs()
    assert HFRewardModel(tmp_path / "offset").score(
        [p.prompt for p in pairs], [p.chosen for p in pairs]
    ).mean() == pytest.approx(1.0, abs=0.1)

    runs = {
        coef: train_reward_model(
            pairs, tmp_path / f"rm{coef}", backbone=tmp_path / "offset", center_coef=coef, **FAST
        )
        for coef in (0.0, 0.1)
    }
    assert runs[0.0]["reward_mean"] > 0.7
    assert abs(runs[0.1]["reward_mean"]) < 0.3 * runs[0.0]["reward_mean"]
    assert runs[0.1]["heldout_accuracy"] >= 0.9 and runs[0.1]["reward_std"] > 0.5


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heldout": 1.0}, "heldout=1.0"),
        ({"epochs": 0}, "epochs=0"),
        ({"learning_rate": -1.0}, "learning_rate=-1.0"),
        ({"center_coef": float("nan")}, "center_coef=nan"),
    ],
)
def test_bad_training_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_reward_model(learnable_pairs(8), tmp_path / "rm", progress=False, **kwargs)


def test_pairs_must_be_preference_pairs(tmp_path):
    with pytest.raises(TypeError, match=r"pairs\[0\].*expected a PreferencePair"):
        train_reward_model([("p", "c", "r")], tmp_path / "rm", progress=False)


# ---------------------------------------------------------------- command line
def test_train_rm_command_trains_saves_and_prints_heldout_accuracy(tiny_gpt2, tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [vars(p) for p in learnable_pairs(24)])
    out = tmp_path / "rm"
    argv = ["train-rm", "--pairs", pairs, "--out", str(out), "--backbone", str(tiny_gpt2)]
    main([*argv, "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--no-progress"])
    printed = capsys.readouterr().out
    assert "held-out" in printed and str(out) in printed
    summary = json.loads((out / "training.json").read_text())
    assert summary["args"]["learning_rate"] == 1e-3 and summary["pairs"]["heldout"] == 2
    with pytest.raises(SystemExit, match="train-rm: out=.*not an empty directory"):
        main(argv)


def test_train_rm_command_names_a_malformed_pairs_file(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "c"}])
    with pytest.raises(SystemExit, match="pairs.jsonl' line 1 has no 'rejected' key"):
        main(["train-rm", "--pairs", pairs, "--out", str(tmp_path / "rm")])


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
