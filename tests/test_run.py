"""Training runs (`textgym_agents.training.train`, `compare`); ``textgym train/eval/compare``."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import stable_baselines3
import torch
import transformers
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from textgym_agents.cli import main
from textgym_agents.training.compare import THRESHOLDS, compare
from textgym_agents.training.curves import steps_to_threshold
from textgym_agents.training.evaluation import evaluate_run
from textgym_agents.training.logs import WINDOW, read_episodes
from textgym_agents.training.rundir import load_agent, run_versions
from textgym_agents.training.train import train

PROMPTS = ["the movie was", "a quiet drama about a family", "i watched this film"]
PNG = b"\x89PNG\r\n\x1a\n"


def text_kwargs(path) -> dict:
    return {"model": str(path), "prompts": PROMPTS, "max_new_tokens": 4}


def tensorboard_tags(run_dir) -> set[str]:
    (events,) = (run_dir / "logs").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def test_train_writes_a_complete_gridworld_run(tmp_path):
    out = tmp_path / "run"
    summary = train(
        "GridWorld-v1",
        "ppo",
        steps=512,
        out=out,
        progress=False,
        eval_episodes=5,
        n_steps=256,  # one env: rollouts of 256 steps, checkpoints between them
        checkpoint_every=256,
    )
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["env_id"] == "GridWorld-v1" and summary["agent"] == "ppo"
    assert summary["training"]["steps"] >= 512
    assert {"mean_return", "success_rate", "before", "after"} <= set(summary)
    assert summary["after"]["episodes"] == 5
    episodes = read_episodes(out / "episodes.csv")
    assert len(episodes["return"]) == summary["training"]["episodes"] > 0
    assert np.all(np.diff(episodes["step"]) >= 0)
    # v1's returns are the game's (+1, -1 or 0) plus the shaping terms; the potential lies in
    # [0, 0.5), and fire pays -1 less the potential it leaves.
    assert (episodes["return"] >= -1.5).all() and (episodes["return"] <= 1.0).all()
    assert {"charts/episodic_return", "charts/episode_length"} <= tensorboard_tags(out)
    assert (out / "curve.png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_256.json",
        "step_256.zip",
        "step_512.json",
        "step_512.zip",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["env_kwargs"] == {} and config["steps"] == 512
    # The summary says what ran: the steps trained (PPO finishes its last rollout), the budget.
    assert summary["budget"] == 512 and summary["steps"] == summary["training"]["steps"]
    assert config["versions"] == run_versions()


def test_a_run_records_the_versions_that_decide_its_numbers():
    versions = run_versions()
    assert versions["python"] == platform.python_version()
    assert versions["torch"] == torch.__version__  # the build too: 2.13.0+cpu
    assert versions["torch_cuda"] == torch.version.cuda
    assert versions["transformers"] == transformers.__version__
    assert versions["gymnasium"] == gymnasium.__version__
    assert versions["numpy"] == np.__version__
    assert versions["stable-baselines3"] == stable_baselines3.__version__
    assert {"tokenizers", "sb3-contrib", "textgym", "textgym_commit"} <= set(versions)
    assert "ray" not in versions and "ray" in run_versions("rllib")


def test_eval_says_in_one_line_when_the_installed_versions_differ(tmp_path, capsys):
    out = tmp_path / "run"
    train_args = ["--agent", "dqn", "--steps", "300", "--eval-episodes", "2", "--no-progress"]
    main(["train", "GridWorld-v1", *train_args, "--out", str(out)])
    main(["eval", str(out), "--episodes", "2"])
    assert "note:" not in capsys.readouterr().out  # made with what is installed
    config = json.loads((out / "config.json").read_text())
    config["versions"].update(torch="2.0.0+cu118", numpy="1.24.0")
    (out / "config.json").write_text(json.dumps(config))
    main(["eval", str(out), "--episodes", "2"])
    notes = [line for line in capsys.readouterr().out.splitlines() if "note:" in line]
    assert len(notes) == 1
    assert "torch 2.0.0+cu118 (installed: " + torch.__version__ + ")" in notes[0]
    assert "numpy 1.24.0 (installed: " in notes[0] and "transformers" not in notes[0]


def test_gpt_run_on_textgen_reports_rm_score_kl_and_samples(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    summary = train(
        "TextGen-v0",
        "gpt",
        steps=64,
        out=out,
        progress=False,
        eval_episodes=4,
        env_kwargs=text_kwargs(tiny_gpt2),
        n_envs=4,
        episodes_per_update=8,
    )
    assert {"mean_rm_score", "positive_share", "mean_kl_per_sequence"} <= set(summary)
    # Before training the policy is the reference: KL 0.
    assert summary["before"]["mean_kl_per_sequence"] == pytest.approx(0.0, abs=1e-3)
    for stage in ("before", "after"):
        samples = summary[stage]["samples"]
        assert len(samples) == 4 and all(s["prompt"] in PROMPTS for s in samples)
    # The same evaluation prompts before and after training.
    prompts = [[s["prompt"] for s in summary[stage]["samples"]] for stage in ("before", "after")]
    assert prompts[0] == prompts[1]
    tags = tensorboard_tags(out)
    assert {
        "charts/episodic_return",
        "text/rm_score",
        "text/kl_per_sequence",
        "text/kl_coef",
        "train/approx_kl",
    } <= tags
    episodes = read_episodes(out / "episodes.csv")
    assert (
        np.isfinite(episodes["rm_score"]).all() and np.isfinite(episodes["kl_per_sequence"]).all()
    )

    policy, config = load_agent(out)
    assert config["agent"] == "gpt" and type(policy).__name__ == "GPTActorCriticPolicy"
    assert config["threads"] >= 1 and config["eval_episodes"] == 4
    # Evaluating the saved run afresh repeats the evaluation after training exactly.
    again = evaluate_run(out)
    assert again["after"] == summary["after"] and "before" not in again
    # The reference policy on the same seed, the baseline the curve draws.
    assert summary["reference"]["mean_kl_per_sequence"] == pytest.approx(0.0, abs=1e-6)
    # progress.csv can be plotted against the step, like SB3's.
    header = (out / "logs" / "progress.csv").read_text().splitlines()[0].split(",")
    assert "time/total_timesteps" in header


@pytest.mark.parametrize("agent", ["maskable_ppo", "gpt-sb3"])
def test_sb3_runs_on_textgen_log_the_text_metrics(tiny_gpt2, tmp_path, agent):
    out = tmp_path / agent
    summary = train(
        "TextGen-v0",
        agent,
        steps=32,
        out=out,
        progress=False,
        eval_episodes=2,
        env_kwargs=text_kwargs(tiny_gpt2),
        n_envs=2,
        n_steps=16,
        batch_size=16,
    )
    assert "mean_kl_per_sequence" in summary
    assert {"text/rm_score", "text/kl_per_sequence", "text/kl_coef"} <= tensorboard_tags(out)
    model, _ = load_agent(out)
    assert type(model).__name__ == {"maskable_ppo": "MaskablePPO", "gpt-sb3": "PPO"}[agent]
    assert evaluate_run(out)["after"] == summary["after"]


def test_train_refuses_to_overwrite_a_run(tmp_path):
    out = tmp_path / "run"
    train("GridWorld-v1", "a2c", steps=64, out=out, progress=False, eval_episodes=2)
    before = (out / "summary.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run"):
        train("GridWorld-v1", "a2c", steps=64, out=out, progress=False, eval_episodes=2)
    assert (out / "summary.json").read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agent": "sac"}, "agent='sac'"),
        ({"steps": 0}, "steps=0"),
        ({"steps": True}, "steps=True: expected an integer >= 1"),  # a bool is not a count
        ({"env_kwargs": {"slip": 2.0}}, "slip"),
    ],
)
def test_train_names_bad_arguments(tmp_path, kwargs, match):
    arguments = {"env_id": "GridWorld-v1", "agent": "ppo", "out": tmp_path / "r", **kwargs}
    with pytest.raises(ValueError, match=match):
        train(**arguments, progress=False)
    assert not (tmp_path / "r").exists()


def test_evaluating_a_directory_without_a_run_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate_run(tmp_path)


def test_steps_to_threshold_uses_the_rolling_mean():
    returns = np.r_[np.zeros(WINDOW), np.ones(WINDOW)]
    episodes = {"step": np.arange(1, 2 * WINDOW + 1) * 10.0, "return": returns}
    # The mean of the last 100 episodes reaches 0.9 at the 90th rewarded episode.
    assert steps_to_threshold(episodes, 0.9) == (WINDOW + 90) * 10
    assert steps_to_threshold(episodes, 1.1) is None
    assert steps_to_threshold({"step": np.ones(5), "return": np.ones(5)}, 0.5) is None
    assert set(THRESHOLDS) == {"GridWorld-v1", "GridWorld-v0", "TextGen-v0"}


# --- the command line -------------------------------------------------------------------------


def test_cli_train_eval_and_compare(tmp_path, capsys):
    run = tmp_path / "run"
    main(
        [
            "train",
            "GridWorld-v1",
            "--agent",
            "dqn",
            "--steps",
            "300",
            "--out",
            str(run),
            "--eval-episodes",
            "3",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "dqn on GridWorld-v1 (seed 0)" in printed and "success" in printed
    main(["eval", str(run), "--episodes", "2"])
    assert "eval (2 episodes, greedy)" in capsys.readouterr().out
    main(["eval", str(run), "--episodes", "2", "--sample"])
    assert "eval (2 episodes, sampled)" in capsys.readouterr().out

    out = tmp_path / "cmp"
    main(
        [
            "compare",
            "--envs",
            "GridWorld-v1",
            "--agents",
            "ppo",
            "a2c",
            "--seeds",
            "0",
            "1",
            "--steps",
            "128",
            "--eval-episodes",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    table = capsys.readouterr().out
    assert table == (out / "compare.md").read_text() + "\n"
    lines = table.strip().splitlines()
    assert lines[0].startswith("| env | agent | seeds | final return | steps to threshold")
    assert [line.split("|")[2].strip() for line in lines[2:]] == ["ppo", "a2c"]
    assert all("| 2 |" in line for line in lines[2:])
    rows = (out / "compare.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("env_id,agent,seed")
    assert (out / "curves_GridWorld-v1.png").read_bytes()[:8] == PNG
    assert (out / "GridWorld-v1" / "a2c" / "seed_1" / "summary.json").exists()


def test_compare_on_textgen_adds_the_reference_policy_per_action_mode(tiny_gpt2, tmp_path):
    table = compare(
        ["TextGen-v0"],
        ["ppo", "maskable_ppo"],
        [0],
        out=tmp_path,
        steps=16,
        env_kwargs=text_kwargs(tiny_gpt2),
        eval_episodes=2,
        progress=False,
    )
    agents = [line.split("|")[2].strip() for line in table.strip().splitlines()[2:]]
    assert agents == ["ppo", "maskable_ppo", "reference (topk)", "reference (vocab)"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "GridWorld-v1", "--agent", "ppo", "--steps", "0"], "--steps 0"),
        (["train", "GridWorld-v1", "--agent", "ppo", "--imitate", "-1"], "--imitate -1"),
        (["eval", "x", "--episodes", "0"], "--episodes 0"),
        (["compare", "--envs", "GridWorld-v1", "--agents", "sac"], "'sac'"),
    ],
)
def test_cli_refuses_bad_arguments(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--out", str(tmp_path / "o")] if argv[0] != "eval" else argv)
    assert exit.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"textgym {argv[0]}: ") and message in line


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ("rllib:a2c", r"agents: 'rllib:a2c' is unknown: expected names from .* rllib:NAME"),
        ("tianshou:ppo", r"agents: 'tianshou:ppo' names backend 'tianshou': expected rllib:NAME"),
        ("rllib:", r"agents: 'rllib:' is unknown"),
    ],
)
def test_compare_refuses_unknown_backends_and_agents_before_training(tmp_path, agent, message):
    with pytest.raises(ValueError, match=message):
        compare(["GridWorld-v1"], ["ppo", agent], [0], out=tmp_path / "cmp", progress=False)
    assert not (tmp_path / "cmp").exists()


def test_rllib_arguments_are_refused_by_the_sb3_backend(tmp_path):
    for kwargs in ({"address": "auto"}, {"num_gpus_per_env_runner": 1}, {"backend": "ray"}):
        with pytest.raises(ValueError, match=r"expected backend='rllib'|expected 'sb3' or 'rllib'"):
            train("GridWorld-v1", "ppo", out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def checkpoint_names(steps: list[int]) -> list[str]:
    return sorted(f"step_{step}.{suffix}" for step in steps for suffix in ("json", "zip"))


@pytest.mark.parametrize(
    ("keep", "kept"),
    [
        ({}, [384, 512]),
        ({"keep_checkpoints": 1}, [512]),
        ({"keep_checkpoints": None}, [128, 256, 384, 512]),
    ],
)
def test_train_keeps_the_newest_checkpoints_and_the_model(tmp_path, keep, kept):
    out = tmp_path / "run"
    # 8 envs: rollouts of 128 steps, a checkpoint between each two.
    train(
        "GridWorld-v1",
        "ppo",
        steps=512,
        out=out,
        progress=False,
        eval_episodes=2,
        n_steps=16,
        batch_size=64,
        checkpoint_every=128,
        **keep,
    )
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoint_names(kept)
    assert (out / "model.zip").exists() and (out / "summary.json").exists()


@pytest.mark.parametrize("keep", [0, -1, True, 1.5, "2"])
def test_train_refuses_a_bad_checkpoint_count_before_writing(tmp_path, keep):
    with pytest.raises(ValueError, match=f"keep_checkpoints={keep!r}: expected an integer >= 1"):
        train("GridWorld-v1", "ppo", out=tmp_path / "run", progress=False, keep_checkpoints=keep)
    assert not (tmp_path / "run").exists()


def test_cli_keep_checkpoints_refuses_zero_and_keeps_the_newest(tmp_path, cli_error):
    command = [sys.executable, "-m", "textgym_agents.cli", "train", "GridWorld-v1"]
    command += ["--agent", "a2c"]  # rollouts of 5 steps: SB3's A2C at its defaults
    refusal = (
        "argument --keep-checkpoints: '{}': expected an integer >= 1 (the newest checkpoint is "
        "what --resume reads) or 'all' (see textgym train --help)"
    )
    done = subprocess.run(
        [*command, "--keep-checkpoints", "0", "--out", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"textgym train: {refusal.format('0')}"]
    line = cli_error([*command[3:], "--keep-checkpoints", "-3", "--out", str(tmp_path / "bad")])
    assert line == f"textgym train: {refusal.format('-3')}"
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "run"
    options = ["--steps", "3000", "--checkpoint-every", "1000", "--eval-episodes", "1"]
    main([*command[3:], *options, "--no-progress", "--keep-checkpoints", "1", "--out", str(out)])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoint_names([3000])
