"""Training an agent from the zoo into a run directory (`textgym train`), and re-evaluating or
replaying a finished run (`textgym eval`, `textgym render`).

`train` reads top to bottom: check the arguments, build the agent, claim the run directory,
evaluate before, (clone an expert,) learn with a recorder that logs every episode and saves
checkpoints, save, evaluate after (seeded, so `evaluate_run` repeats it exactly), plot.
Ctrl-C ends it with a `TrainingInterrupted` that says where a resume goes on from.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from tqdm.auto import tqdm

import textgym  # noqa: F401  (registers the envs)
from textgym._checks import check_int, is_int
from textgym.envs.textgen_core import core_of
from textgym.lm import resolve_device
from textgym.runfiles import atomic_path, claim, write_csv, write_json
from textgym.threads import torch_threads
from textgym.versions import version_drift
from textgym_agents.curves import plot_curves, reference_baseline
from textgym_agents.evaluation import (
    TextEpisode,
    evaluate,
    evaluate_reference,
    play_text,
    torch_seeded,
)
from textgym_agents.imitation import clone_expert
from textgym_agents.rundir import (
    EVAL_SEED_OFFSET,
    SAMPLES,
    WINDOW,
    EpisodeLog,
    default_out,
    holds_run,
    jsonable,
    load_agent,
    make_summary,
    portable_env_kwargs,
    read_episodes,
    run_versions,
)
from textgym_agents.saving import load_sb3
from textgym_agents.sequence_ppo import SequencePPO, UpdateStats
from textgym_agents.zoo import (
    AGENTS,
    agent_env_kwargs,
    default_budget,
    default_imitation,
    is_sequence_agent,
    make_agent,
)

__all__ = ["TrainingInterrupted", "evaluate_run", "play_run", "save_agent", "train"]

STEP_KEY = "time/total_timesteps"  # SB3's name for the step in the logs

# The newest checkpoint is what a resume reads; the one before it is there to go back to
# should the newest hold a run that went wrong just before it.
KEEP_CHECKPOINTS = 2


class TrainingInterrupted(KeyboardInterrupt):
    """`train` stopped by Ctrl-C (SIGINT); ``train(..., resume=True)`` with the same arguments
    goes on from ``checkpoint``.

    :ivar out: the run directory.
    :ivar step: the step training stopped at.
    :ivar steps: the run's budget.
    :ivar checkpoint: the step of the run's newest checkpoint (None: it has none, and a resume
        starts over).
    :ivar saved: whether ``checkpoint`` was saved at the interrupt, rather than before it.
    """

    def __init__(
        self, out: Path, step: int, steps: int, checkpoint: int | None, saved: bool
    ) -> None:
        self.out, self.step, self.steps = out, step, steps
        self.checkpoint, self.saved = checkpoint, saved
        where = f"interrupted at step {step:,} of {steps:,}"
        if checkpoint == step:
            state = f"checkpointed there ({out / 'checkpoints' / f'step_{step}.zip'})"
        elif checkpoint is not None:
            state = (
                f"its newest checkpoint is at step {checkpoint:,} (the steps after it are "
                "trained again)"
            )
        else:
            state = "it has no checkpoint yet (a resume starts it over)"
        super().__init__(f"{where}; {state}")


class _Interrupt:
    """Ctrl-C (SIGINT) while the agent learns, deferred to the trainer's next safe point,
    where the run is checkpointed and stops: after the env step in progress (SB3) or after the
    update in progress (`SequencePPO`); a second Ctrl-C stops at once, unsaved. Deferred only
    in the main thread and only in place of Python's own handler (a caller's stays); with
    ``defer=False`` (RLlib, whose runners a Ctrl-C may have stopped) Ctrl-C acts at once."""

    def __init__(self, defer: bool) -> None:
        self.defer = defer
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        if (
            self.defer
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _ProgressCSV(KVWriter):
    """``logs/progress.csv``, rewritten atomically at every dump (one row per dump: a few
    hundred rows at most). A resumed run keeps the rows up to the step it resumes from."""

    def __init__(self, path: Path, upto: int | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if upto is not None and path.exists():
            with open(path, newline="") as f:
                self.rows = [row for row in csv.DictReader(f) if float(row[STEP_KEY] or 0) <= upto]
        self.keys = list(dict.fromkeys(key for row in self.rows for key in row))
        self._write()

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        row = {
            key: value
            for key, value in key_values.items()
            if not (key_excluded.get(key) and "csv" in key_excluded[key])
            and isinstance(value, int | float | str | np.number)
        }
        self.keys.extend(key for key in row if key not in self.keys)
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        write_csv(self.path, self.keys, self.rows, restval="")

    def close(self) -> None:
        pass


class _TensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output; a resumed run hides the events its earlier session logged
    after the checkpoint (``purge_step``), so TensorBoard shows one continuous curve."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # TensorBoard reads a directory's event files in name order, and a name starts with
        # the second it was made in: a resumed session's file must sort after the others.
        made = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*")]
        while made and time.time() < max(made) + 1:
            time.sleep(0.05)
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)
        self._is_closed = False


class _Recorder:
    """Progress bar, episode log, logger and checkpoints of one run, for either trainer.

    A checkpoint ``checkpoints/step_N`` is the agent (``.zip``: weights, optimizer, counters),
    an off-policy agent's replay buffer (``.buffer.npz``, kept for the newest checkpoint
    only), and last, marking it complete, ``.json``: the RNG states, the adaptive KL
    coefficient and what the run did before training (evaluations, cloning).
    SB3 agents are checkpointed between rollouts (after an update, before the next
    collection), `SequencePPO` after an update.

    Once a checkpoint is complete, all but the newest ``keep`` are deleted (`_prune`).

    :param resumed: the checkpoint's ``.json`` of a resumed run (its step is where the bar,
        the logs and the episode log pick up), or None.
    :param keep: checkpoints kept (None: every one).
    :param interrupt: Ctrl-C, which the callbacks answer by stopping training.
    """

    def __init__(
        self,
        out: Path,
        total: int,
        checkpoint_every: int,
        progress: bool,
        before: dict[str, Any],
        resumed: dict[str, Any] | None,
        keep: int | None,
        interrupt: _Interrupt,
    ) -> None:
        upto = resumed["step"] if resumed else None
        logs = out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        purge = None if upto is None else upto + 1  # what was logged after the checkpoint
        self.logger = Logger(
            str(logs), [_ProgressCSV(logs / "progress.csv", upto), _TensorBoard(logs, purge)]
        )
        self.log = EpisodeLog(self.logger, out / "episodes.csv", upto)
        self.checkpoints = out / "checkpoints"
        self.checkpoint_every = checkpoint_every
        self.keep = keep
        self.interrupt = interrupt
        self.next_checkpoint = resumed["next_checkpoint"] if resumed else checkpoint_every
        self.last_checkpoint = upto
        self.before = before  # the evaluations and cloning before training, for the summary
        self.seconds = resumed["seconds"] if resumed else 0.0  # of earlier sessions
        self.started = time.perf_counter()
        self.stopped: float | None = None
        self.bar = tqdm(
            total=total,
            initial=upto or 0,
            unit="step",
            disable=not progress,
            dynamic_ncols=True,
            mininterval=0.5,
        )

    @property
    def elapsed(self) -> float:
        """Training seconds so far, over every session of the run (until `close`)."""
        return self.seconds + (self.stopped or time.perf_counter()) - self.started

    def advance(self, step: int) -> None:
        if step > self.bar.total:  # SB3 finishes its last rollout past the budget
            self.bar.total = step
        self.bar.update(step - self.bar.n)
        if self.log.rows:
            recent = [row["return"] for row in self.log.rows[-WINDOW:]]
            self.bar.set_postfix(ret=f"{np.mean(recent):+.3f}", refresh=False)

    def checkpoint(self, model: Any, step: int, final: bool = False) -> None:
        """Save a checkpoint at ``step`` when one is due (``final``: unless there is one)."""
        due = step != self.last_checkpoint if final else step >= self.next_checkpoint
        if not due:
            return
        if self.checkpoint_every:
            self.next_checkpoint = (step // self.checkpoint_every + 1) * self.checkpoint_every
        self.checkpoints.mkdir(exist_ok=True)
        base = self.checkpoints / f"step_{step}"
        save_agent(model, base.with_suffix(".zip"))
        buffer = getattr(model, "replay_buffer", None)
        if buffer is not None:
            with atomic_path(base.with_suffix(".buffer.npz")) as temp:
                np.savez(temp, **_buffer_arrays(buffer))
        state = {
            "step": step,
            "next_checkpoint": self.next_checkpoint,
            "seconds": round(self.elapsed, 3),
            "episodes": len(self.log.rows),
            "rng": _rng_state(model),
            **self.before,
        }
        kl_coef = _kl_coef(model)
        if kl_coef is not None:  # the adaptive KL coefficient moved with training
            state["kl_coef"] = kl_coef
        write_json(base.with_suffix(".json"), state)
        self.last_checkpoint = step
        _prune(self.checkpoints, step, self.keep)

    def close(self) -> None:
        self.stopped = time.perf_counter()
        self.bar.close()
        self.log.close()
        self.logger.close()


class _SB3Callback(BaseCallback):
    """Feeds SB3's finished episodes (``infos[i]["episode"]``, VecMonitor's) to a `_Recorder`,
    and checkpoints between rollouts."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def _on_rollout_start(self) -> None:
        self.recorder.checkpoint(self.model, self.num_timesteps)

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "episode" in info:
                self.recorder.log.add(
                    self.num_timesteps,
                    info["episode"]["r"],
                    info["episode"]["l"],
                    info.get("rm_score"),
                    info.get("episode_kl"),
                    info.get("kl_coef"),
                )
        self.recorder.advance(self.num_timesteps)
        return not self.recorder.interrupt.requested


