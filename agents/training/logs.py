"""A run's logs: ``episodes.csv`` (`EpisodeLog`, `read_episodes`), and what SB3's logger writes
under ``logs/``: ``progress.csv`` (`ProgressCSV`) and TensorBoard events (`TensorBoard`), both
continued by a resumed run from the step it resumes at.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat

import textgym  # noqa: F401  (registers the envs)
from textgym.runfiles import write_csv
from textgym_agents.training.evaluation import POSITIVE_THRESHOLD

EPISODE_FIELDS = ("step", "return", "length", "rm_score", "kl_per_sequence", "kl_coef")
WINDOW = 100
STEP_KEY = "time/total_timesteps"  # SB3's name for the step in the logs


class EpisodeLog:
    """Every finished training episode: appended to ``episodes.csv`` as it finishes (a killed
    run keeps what it logged), and recorded to the logger under path-like names.

    :param path: the CSV file; rows already there (a resumed run's) are kept up to ``upto``
        (the step the run resumes from; the rows after it are played again) and the file is
        rewritten with them atomically before anything is appended.
    """

    def __init__(self, logger: Logger, path: Path, upto: int | None = None) -> None:
        self.logger = logger
        self.path = path
        kept = _csv_rows(path) if upto is not None and path.exists() else []
        kept = [row for row in kept if float(row["step"]) <= upto]
        self.rows: list[dict[str, float | None]] = [
            {key: float(value) if value != "" else None for key, value in row.items()}
            for row in kept
        ]
        write_csv(path, EPISODE_FIELDS, kept)
        self._file = open(path, "a", newline="")  # noqa: SIM115 (open for the run's length)
        self._writer = csv.DictWriter(self._file, fieldnames=EPISODE_FIELDS)

    def add(
        self,
        step: int,
        episode_return: float,
        length: int,
        rm_score: float | None = None,
        kl: float | None = None,
        kl_coef: float | None = None,
    ) -> None:
        row = dict(zip(EPISODE_FIELDS, (step, episode_return, length, rm_score, kl, kl_coef)))
        self.rows.append(row)
        self._writer.writerow(row)
        self._file.flush()
        self.logger.record_mean("charts/episodic_return", float(episode_return))
        self.logger.record_mean("charts/episode_length", float(length))
        if rm_score is not None:
            self.logger.record_mean("text/rm_score", float(rm_score))
            self.logger.record_mean("text/positive_share", float(rm_score > POSITIVE_THRESHOLD))
        if kl is not None:
            self.logger.record_mean("text/kl_per_sequence", float(kl))
        if kl_coef is not None:
            self.logger.record("text/kl_coef", float(kl_coef))

    def close(self) -> None:
        self._file.close()


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of ``episodes.csv``; a last line without its newline (the run was killed while
    writing it) is left out."""
    text = Path(path).read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def read_episodes(path: Path) -> dict[str, np.ndarray]:
    """``episodes.csv`` -> one float array per column (NaN where a value is missing)."""
    rows = _csv_rows(path)
    return {
        key: np.array([float(row[key]) if row[key] != "" else np.nan for row in rows])
        for key in EPISODE_FIELDS
    }


class ProgressCSV(KVWriter):
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


class TensorBoard(TensorBoardOutputFormat):
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
