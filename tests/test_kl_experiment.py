"""The KL experiment (`textgym_agents.training.kl_experiment`, ``textgym kl-experiment``)."""

from __future__ import annotations

import csv
import json

import pytest

from textgym_agents.training.kl_experiment import (
    distinct_n,
    measure,
    parse_setting,
    run_kl_experiment,
)

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]
PNG = b"\x89PNG\r\n\x1a\n"


def test_settings_parse_to_env_arguments():
    assert parse_setting("0") == {"kl_coef": 0.0}
    assert parse_setting("0.05") == {"kl_coef": 0.05}
    assert parse_setting("target=4") == {"kl_target": 4.0}
    assert parse_setting("target=4,horizon=200") == {"kl_target": 4.0, "kl_horizon": 200}
    bad_settings = ("-1", "target=0", "beta=3", "strong", "target=", "0.1,horizon=5")
    for bad in (*bad_settings, "target=4,horizon=0", "target=4,horizon=2.5", "target=4,x=1"):
        with pytest.raises(ValueError, match="KL setting"):
            parse_setting(bad)


def test_distinct_n_counts_unique_word_ngrams():
    assert distinct_n(["good good good"], 1) == pytest.approx(1 / 3)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["one"], 2) == 0.0


def test_reference_measures_kl_zero_and_gold_is_vader(tiny_gpt2, tiny_reward_model):
    env_kwargs = {
        "model": str(tiny_gpt2),
        "prompts": PROMPTS,
        "max_new_tokens": 4,
        "reward_model": str(tiny_reward_model),
        "normalize_reward": True,
    }
    result = measure(None, env_kwargs, episodes=24, seed=1, samples=2)
    assert result["kl"] == pytest.approx(0.0, abs=1e-5)
    assert result["perplexity"] > 1.0 and 0 < result["distinct_1"] <= 1
    assert len(result["samples"]) == 2
    # The proxy is the normalised learned RM; gold is VADER's compound, which lies in [-1, 1].
    assert -1.0 <= result["gold"] <= 1.0


def test_experiment_writes_runs_points_table_and_plot_and_reuses_them(
    tiny_gpt2, tiny_reward_model, tmp_path, monkeypatch
):
    kwargs = {
        "settings": ["0", "target=2"],
        "seeds": [0],
        "steps": 64,
        "out": tmp_path,
        "episodes": 8,
        "checkpoints": 2,
        "env_kwargs": {"model": str(tiny_gpt2), "prompts": PROMPTS, "max_new_tokens": 4},
        "progress": False,
        "n_envs": 4,
        "episodes_per_update": 8,
    }
    table = run_kl_experiment(tiny_reward_model, **kwargs)
    assert table == (tmp_path / "kl_experiment.md").read_text()
    assert "| reference | 1 |" in table and "| kl 0 | 1 |" in table and "| kl target=2 |" in table
    assert (tmp_path / "kl_experiment.png").read_bytes()[:8] == PNG
    run = tmp_path / "kl_0" / "seed_0"
    config = json.loads((run / "config.json").read_text())
    assert config["env_kwargs"]["kl_coef"] == 0.0 and config["env_kwargs"]["normalize_reward"]
    adaptive = json.loads((tmp_path / "kl_target2" / "seed_0" / "config.json").read_text())
    assert adaptive["env_kwargs"]["kl_target"] == 2.0
    with open(tmp_path / "points.csv") as f:
        points = list(csv.DictReader(f))
    # Per run: the reference (step 0) and the two checkpoints.
    assert [(p["setting"], int(p["step"])) for p in points] == [
        ("0", 0),
        ("0", 32),
        ("0", 64),
        ("target=2", 0),
        ("target=2", 32),
        ("target=2", 64),
    ]
    # The reference is exactly itself; 32 steps of training move the policy measurably away
    # (a few 1e-4 to 1e-3 nats per sequence, depending on the sampled episodes).
    assert abs(float(points[0]["kl"])) < 1e-5 and abs(float(points[1]["kl"])) > 1e-4

    model = (run / "model.zip").read_bytes()
    (run / "model.zip").unlink()  # a second call reuses the measured runs: nothing retrains
    assert run_kl_experiment(tiny_reward_model, **kwargs) == table
    # ... but not runs measured under other arguments than asked: they would mislabel the table.
    with pytest.raises(ValueError, match="kl_0/seed_0 was made with other steps"):
        run_kl_experiment(tiny_reward_model, **{**kwargs, "steps": 128})
    with pytest.raises(ValueError, match="measure.json was made with other episodes"):
        run_kl_experiment(tiny_reward_model, **{**kwargs, "episodes": 4})
    with pytest.raises(ValueError, match="reference_seed_0.json was made with other env_kwargs"):
        env_kwargs = {**kwargs["env_kwargs"], "max_new_tokens": 3}
        run_kl_experiment(
            tiny_reward_model, **{**kwargs, "settings": ["1"], "env_kwargs": env_kwargs}
        )
    assert (tmp_path / "kl_experiment.md").read_text() == table

    # Interrupted while measuring: the trained run is measured again, not retrained.
    (run / "measure.json").unlink()
    (run / "model.zip").write_bytes(model)
    retrain = lambda *a, **k: pytest.fail("retrained")  # noqa: E731
    monkeypatch.setattr("textgym_agents.training.kl_experiment.train", retrain)
    assert run_kl_experiment(tiny_reward_model, **kwargs) == table
    # Interrupted while training (after its last checkpoint): resumed, not trained again.
    monkeypatch.undo()
    for name in ("measure.json", "summary.json", "model.zip"):
        (run / name).unlink()
    assert run_kl_experiment(tiny_reward_model, **kwargs) == table
    assert json.loads((run / "summary.json").read_text())["training"]["steps"] == 64


def test_bad_arguments_are_refused_before_any_run(tiny_reward_model, tmp_path):
    with pytest.raises(ValueError, match="KL setting 'strong'"):
        run_kl_experiment(tiny_reward_model, settings=["0", "strong"], out=tmp_path)
    with pytest.raises(ValueError, match="reward_model="):
        run_kl_experiment(tmp_path / "missing", out=tmp_path)
    with pytest.raises(ValueError, match="steps=0"):
        run_kl_experiment(tiny_reward_model, steps=0, out=tmp_path)
    with pytest.raises(ValueError, match="checkpoints=True"):
        run_kl_experiment(tiny_reward_model, checkpoints=True, out=tmp_path)
    with pytest.raises(ValueError, match="settings=\\(\\) is empty"):
        run_kl_experiment(tiny_reward_model, settings=(), out=tmp_path)
    with pytest.raises(ValueError, match="no repeated setting or seed"):
        run_kl_experiment(tiny_reward_model, seeds=[0, 0], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_names_a_bad_setting(tiny_reward_model, tmp_path, cli_error):
    argv = ["kl-experiment", "--reward-model", str(tiny_reward_model), "--out", str(tmp_path)]
    assert "KL setting 'huge'" in cli_error([*argv, "--kl", "0", "huge"])
    assert "--steps 0" in cli_error([*argv, "--steps", "0"])
