"""Training with a recorder (`learn_recorded`): the progress bar, the episode log, the logger and
the checkpoints of one run, fed by a callback of each trainer (SB3's, `SequencePPO`'s, RLlib's);
and Ctrl-C, deferred to the trainer's next safe point and answered with a `TrainingInterrupted`
that names the checkpoint a resume goes on from.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from tqdm.auto import tqdm

import textgym  # noqa: F401  (registers the envs)
from textgym_agents.trainers.episodes import UpdateStats
from textgym_agents.trainers.sequence_ppo import SequencePPO
from textgym_agents.training.checkpoints import latest_checkpoint, save_checkpoint
from textgym_agents.training.logs import STEP_KEY, WINDOW, EpisodeLog, ProgressCSV, TensorBoard
from textgym_agents.training.rundir import holds_run


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


@contextlib.contextmanager
def interrupt_names_checkpoint(model: Any, config: dict[str, Any], out: Path) -> Iterator[None]:
    """A Ctrl-C that training did not save at becomes a `TrainingInterrupted` naming the
    newest checkpoint of the run in ``out``."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as err:
        if not holds_run(out):
            raise  # stopped before the run began: nothing to resume
        latest = latest_checkpoint(out)
        newest = latest[1]["step"] if latest else None
        step = int(model.num_timesteps)
        raise TrainingInterrupted(out, step, config["steps"], newest, saved=False) from err


class _Recorder:
    """Progress bar, episode log, logger and checkpoints of one run, for every trainer.

    A checkpoint (`save_checkpoint`) is saved every ``checkpoint_every`` steps: SB3 agents
    between rollouts (after an update, before the next collection), `SequencePPO` and RLlib
    after an update. Once a checkpoint is complete, all but the newest ``keep`` are deleted.

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
            str(logs), [ProgressCSV(logs / "progress.csv", upto), TensorBoard(logs, purge)]
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
        run = {
            "next_checkpoint": self.next_checkpoint,
            "seconds": round(self.elapsed, 3),
            "episodes": len(self.log.rows),
        }
        save_checkpoint(model, self.checkpoints, step, run, self.before, self.keep)
        self.last_checkpoint = step

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


def learn_recorded(
    model: Any,
    out: Path,
    steps: int,
    checkpoint_every: int,
    progress: bool,
    before: dict[str, Any],
    resumed: dict[str, Any] | None,
    keep: int | None,
) -> _Recorder:
    """Train ``model`` (SB3's, `SequencePPO`, `RLlibAgent`) up to ``steps`` env steps, recorded
    into ``out`` (`_Recorder`), and checkpoint it at the end unless a checkpoint is there.

    Ctrl-C stops it at the trainer's next safe point (not RLlib's: see `_Interrupt`), where it
    is checkpointed, with a `TrainingInterrupted`.

    :param before: what the run did before training, kept in every checkpoint.
    :param resumed: the checkpoint's state a resumed run goes on from, or None.
    :param keep: checkpoints kept (None: every one).
    :return: the recorder (closed).
    """
    rllib = not isinstance(model, BaseAlgorithm | SequencePPO)
    with _Interrupt(defer=not rllib) as interrupt:
        recorder = _Recorder(
            out, steps, checkpoint_every, progress, before, resumed, keep, interrupt
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
    return recorder
