"""Long jobs survive being killed: files written atomically, runs resumed from their newest
checkpoint, and one job per output directory."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from textgym.rewards import load_pairs, train_reward_model
from textgym.runfiles import DirectoryBusyError, atomic_path, claim, write_json
from textgym_agents.backends.sb3.zoo import make_agent
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy
from textgym_agents.saving import load_sb3
from textgym_agents.training.compare import compare
from textgym_agents.training.kl_experiment import run_kl_experiment
from textgym_agents.training.logs import read_episodes
from textgym_agents.training.recorder import TrainingInterrupted
from textgym_agents.training.train import train

# PPO on one env (GridWorld-v1's zoo entry) with rollouts of 256 steps, 4 minibatches each.
GRID = {
    "steps": 2048,
    "n_steps": 256,
    "batch_size": 64,
    "checkpoint_every": 256,
    "eval_episodes": 5,
}


def text_kwargs(model: Path) -> dict:
    return {
        "steps": 96,
        "checkpoint_every": 16,
        "eval_episodes": 4,
        "n_envs": 4,
        "episodes_per_update": 4,
        "env_kwargs": {"model": str(model), "prompts": ["the movie was"], "max_new_tokens": 4},
    }


def start_training(
    env_id: str, agent: str, out: Path, kwargs: dict, patch: str = "", block_at: int | None = None
) -> subprocess.Popen:
    """``train`` in a child process (that ``patch`` may alter first). With ``block_at`` the
    child stops at the first step at or past it, once it logged it, and touches
    ``<out>.blocked``: a known point to kill it at, whatever the machine's speed."""
    if block_at is not None:
        patch += textwrap.dedent(
            f"""
            import pathlib, time
            from textgym_agents.training import recorder as _train
            _advance = _train._Recorder.advance
            def blocking(self, step):
                _advance(self, step)
                if step >= {block_at}:
                    pathlib.Path({str(out) + ".blocked"!r}).touch()
                    time.sleep(3600)
            _train._Recorder.advance = blocking
            """
        )
    script = (
        "import json, sys\n"
        "from textgym_agents.training.train import train\n"
        + patch
        + f"\ntrain({env_id!r}, {agent!r}, out={str(out)!r}, progress=False, "
        "**json.loads(sys.argv[1]))\n"
    )
    return subprocess.Popen([sys.executable, "-c", script, json.dumps(kwargs)])