def _sequence_callback(recorder: _Recorder):
    def callback(trainer: SequencePPO, stats: UpdateStats) -> None:
        for e in stats.episodes:
            recorder.log.add(
                stats.timesteps, e.episode_return, len(e.tokens), e.rm_score, e.kl, e.kl_coef
            )
        logger = recorder.logger
        logger.record("train/policy_loss", stats.policy_loss)
        logger.record("train/value_loss", stats.value_loss)
        logger.record("train/entropy", stats.entropy)
        logger.record("train/approx_kl", stats.approx_kl)
        logger.record("train/clip_fraction", stats.clip_fraction)
        logger.record("time/collect_tokens_per_second", stats.tokens / stats.collect_seconds)
        logger.record("time/update_tokens_per_second", stats.tokens / stats.update_seconds)
        logger.record(STEP_KEY, stats.timesteps)  # SB3's name for the step
        logger.dump(stats.timesteps)
        recorder.advance(stats.timesteps)
        recorder.checkpoint(trainer, stats.timesteps)
        return not recorder.interrupt.requested

    return callback


def _rllib_callback(recorder: _Recorder):
    def callback(agent: Any, stats: Any) -> None:  # RLlibAgent, IterationStats
        for e in stats.episodes:
            recorder.log.add(
                stats.timesteps, e["return"], e["length"], e["rm_score"], e["kl"], e["kl_coef"]
            )
        logger = recorder.logger
        for name, key in _RLLIB_LEARNER_KEYS.items():
            if key in stats.learner:
                logger.record(name, stats.learner[key])
        logger.record("time/fps", stats.env_steps / max(stats.seconds, 1e-9))
        logger.record(STEP_KEY, stats.timesteps)
        logger.dump(stats.timesteps)
        recorder.advance(stats.timesteps)
        recorder.checkpoint(agent, stats.timesteps)

    return callback


