"""Files of long jobs: written atomically, and one job per output directory.

A job killed at any moment (``kill -9``, a full disk, a lost node) leaves every file it wrote
either as it was before or complete under its final name, never truncated: `atomic_path`
hands out a temporary name beside the target and renames it over the target once the write
succeeded. `claim` makes a job the only writer of its output directory: a second job on the
same directory stops at once with a message naming it, instead of interleaving its files.
The claim is an advisory lock (``flock``) that the operating system drops when the process
dies, so a killed job never leaves a stale claim behind. The owner removes the lock file while
it still holds the lock, so a process that opened the file before it was removed may lock it
afterwards: a lock counts only while the path still names the file locked, which every
claimer checks after locking (and otherwise starts over on the path's new file).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DirectoryBusyError",
    "atomic_path",
    "claim",
    "write_csv",
    "write_json",
    "write_text",
]

LOCK_NAME = ".textgym.lock"


class DirectoryBusyError(FileExistsError):
    """Another process holds the claim on an output directory."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the body ends
    without an error, removed when it raises. The suffix is kept (``model.tmp-ab12.zip``), so
    writers that pick a format by suffix (matplotlib, SB3) still do."""
    path = Path(path)
    temp = path.with_name(f"{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield temp
        if temp.exists():
            with open(temp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def write_csv(
    path: str | os.PathLike, fieldnames: Sequence[str], rows: Iterable[dict], **options: Any
) -> None:
    """Write ``rows`` under a header of ``fieldnames`` to ``path`` atomically (``options``:
    `csv.DictWriter`'s, e.g. ``restval``, ``extrasaction``)."""
    with atomic_path(path) as temp, open(temp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, **options)
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def claim(
    directory: str | os.PathLike, argument: str = "out", *, beside: bool = False
) -> Iterator[Path]:
    """Hold the only claim on ``directory`` for the body.

    :param argument: the argument that named the directory, for the error message.
    :param beside: keep the lock file beside ``directory`` (``.<name>.textgym.lock``) rather
        than in it (``.textgym.lock``), for a directory that must stay empty until it is
        replaced as a whole; ``directory`` itself is then not created. The lock file is
        removed when the body ends.
    :raises DirectoryBusyError: when another live process holds the claim.
    """
    directory = Path(directory)
    if beside:
        directory.parent.mkdir(parents=True, exist_ok=True)
        lock_path = directory.parent / f".{directory.name}.textgym.lock"
    else:
        directory.mkdir(parents=True, exist_ok=True)
        lock_path = directory / LOCK_NAME
    fd = _claim_file(lock_path, f"{argument}={str(directory)!r}")
    try:
        yield directory
    finally:
        try:
            lock_path.unlink(missing_ok=True)  # while still held: no one else has it
        finally:
            os.close(fd)  # closing drops the lock


def _claim_file(path: Path, what: str) -> int:
    """Open ``path`` (created if missing) and lock it; the open, locked descriptor. A file
    that the path no longer names once locked (its owner removed it meanwhile) is let go and
    the path opened anew."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd, what)
            if _names(path, fd):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` names the file open as ``fd``."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


def _lock(fd: int, what: str) -> None:
    import fcntl  # POSIX; the envs themselves do not need it

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        raise DirectoryBusyError(
            f"{what} is in use by another textgym process (pid {holder}): expected a "
            "directory no other run is writing to; wait for it to finish or choose another"
        ) from None