def kill_when_blocked(out: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """SIGKILL the child of `start_training` once it blocked."""
    deadline = time.monotonic() + timeout
    while not Path(str(out) + ".blocked").exists():
        assert process.poll() is None, f"training ended (rc {process.returncode}) unblocked"
        assert time.monotonic() < deadline, f"not blocked after {timeout} s"
        time.sleep(0.05)
    kill(process)


def newest_checkpoint(out: Path) -> int:
    return max(int(p.stem.removeprefix("step_")) for p in out.glob("checkpoints/*.json"))


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def progress_steps(out: Path) -> list[float]:
    with open(out / "logs" / "progress.csv", newline="") as f:
        return [float(row["time/total_timesteps"]) for row in csv.DictReader(f)]


def tensorboard_steps(out: Path, tag: str) -> list[int]:
    accumulator = EventAccumulator(str(out / "logs"))
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def assert_complete(out: Path, steps: int) -> dict:
    """A finished run with continuous logs and only complete files."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training"]["steps"] >= steps
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not (out / ".textgym.lock").exists()
    episodes = read_episodes(out / "episodes.csv")
    assert len(episodes["step"]) == summary["training"]["episodes"] > 0
    assert np.all(np.diff(episodes["step"]) >= 0)
    logged = progress_steps(out)
    assert np.all(np.diff(logged) > 0) and logged[-1] <= summary["training"]["steps"]
    shown = tensorboard_steps(out, "charts/episodic_return")
    assert shown == sorted(set(shown)) and shown[-1] == logged[-1]
    for state in (out / "checkpoints").glob("step_*.json"):
        assert json.loads(state.read_text())["step"] == int(state.stem.removeprefix("step_"))
        assert state.with_suffix(".zip").exists()
    return summary


def test_a_killed_sb3_run_resumes_from_its_newest_checkpoint(tmp_path):
    out = tmp_path / "run"
    kwargs = {**GRID, "checkpoint_every": 512}  # rollouts of 256 steps: logs between checkpoints
    process = start_training("GridWorld-v1", "ppo", out, kwargs, block_at=1300)
    kill_when_blocked(out, process)
    assert not (out / "summary.json").exists() and newest_checkpoint(out) == 1024
    # The killed run logged past its checkpoint: a resume drops that and plays it again.
    assert read_episodes(out / "episodes.csv")["step"].max() > 1024
    assert max(progress_steps(out)) == 1280 and 1280 in tensorboard_steps(
        out, "charts/episodic_return"
    )
    with pytest.raises(FileExistsError, match="already holds a run"):
        train("GridWorld-v1", "ppo", out=out, progress=False, **kwargs)
    summary = train("GridWorld-v1", "ppo", out=out, progress=False, resume=True, **kwargs)
    assert_complete(out, kwargs["steps"])
    # Every checkpoint, from either session, loads into a fresh agent.
    for checkpoint in sorted((out / "checkpoints").glob("step_*.zip")):
        model = make_agent("ppo", "GridWorld-v1", n_steps=256)
        load_sb3(model, checkpoint)
        assert model.num_timesteps == int(checkpoint.stem.removeprefix("step_"))
    assert summary["training"]["wall_seconds"] > 0


@pytest.mark.heavy
def test_a_run_killed_while_saving_resumes_from_the_checkpoint_before(tmp_path):
    out = tmp_path / "run"
    # Killed while writing the zip of its third checkpoint: half a file under a temporary name.
    patch = textwrap.dedent(
        """
        import os, signal, zipfile
        write = zipfile.ZipFile.writestr
        def dying_write(self, name, *args, **kwargs):
            if "step_768" in str(self.filename):
                os.kill(os.getpid(), signal.SIGKILL)
            return write(self, name, *args, **kwargs)
        zipfile.ZipFile.writestr = dying_write
        """
    )
    process = start_training("GridWorld-v1", "ppo", out, GRID, patch)
    assert process.wait(timeout=120) == -signal.SIGKILL
    assert [p.name for p in (out / "checkpoints").glob("*.tmp-*")]  # the half-written zip
    assert not (out / "checkpoints" / "step_768.zip").exists()
    train("GridWorld-v1", "ppo", out=out, progress=False, resume=True, **GRID)
    assert_complete(out, GRID["steps"])


@pytest.mark.heavy
def test_dqn_resumes_with_its_replay_buffer(tmp_path):
    kwargs = {**GRID, "steps": 1500, "checkpoint_every": 500, "learning_starts": 100}
    out = tmp_path / "run"
    kwargs.pop("n_steps")
    process = start_training("GridWorld-v1", "dqn", out, kwargs, block_at=700)
    kill_when_blocked(out, process)
    buffer = np.load(out / "checkpoints" / "step_500.buffer.npz")
    assert int(buffer["pos"]) == 500
    train("GridWorld-v1", "dqn", out=out, progress=False, resume=True, **kwargs)
    assert_complete(out, kwargs["steps"])
    # One replay buffer is kept: the newest checkpoint's, what a resume reads.
    assert [p.name for p in out.glob("checkpoints/*.npz")] == ["step_1500.buffer.npz"]


@pytest.mark.heavy
def test_a_killed_sequence_ppo_run_resumes(tiny_gpt2, tmp_path):
    kwargs = text_kwargs(tiny_gpt2)
    out = tmp_path / "run"
    process = start_training("TextGen-v0", "gpt", out, kwargs, block_at=40)
    kill_when_blocked(out, process)
    assert newest_checkpoint(out) < read_episodes(out / "episodes.csv")["step"].max()
    summary = train("TextGen-v0", "gpt", out=out, progress=False, resume=True, **kwargs)
    assert_complete(out, kwargs["steps"])
    assert summary["reference"]["episodes"] == 4
    for checkpoint in (out / "checkpoints").glob("step_*.zip"):
        GPTActorCriticPolicy.load(checkpoint)


def test_resume_restores_the_trainer_state_exactly(tiny_gpt2, tmp_path):
    """A run resumed from its checkpoint at step N continues with the same weights, optimizer
    moments, step counter, sampling RNG and adaptive KL coefficient as the run that wrote it."""
    import torch

    from textgym.envs.textgen_core import core_of
    from textgym_agents.training.checkpoints import restore as _restore

    kwargs = text_kwargs(tiny_gpt2)
    kwargs["env_kwargs"] = {**kwargs["env_kwargs"], "kl_target": 0.01, "kl_horizon": 4}
    full = tmp_path / "full"
    train("TextGen-v0", "gpt", out=full, progress=False, **kwargs)
    first = sorted((full / "checkpoints").glob("step_*.json"), key=lambda p: int(p.stem[5:]))[0]
    state = json.loads(first.read_text())
    assert state["kl_coef"] != 0.05  # the controller moved from its start

    trainer = make_agent(
        "gpt", "TextGen-v0", n_envs=4, env_kwargs=kwargs["env_kwargs"], episodes_per_update=4
    )
    _restore(trainer, first.with_suffix(".zip"), state)
    assert torch.get_rng_state().tolist() == state["rng"]["torch"]
    saved = GPTActorCriticPolicy.load(first.with_suffix(".zip"))
    for (name, a), b in zip(trainer.policy.state_dict().items(), saved.state_dict().values()):
        assert torch.equal(a, b), name
    assert trainer.num_timesteps == state["step"] == int(first.stem[5:])
    assert trainer.optimizer.state_dict()["state"]  # Adam's moments came back
    assert core_of(trainer.env).kl_controller.value == state["kl_coef"]


def test_resume_returns_a_finished_run_and_refuses_other_arguments(tmp_path):
    out = tmp_path / "run"
    small = {**GRID, "steps": 512}
    summary = train("GridWorld-v1", "ppo", out=out, progress=False, **small)
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = train("GridWorld-v1", "ppo", out=out, progress=False, resume=True, **small)
    assert again == summary and files == {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ValueError, match=r"seed=1 \(the run has 0\)"):
        train("GridWorld-v1", "ppo", out=out, progress=False, resume=True, seed=1, **small)


def test_resume_without_a_checkpoint_starts_over_in_the_directory(tmp_path):
    out = tmp_path / "run"
    small = {**GRID, "steps": 512}
    process = start_training("GridWorld-v1", "ppo", out, small, block_at=1)
    kill_when_blocked(out, process)
    assert not (out / "checkpoints").exists() and (out / "episodes.csv").exists()
    train("GridWorld-v1", "ppo", out=out, progress=False, resume=True, **small)
    assert_complete(out, small["steps"])


def test_resume_on_a_new_directory_starts_a_run(tmp_path):
    train(
        "GridWorld-v1",
        "ppo",
        out=tmp_path / "new",
        progress=False,
        resume=True,
        **{**GRID, "steps": 256},
    )
    assert (tmp_path / "new" / "summary.json").exists()


@pytest.mark.heavy
def test_a_run_killed_before_its_new_checkpoint_is_complete_keeps_the_one_before(tmp_path):
    out = tmp_path / "run"
    # Killed after step_768.zip is written, before its .json marks it complete.
    patch = textwrap.dedent(
        """
        import os, pathlib, signal
        from textgym_agents.training import checkpoints as _train
        _write_json = _train.write_json
        def dying_write_json(path, data):
            if pathlib.Path(path).name == "step_768.json":
                os.kill(os.getpid(), signal.SIGKILL)
            return _write_json(path, data)
        _train.write_json = dying_write_json
        """
    )
    kwargs = {**GRID, "keep_checkpoints": 1}
    process = start_training("GridWorld-v1", "ppo", out, kwargs, patch)
    assert process.wait(timeout=120) == -signal.SIGKILL
    # Only the newest complete checkpoint is kept, and it is kept until a newer one is complete.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_512.json",
        "step_512.zip",
        "step_768.zip",
    ]
    train("GridWorld-v1", "ppo", out=out, progress=False, resume=True, **kwargs)
    assert_complete(out, GRID["steps"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_2048.json",
        "step_2048.zip",
    ]
    assert (out / "model.zip").exists()


@pytest.fixture
def ctrl_c_handled():
    """Python's own Ctrl-C handler in this process, as a terminal's foreground job has: tests
    started in the background of a shell run with SIGINT ignored (and then Python installs no
    handler)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_at(monkeypatch, step: int, times: int = 1) -> None:
    """Press Ctrl-C (SIGINT to this process) ``times`` in a row once training logged ``step``."""
    from textgym_agents.training import recorder as train_module

    advance = train_module._Recorder.advance
    sent = []

    def interrupting(self, at):
        advance(self, at)
        if at >= step and not sent:
            sent.append(at)
            # Undeferred, the KeyboardInterrupt would stop pytest itself.
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(train_module._Recorder, "advance", interrupting)


def test_ctrl_c_stops_sequence_ppo_after_its_update_with_a_checkpoint(
    tiny_gpt2, tmp_path, monkeypatch, capsys, ctrl_c_handled
):
    kwargs = text_kwargs(tiny_gpt2)
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 40)
    with pytest.raises(TrainingInterrupted) as stop:
        train("TextGen-v0", "gpt", out=out, progress=False, **kwargs)
    step = stop.value.step
    assert stop.value.saved and stop.value.checkpoint == step and 40 <= step < 96
    assert str(stop.value) == (
        f"interrupted at step {step} of 96; checkpointed there "
        f"({out / 'checkpoints' / f'step_{step}.zip'})"
    )
    # The checkpoint is the update's, complete; training stopped there.
    assert newest_checkpoint(out) == step
    assert read_episodes(out / "episodes.csv")["step"].max() == step
    assert not (out / "summary.json").exists() and not (out / ".textgym.lock").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    capsys.readouterr()
    train("TextGen-v0", "gpt", out=out, progress=True, resume=True, **kwargs)
    err = capsys.readouterr().err
    assert f"resuming {out} at step {step} of 96, from its newest checkpoint\n" in err
    assert f"| {step}/96 [" in err  # the progress bar starts there
    assert_complete(out, 96)