# RLlib's learner figures under SequencePPO's names.
_RLLIB_LEARNER_KEYS = {
    "train/policy_loss": "policy_loss",
    "train/value_loss": "vf_loss",
    "train/entropy": "entropy",
    "train/approx_kl": "mean_kl_loss",
}


def save_agent(model: Any, path: Path) -> None:
    """The agent (SB3's zip, or `SequencePPO.save`'s, `RLlibAgent.save`'s) at ``path``,
    atomically."""
    if not isinstance(model, BaseAlgorithm):
        model.save(path)  # atomic itself
        return
    with atomic_path(path) as temp:
        model.save(temp)


def _buffer_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """A replay buffer as plain arrays (read back with ``allow_pickle=False``)."""
    arrays = {"pos": np.array(buffer.pos), "full": np.array(buffer.full)}
    for name in _BUFFER_FIELDS:
        value = getattr(buffer, name, None)
        if isinstance(value, dict):
            arrays.update({f"{name}/{key}": array for key, array in value.items()})
        elif value is not None:
            arrays[name] = value
    return arrays


def _restore_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """The replay buffer `_buffer_arrays` saved at ``path`` into ``buffer``: every array read
    (no pickles) and checked against the buffer's before the buffer changes."""
    arrays = _buffer_arrays(buffer)  # the buffer's own arrays, filled in place
    try:
        with np.load(path, allow_pickle=False) as archive:
            saved = {name: archive[name] for name in arrays if name in archive.files}
    except ValueError as err:  # numpy's refusal of an object array or a pickle names no file
        raise ValueError(
            f"{path} holds Python objects ({err}): expected plain arrays, as textgym saves a "
            "replay buffer; an object array loads only by unpickling, which textgym never does"
        ) from err
    for name, array in arrays.items():
        if name not in saved or saved[name].shape != array.shape:
            found = saved[name].shape if name in saved else "nothing"
            raise ValueError(
                f"{path}: {name} holds {found}: expected an array of shape {array.shape}, "
                "this run's replay buffer"
            )
    buffer.pos, buffer.full = int(saved.pop("pos")), bool(saved.pop("full"))
    for name, array in saved.items():
        arrays[name][...] = array


_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _rng_state(model: Any) -> dict[str, Any]:
    """Every RNG training draws from, as JSON."""
    numpy_state = np.random.get_state()  # noqa: NPY002 (SB3 draws from the global RNG)
    state = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    space = getattr(model, "action_space", None)
    if space is not None and space._np_random is not None:  # DQN's exploration
        state["action_space"] = space.np_random.bit_generator.state
    return state


def _set_rng_state(model: Any, state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))  # noqa: NPY002
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    if "action_space" in state:
        model.action_space.np_random.bit_generator.state = state["action_space"]


def _latest_checkpoint(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint of ``out``: its ``.zip`` and its ``.json``'s state."""
    steps = _complete_steps(out / "checkpoints")
    if not steps:
        return None
    path = out / "checkpoints" / f"step_{steps[-1]}.json"
    return path.with_suffix(".zip"), json.loads(path.read_text())


def _checkpoint_files(folder: Path) -> dict[int, list[Path]]:
    """The files of the checkpoints in ``folder`` by step (`atomic_path`'s temporaries aside)."""
    files: dict[int, list[Path]] = {}
    for path in folder.glob("step_*"):
        step = path.name.split(".")[0].removeprefix("step_")
        if step.isdigit() and ".tmp-" not in path.name:
            files.setdefault(int(step), []).append(path)
    return files


def _complete_steps(folder: Path) -> list[int]:
    """The steps of the complete checkpoints in ``folder`` (a ``.zip`` and, written last, its
    ``.json``), in order."""
    return sorted(
        step
        for step, paths in _checkpoint_files(folder).items()
        if {f"step_{step}.zip", f"step_{step}.json"} <= {path.name for path in paths}
    )


def _prune(folder: Path, newest: int, keep: int | None) -> None:
    """Delete the checkpoints before the newest ``keep`` complete ones (None: none), and the
    replay buffers of all but the ``newest`` (only a resume reads one: tens of MB each).

    Called once the checkpoint at ``newest`` is complete, so the one a resume reads is never
    deleted. A checkpoint's ``.json`` goes first, so one killed half-deleted is not complete.
    Files past ``newest`` (a killed run's, which this run writes over) are left alone.
    """
    kept = set(_complete_steps(folder)[-keep:]) if keep is not None else None
    for step, paths in _checkpoint_files(folder).items():
        if step >= newest:
            continue
        if kept is not None and step not in kept:
            doomed = sorted(paths, key=lambda path: path.suffix != ".json")
        else:
            doomed = [path for path in paths if path.name.endswith(".buffer.npz")]
        for path in doomed:
            path.unlink()


def _restore(model: Any, checkpoint: Path, state: dict[str, Any]) -> None:
    """Continue ``model`` (built with the run's configuration) from a checkpoint."""
    if not isinstance(model, BaseAlgorithm):  # SequencePPO, RLlibAgent
        model.load_state(checkpoint)
    else:
        load_sb3(model, checkpoint)
        buffer = checkpoint.with_name(checkpoint.stem + ".buffer.npz")
        if getattr(model, "replay_buffer", None) is not None and buffer.exists():
            _restore_buffer(model.replay_buffer, buffer)
        # The env restarts: seeded anew, so it does not replay the run's first episodes.
        model.env.seed(model.seed + state["step"])
    _set_rng_state(model, state["rng"])
    if "kl_coef" in state:
        _set_kl_coef(model, float(state["kl_coef"]))


def _kl_coef(model: Any) -> float | None:
    """The training env's KL coefficient (it moves when adaptive), None off TextGen."""
    if not isinstance(model, BaseAlgorithm | SequencePPO):
        return model.kl_coef  # RLlibAgent: its runners'
    core = _training_core(model)
    return None if core is None else core.kl_controller.value


def _set_kl_coef(model: Any, value: float) -> None:
    if not isinstance(model, BaseAlgorithm | SequencePPO):
        model.kl_coef = value
    else:
        _training_core(model).kl_controller.value = value


def _training_core(model: BaseAlgorithm | SequencePPO) -> Any:
    return core_of(model.env if isinstance(model, SequencePPO) else model.get_env())


def _remove_temporaries(out: Path) -> None:
    """Files a killed run was writing (`atomic_path`'s temporaries): never complete."""
    for path in out.rglob("*.tmp-*"):
        if path.is_file():
            path.unlink()


# Settings that may change when a run resumes (its results do not depend on them).
# What a resumed run may change: resources, and the installed versions (a warning says so).
_RESUMABLE_CHANGES = (
    "threads",
    "num_env_runners",
    "address",
    "num_gpus_per_env_runner",
    "versions",
)


def train(
    env_id: str,
    agent: str,
    *,
    steps: int | None = None,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    checkpoint_every: int | None = None,
    eval_episodes: int = 100,
    n_envs: int | None = None,
    imitate: int | None = None,
    threads: int | None = None,
    resume: bool = False,
    keep_checkpoints: int | None = KEEP_CHECKPOINTS,
    backend: str = "sb3",
    num_env_runners: int = 2,
    address: str | None = None,
    num_gpus_per_env_runner: float = 0,
    device: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train ``agent`` on ``env_id`` into a run directory and return (and save) its summary.

    The agent is evaluated before and after training on the same held-out seed
    (``seed + 10000``), so the samples before and after start from the same prompts. The
    evaluation after training also seeds the agent's sampling with that seed, so
    `evaluate_run` reproduces it exactly. On TextGen the summary's ``reference`` holds the
    reference policy's evaluation on the same seed: the baseline to beat.

    Every file of the run directory is written atomically; episodes are appended to
    ``episodes.csv`` as they finish. The process claims the directory before writing to it
    (`textgym.runfiles.claim`): a second run on it stops with a `DirectoryBusyError`.

    Ctrl-C (SIGINT) stops the run at the trainer's next safe point (SB3: after the env step in
    progress; ``gpt`` on TextGen: after the update in progress), saves a checkpoint there and
    raises `TrainingInterrupted` (a `KeyboardInterrupt`); a second Ctrl-C, or one outside
    learning, raises it at once, naming the newest checkpoint. RLlib runs are not saved at the
    interrupt. ``resume=True`` goes on from the newest checkpoint either way.

    :param env_id: ``"GridWorld-v1"``, ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    :param agent: a name from `textgym_agents.zoo.AGENTS`.
    :param steps: env steps to train (default: the zoo's budget, `default_budget`).
    :param seed: seeds the agent and the training env.
    :param env_kwargs: env arguments on top of the agent's (`agent_env_kwargs`).
    :param out: the run directory (default ``runs/<env>-<agent>-s<seed>-<time>``); it must
        not hold a previous run, unless ``resume``.
    :param progress: show a progress bar.
    :param checkpoint_every: save the agent every this many steps (default: 5 times a run).
    :param eval_episodes: episodes of each evaluation.
    :param n_envs: parallel envs (default: the zoo's).
    :param imitate: env steps of expert demonstrations to clone before RL (default: the zoo's,
        `default_imitation`; 0: none; `textgym_agents.imitation.clone_expert`: GridWorld's shortest
        paths, SB3 actor-critic agents).
        The summary's ``imitation`` holds the cloning's figures and an evaluation after it.
    :param threads: torch threads for the run (default: as they are); recorded in
        ``config.json`` either way, since results differ in the last bits between counts.
    :param resume: continue the unfinished run in ``out`` (made with the same arguments; only
        ``threads`` may differ) from its newest checkpoint: weights, optimizer, counters,
        replay buffer, RNG states, episode log and logs as they were at that step. The envs
        start afresh (the episodes in flight at the checkpoint are not resumed), so the
        figures are close to, not bit-identical with, an uninterrupted run's. Without a
        checkpoint the run starts over in the same directory; without a run, a new one starts;
        a finished run is not trained again: its summary is returned. It says on stderr which
        step it resumes from.
    :param keep_checkpoints: checkpoints kept: after each save, all but the newest this many
        are deleted (None: keep every one). The newest, which a resume reads, is always kept,
        and so is ``model.zip``.
    :param backend: ``"sb3"`` (this process: SB3, or `SequencePPO` for ``gpt`` on TextGen)
        or ``"rllib"``: Ray RLlib's PPO over ``num_env_runners`` env runners
        (`textgym_agents.rllib`, agents ``ppo`` and ``gpt``; ``pip install -e ".[rllib]"``).
        The run directory is the same either way.
    :param num_env_runners: RLlib: Ray actors stepping envs (0: this process steps them).
    :param address: RLlib: the Ray cluster to join (``ray start --head`` prints it; ``"auto"``:
        the one running on this machine); default: a local Ray instance for this run.
    :param num_gpus_per_env_runner: RLlib: GPUs each env runner reserves (its env and module
        run there).
    :param device: where the agent and TextGen's models run: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ... (default: the env's and SB3's own default, CUDA where available).
        Sets the env argument ``device`` on TextGen and the SB3 algorithm's ``device``
        (`SequencePPO` runs where its env's models are); both are recorded in ``config.json``,
        so an evaluation of the run uses the same device. RLlib places its runners with
        ``num_gpus_per_env_runner``.
    :param overrides: algorithm keywords replacing the zoo's (RLlib: ``PPOConfig.training``
        keywords replacing `RLLIB_HYPERPARAMS`).
    """
    if device is not None:
        if backend == "rllib":
            raise ValueError(
                f"device={device!r}: expected backend='sb3'; RLlib places its env runners "
                "with num_gpus_per_env_runner"
            )
        env_kwargs, overrides = _placed(env_id, agent, device, env_kwargs, overrides)
    if keep_checkpoints is not None and not (is_int(keep_checkpoints) and keep_checkpoints >= 1):
        raise ValueError(
            f"keep_checkpoints={keep_checkpoints!r}: expected an integer >= 1 (the newest "
            "checkpoint is what a resume reads), or None to keep every checkpoint"
        )
    if backend == "rllib":
        return _train_rllib(
            env_id,
            agent,
            steps=steps,
            seed=seed,
            env_kwargs=env_kwargs,
            out=out,
            progress=progress,
            checkpoint_every=checkpoint_every,
            eval_episodes=eval_episodes,
            n_envs=n_envs,
            imitate=imitate,
            threads=threads,
            resume=resume,
            keep_checkpoints=keep_checkpoints,
            num_env_runners=num_env_runners,
            address=address,
            num_gpus_per_env_runner=num_gpus_per_env_runner,
            **overrides,
        )
    if backend != "sb3":
        raise ValueError(f"backend={backend!r} is not known: expected 'sb3' or 'rllib'")
    if address is not None or num_gpus_per_env_runner:
        raise ValueError(
            f"address={address!r}, num_gpus_per_env_runner={num_gpus_per_env_runner!r}: "
            "expected backend='rllib' (the SB3 backend trains in this process)"
        )
    with torch_threads(threads) as threads:
        if agent not in AGENTS:
            raise ValueError(f"agent={agent!r} is unknown: expected one of {AGENTS}")
        env_kwargs = agent_env_kwargs(agent, env_id, env_kwargs)
        steps = default_budget(agent, env_id, env_kwargs) if steps is None else steps
        check_int("steps", steps, 1)
        out = _run_dir(out, resume, env_id, agent, seed)
        imitate = default_imitation(agent, env_id, env_kwargs) if imitate is None else imitate
        check_int("imitate", imitate, 0)
        config = _run_config(locals(), overrides)
        # Bad env arguments or overrides fail here, before the run directory is claimed.
        model = make_agent(
            agent, env_id, seed=seed, n_envs=n_envs, env_kwargs=env_kwargs, **overrides
        )
        if imitate and not isinstance(model, OnPolicyAlgorithm):
            raise ValueError(
                f"imitate={imitate} needs an SB3 actor-critic agent (ppo, a2c, maskable_ppo, or "
                f"gpt on GridWorld): agent={agent!r} on {env_id} is not one"
            )
        with claim(out), _interrupt_names_checkpoint(model, config, out):
            return _train_claimed(
                model, config, out, progress, checkpoint_every, resume, keep_checkpoints
            )


def _placed(
    env_id: str,
    agent: str,
    device: str,
    env_kwargs: dict[str, Any] | None,
    overrides: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``device`` as the env's and the agent's arguments (see `train`), or a clear error."""
    resolve_device(device)  # "cuda" without CUDA fails here, before anything is built
    for given, name in ((env_kwargs or {}, "env_kwargs"), (overrides, "overrides")):
        if given.get("device", device) != device:
            raise ValueError(
                f"device={device!r} and {name}['device']={given['device']!r}: expected one "
                "device, given once"
            )
    if env_id.startswith("TextGen"):
        env_kwargs = {**(env_kwargs or {}), "device": device}
    if not is_sequence_agent(agent, env_id):
        overrides = {**overrides, "device": device}
    return env_kwargs, overrides


def _run_dir(out: str | Path | None, resume: bool, env_id: str, agent: str, seed: int) -> Path:
    if resume and out is None:
        raise ValueError("resume=True needs out: the run directory to continue")
    return Path(out) if out is not None else default_out(env_id, agent, seed)


_CONFIG_KEYS = (
    "env_id",
    "agent",
    "seed",
    "steps",
    "env_kwargs",
    "n_envs",
    "imitate",
    "eval_episodes",
    "threads",
)


def _run_config(arguments: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config.json``: the run's arguments (from ``train``'s) and its JSON-able overrides."""
    config = {key: arguments[key] for key in _CONFIG_KEYS}
    config["overrides"] = {k: v for k, v in overrides.items() if jsonable(v)}
    return config


def _train_rllib(
    env_id: str,
    agent: str,
    *,
    steps: int | None,
    seed: int,
    env_kwargs: dict[str, Any] | None,
    out: str | Path | None,
    progress: bool,
    checkpoint_every: int | None,
    eval_episodes: int,
    n_envs: int | None,
    imitate: int | None,
    threads: int | None,
    resume: bool,
    keep_checkpoints: int | None,
    num_env_runners: int,
    address: str | None,
    num_gpus_per_env_runner: float,
    **overrides: Any,
) -> dict[str, Any]:
    """`train` on Ray RLlib (``backend="rllib"``): the same run directory."""
    try:
        import ray

        from textgym_agents import rllib
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"backend='rllib' needs Ray RLlib ({err}): pip install -e '.[rllib]'"
        ) from err
    with torch_threads(threads) as threads:
        hyper = rllib.rllib_hyperparams(agent, env_id)
        env_kwargs = rllib.rllib_env_kwargs(agent, env_id, env_kwargs)
        steps = hyper["n_timesteps"] if steps is None else steps
        check_int("steps", steps, 1)
        check_int("num_env_runners", num_env_runners, 0)
        rllib.check_working_directory()  # before Ray starts (rllib_config checks it too)
        if imitate:
            raise ValueError(f"imitate={imitate}: the RLlib backend does not clone an expert")
        out = _run_dir(out, resume, env_id, agent, seed)
        config = {
            **_run_config(locals(), overrides),
            "imitate": 0,
            "backend": "rllib",
            "num_env_runners": num_env_runners,
            "address": address,
            "num_gpus_per_env_runner": num_gpus_per_env_runner,
        }
        # A resumed run's envs start afresh, seeded anew (as `_restore` seeds SB3's).
        latest = _latest_checkpoint(out) if resume and holds_run(out) else None
        env_seed = seed + (latest[1]["step"] if latest else 0)
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            # Bad env arguments or overrides fail here, before the run directory is claimed.
            model = rllib.RLlibAgent(
                rllib.rllib_config(
                    env_id,
                    agent,
                    seed=env_seed,
                    env_kwargs=env_kwargs,
                    num_env_runners=num_env_runners,
                    n_envs=n_envs,
                    num_gpus_per_env_runner=num_gpus_per_env_runner,
                    **overrides,
                )
            )
            try:
                with claim(out), _interrupt_names_checkpoint(model, config, out):
                    return _train_claimed(
                        model, config, out, progress, checkpoint_every, resume, keep_checkpoints
                    )
            finally:
                model.close()
        finally:
            if started:
                ray.shutdown()


@contextlib.contextmanager
def _interrupt_names_checkpoint(model: Any, config: dict[str, Any], out: Path) -> Iterator[None]:
    """A Ctrl-C that training did not save at becomes a `TrainingInterrupted` naming the
    newest checkpoint of the run in ``out``."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as err:
        if not holds_run(out):
            raise  # stopped before the run began: nothing to resume
        latest = _latest_checkpoint(out)
        newest = latest[1]["step"] if latest else None
        step = int(model.num_timesteps)
        raise TrainingInterrupted(out, step, config["steps"], newest, saved=False) from err


def _train_claimed(
    model: Any,
    config: dict[str, Any],
    out: Path,
    progress: bool,
    checkpoint_every: int | None,
    resume: bool,
    keep_checkpoints: int | None,
) -> dict[str, Any]:
    """`train` once ``out`` is claimed: from the start or from ``out``'s newest checkpoint."""
    env_id, steps, seed = config["env_id"], config["steps"], config["seed"]
    resumed = _check_resume(out, config) if resume else False
    if resumed:
        saved = json.loads((out / "config.json").read_text()).get("versions")
        drift = version_drift(saved, out / "config.json")
        if drift:
            warnings.warn(f"resuming: {drift}", UserWarning, stacklevel=2)
    if resumed and (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())  # it finished meanwhile
    if not resumed:
        if holds_run(out):
            raise FileExistsError(
                f"out={str(out)!r} already holds a run (config.json): expected a new or empty "
                "directory, so no earlier run is overwritten (resume=True, --resume, continues "
                "an unfinished one)"
            )
        versions = run_versions(config.get("backend", "sb3"))
        write_json(out / "config.json", {**portable(config), "versions": versions})
    # The same held-out seed before and after: the same prompts (or maps) both times.
    eval_seed = seed + EVAL_SEED_OFFSET
    assess = functools.partial(
        evaluate,
        env_id=env_id,
        episodes=config["eval_episodes"],
        seed=eval_seed,
        env_kwargs=config["env_kwargs"],
        samples=SAMPLES,
    )
    every = checkpoint_every if checkpoint_every is not None else max(1, steps // 5)
    latest = _latest_checkpoint(out) if resumed else None
    if latest is not None:
        checkpoint, state = latest
        _restore(model, checkpoint, state)
        before = {key: state[key] for key in ("before", "imitation")}
        print(
            f"resuming {out} at step {state['step']:,} of {steps:,}, from its newest checkpoint",
            file=sys.stderr,
        )
    else:
        if resumed:
            print(f"resuming {out}: it has no checkpoint yet, so it starts over", file=sys.stderr)
        # A resumed run without a checkpoint starts over: its logs from step 0 are dropped.
        state = {"step": 0, "next_checkpoint": every, "seconds": 0.0} if resumed else None
        before = {"before": assess(model), "imitation": None}
        if config["imitate"]:
            imitation = clone_expert(model, config["imitate"], seed=seed, progress=progress)
            imitation["evaluation"] = assess(model)
            before["imitation"] = imitation
    # Only now, the checkpoint read and checked: a refused resume leaves the directory as it was.
    _remove_temporaries(out)
    rllib = not isinstance(model, BaseAlgorithm | SequencePPO)
    with _Interrupt(defer=not rllib) as interrupt:
        recorder = _Recorder(
            out, steps, every, progress, before, state, keep_checkpoints, interrupt
        )
        try:
            remaining = steps - model.num_timesteps
            if remaining > 0 and isinstance(model, SequencePPO):
                model.learn(remaining, callback=_sequence_callback(recorder))
            elif remaining > 0 and rllib:
                model.learn(remaining, callback=_rllib_callback(recorder))
            elif remaining > 0:
                model.set_logger(recorder.logger)
                model.learn(remaining, callback=_SB3Callback(recorder), reset_num_timesteps=False)
            recorder.checkpoint(model, int(model.num_timesteps), final=True)
        finally:
            recorder.close()
    if interrupt.requested:
        step = int(model.num_timesteps)
        raise TrainingInterrupted(out, step, steps, step, saved=True)
    save_agent(model, out / "model.zip")
    with torch_seeded(eval_seed):  # what `evaluate_run` repeats
        after = assess(model)
    summary = make_summary(config, after, before=before["before"], steps=model.num_timesteps)
    baselines = None
    if env_id.startswith("TextGen"):
        reference = evaluate_reference(config["eval_episodes"], eval_seed, config["env_kwargs"])
        summary["reference"] = reference
        baseline = reference_baseline(reference["mean_return"], reference["mean_rm_score"])
        baselines = {"reference": baseline}
    if before["imitation"] is not None:
        summary["imitation"] = before["imitation"]
    seconds = recorder.elapsed
    summary["training"] = {
        "steps": int(model.num_timesteps),
        "episodes": len(recorder.log.rows),
        "wall_seconds": round(seconds, 1),
        "steps_per_second": round(model.num_timesteps / seconds, 1),
        f"final_return_mean_last_{WINDOW}": _last_mean(recorder.log.rows, "return"),
    }
    plot_curves(
        {f"{config['agent']} seed {seed}": read_episodes(out / "episodes.csv")},
        out / "curve.png",
        title=f"{config['agent']} on {env_id}",
        baselines=baselines,
    )
    write_json(out / "summary.json", summary)  # last: a run with a summary is finished
    return summary


def portable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as config.json holds it (`portable_env_kwargs`)."""
    return {**config, "env_kwargs": portable_env_kwargs(config["env_kwargs"])}


def _check_resume(out: Path, config: dict[str, Any]) -> bool:
    """Whether ``out`` holds a run to resume, finished or not (else it is new); refuse one
    made with other arguments."""
    if not holds_run(out):
        return False
    saved = json.loads((out / "config.json").read_text())
    config = portable(config)
    changed = [
        f"{key}={config.get(key)!r} (the run has {saved.get(key)!r})"
        for key in sorted(set(saved) | set(config))
        if key not in _RESUMABLE_CHANGES and saved.get(key) != config.get(key)
    ]
    if changed:
        raise ValueError(
            f"out={str(out)!r} holds a run made with other arguments: {', '.join(changed)}; "
            "expected the same arguments as the run to resume"
        )
    return True


def _last_mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows[-WINDOW:] if row[key] is not None]
    return round(float(np.mean(values)), 4) if values else None


def evaluate_run(
    run_dir: str | Path,
    episodes: int | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    threads: int | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`textgym eval`: the summary of a saved agent, evaluated afresh. With the defaults it
    repeats the run's evaluation after training exactly (its ``summary.json``'s ``after``).

    :param episodes: episodes to play (default: as many as the run's evaluations).
    :param seed: seeds the env and the agent's sampling (default: the run's held-out
        evaluation seed).
    :param deterministic: act greedily or sample (default: `evaluate`'s: greedy on GridWorld,
        sampled on TextGen).
    :param threads: torch threads (default: the run's, from ``config.json``).
    :param allow_pickle: see `load_agent` (off: nothing in the run directory is unpickled).
    :param trust_remote_code: see `load_agent` (off: the run's config cannot turn it on).
    :param env_kwargs: env arguments on top of the run's; a run made with a Python object
        among them (a reward function) needs it again here (see `load_agent`).
    """
    model, config = load_agent(
        run_dir,
        env_kwargs=env_kwargs,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    seed = config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    episodes = config.get("eval_episodes", 100) if episodes is None else episodes
    with torch_threads(config.get("threads") if threads is None else threads), torch_seeded(seed):
        after = evaluate(
            model,
            config["env_id"],
            episodes=episodes,
            seed=seed,
            env_kwargs=config["env_kwargs"],
            deterministic=deterministic,
            samples=SAMPLES,
        )
    summary = make_summary(config, after, steps=_trained_steps(Path(run_dir)))
    drift = version_drift(config.get("versions"), Path(run_dir) / "config.json")
    if drift:
        summary["version_drift"] = drift
    return summary


def _trained_steps(run_dir: Path) -> int | None:
    """The steps the run's ``summary.json`` says were trained (None: no summary to read)."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("training", {}).get("steps")


def play_run(
    run_dir: str | Path,
    episodes: int = 3,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    threads: int | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> list[TextEpisode]:
    """`textgym render`: episodes of a saved TextGen agent token by token, played as in
    evaluation (sampled, with the agent's policy as the KL scorer).

    :param seed: env seed (default: the run's held-out evaluation seed).
    :param env_kwargs: env arguments on top of the run's (e.g. other prompts).
    :param threads: torch threads (default: the run's, from ``config.json``).
    :param allow_pickle: see `load_agent`.
    :param trust_remote_code: see `load_agent`.
    """
    model, config = load_agent(
        run_dir,
        env_kwargs=env_kwargs,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    if not config["env_id"].startswith("TextGen"):
        raise ValueError(
            f"run_dir={str(run_dir)!r} holds a {config['env_id']} run: expected a TextGen-v0 "
            "run (only text episodes can be rendered token by token)"
        )
    seed = config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    with torch_threads(config.get("threads") if threads is None else threads):
        return play_text(
            model,
            episodes=episodes,
            seed=seed,
            env_kwargs=config["env_kwargs"],
        )