def test_a_second_ctrl_c_stops_at_once_naming_the_newest_checkpoint(
    tiny_gpt2, tmp_path, monkeypatch, ctrl_c_handled
):
    kwargs = text_kwargs(tiny_gpt2)
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 40, times=2)
    with pytest.raises(TrainingInterrupted) as stop:
        train("TextGen-v0", "gpt", out=out, progress=False, **kwargs)
    step, newest = stop.value.step, newest_checkpoint(out)
    assert not stop.value.saved and stop.value.checkpoint == newest < step
    assert str(stop.value) == (
        f"interrupted at step {step} of 96; its newest checkpoint is at step {newest} (the "
        "steps after it are trained again)"
    )
    assert not (out / ".textgym.lock").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def start_textgym(argv: list[str]) -> subprocess.Popen:
    """``textgym argv`` in a child process, as a user runs it."""
    command = [sys.executable, "-m", "textgym_agents.cli", *argv]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal, also when the tests run in the background of a shell (which
        # starts them with SIGINT ignored, and a child would inherit that).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.heavy
def test_ctrl_c_checkpoints_prints_the_resume_command_and_exits_130(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "GridWorld-v1", "--agent", "ppo", "--steps", "16384"]
    argv += ["--checkpoint-every", "1024", "--eval-episodes", "2", "--no-progress"]
    argv += ["--out", str(out)]
    process = start_textgym(argv)
    deadline = time.monotonic() + 120
    while not list(out.glob("checkpoints/step_*.json")):
        assert process.poll() is None, f"training ended (rc {process.returncode})"
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    printed, err = process.communicate(timeout=120)
    assert process.returncode == 130 and printed == ""
    step = newest_checkpoint(out)
    command = shlex.join(["textgym", *argv, "--resume"])
    assert err.splitlines() == [
        f"textgym train: interrupted at step {step:,} of 16,384; checkpointed there "
        f"({out / 'checkpoints' / f'step_{step}.zip'}); continue with: {command}"
    ]
    assert 1024 <= step < 16384 and not (out / "summary.json").exists()
    # The command it printed finishes the run.
    resumed = start_textgym(shlex.split(command)[1:])
    printed, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming {out} at step {step:,} of 16,384, from its newest checkpoint" in err
    assert "ppo on GridWorld-v1 (seed 0)" in printed
    assert_complete(out, 16384)


@pytest.mark.heavy
def test_cli_resume_refuses_a_directory_without_a_run(tmp_path):
    for out in (tmp_path / "missing", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        argv = ["train", "GridWorld-v1", "--agent", "ppo", "--out", str(out), "--resume"]
        refused = start_textgym(argv)
        printed, err = refused.communicate(timeout=120)
        assert refused.returncode == 2 and printed == ""
        assert err.splitlines() == [
            f"textgym train: --resume: --out {out} holds no run (no config.json): expected the "
            "directory of a run to continue (--resume-or-start starts one where there is none)"
        ]
    assert not (tmp_path / "missing").exists() and not list((tmp_path / "empty").iterdir())
    argv = ["train", "GridWorld-v1", "--agent", "ppo", "--out", str(tmp_path / "empty")]
    argv += ["--steps", "64", "--eval-episodes", "1", "--no-progress", "--resume-or-start"]
    started = start_textgym(argv)
    printed, err = started.communicate(timeout=300)
    assert started.returncode == 0, err
    assert "ppo on GridWorld-v1 (seed 0)" in printed
    assert (tmp_path / "empty" / "summary.json").exists()


def test_cli_resume_needs_out(cli_error):
    assert "--resume: expected --out" in cli_error(
        ["train", "GridWorld-v1", "--agent", "ppo", "--resume"]
    )


# ---------------------------------------------------------------------- one owner per directory
def test_a_claimed_run_directory_is_refused_and_left_alone(tmp_path, cli_error):
    out = tmp_path / "run"
    with claim(out):
        with pytest.raises(
            DirectoryBusyError,
            match=f"out='{out}' is in use by another textgym process \\(pid {os.getpid()}\\)",
        ):
            train("GridWorld-v1", "ppo", out=out, progress=False, **{**GRID, "steps": 256})
        message = cli_error(["train", "GridWorld-v1", "--agent", "ppo", "--out", str(out)])
        assert message.startswith("textgym train: out=") and "in use" in message
        assert sorted(p.name for p in out.iterdir()) == [".textgym.lock"]
    assert not (out / ".textgym.lock").exists()


def test_compare_kl_experiment_and_train_rm_claim_their_out(tiny_reward_model, tmp_path):
    out = tmp_path / "out"
    with claim(out):
        with pytest.raises(DirectoryBusyError):
            compare(["GridWorld-v1"], ["ppo"], [0], out=out, steps=64, progress=False)
        with pytest.raises(DirectoryBusyError):
            run_kl_experiment(tiny_reward_model, out=out, steps=8, progress=False)
    rm = tmp_path / "rm"
    with claim(rm, beside=True), pytest.raises(DirectoryBusyError, match=f"out='{rm}'"):
        train_reward_model(load_pairs()[:8], rm, progress=False)
    assert not rm.exists()


@pytest.mark.heavy
def test_two_runs_started_on_one_directory_do_not_mix(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "textgym_agents.cli",
        "train",
        "GridWorld-v1",
        "--agent",
        "ppo",
    ]
    options = ["--steps", "512", "--eval-episodes", "5", "--no-progress", "--out", str(out)]
    runs = [
        subprocess.Popen(
            [*command, *options, "--seed", str(seed)], stderr=subprocess.PIPE, text=True
        )
        for seed in (0, 1)
    ]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert sorted(rc for rc, _ in results) == [0, 2]
    (loser,) = [err for rc, err in results if rc == 2]
    assert f"out={str(out)!r}" in loser and ("in use" in loser or "already holds a run" in loser)
    config = json.loads((out / "config.json").read_text())
    assert json.loads((out / "summary.json").read_text())["seed"] == config["seed"]


# ---------------------------------------------------------------------- files
def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as temp:
        temp.write_text("{half")
        raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_episodes_csv_ignores_a_half_written_last_line(tmp_path):
    path = tmp_path / "episodes.csv"
    path.write_text(
        "step,return,length,rm_score,kl_per_sequence,kl_coef\n8,1.0,8,,,\n16,0.5,8,,,\n24,0.2"
    )
    assert read_episodes(path)["step"].tolist() == [8.0, 16.0]


def test_train_rm_removes_staging_directories_of_killed_runs(tmp_path):
    stale = tmp_path / "rm.tmp-0123456789abcdef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    train_reward_model(load_pairs()[:16], tmp_path / "rm", epochs=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]


@pytest.mark.heavy
def test_compare_started_again_reuses_finished_runs_and_resumes_the_rest(tmp_path):
    kwargs = {"out": tmp_path, "steps": 256, "eval_episodes": 2, "progress": False}
    compare(["GridWorld-v1"], ["ppo"], [0, 1], **kwargs)
    first = compare_rows(tmp_path)
    unfinished = tmp_path / "GridWorld-v1" / "ppo" / "seed_1"
    (unfinished / "summary.json").unlink()  # as if killed after training, before its summary
    finished = tmp_path / "GridWorld-v1" / "ppo" / "seed_0" / "summary.json"
    written = finished.stat().st_mtime_ns
    compare(["GridWorld-v1"], ["ppo"], [0, 1], **kwargs)
    assert compare_rows(tmp_path) == first  # the same runs, the same evaluations
    assert finished.stat().st_mtime_ns == written and (unfinished / "summary.json").exists()


def compare_rows(out: Path) -> list[dict]:
    """compare.csv without its wall times (a resumed run's adds up both sessions)."""
    with open(out / "compare.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(f)]
