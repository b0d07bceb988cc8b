"""`textgym.runfiles.claim`: one owner per directory, also when a claimer stalls between
opening the lock file and locking it (threads: ``flock`` locks of separate opens conflict
within one process as across processes)."""

from __future__ import annotations

import contextlib
import random
import threading

from textgym import runfiles
from textgym.runfiles import LOCK_NAME, DirectoryBusyError, claim


class _Owners:
    """Who is inside a claim's body now, and the most at once."""

    def __init__(self) -> None:
        self.now: set[str] = set()
        self.most = 0
        self.guard = threading.Lock()

    @contextlib.contextmanager
    def inside(self, name: str):
        with self.guard:
            self.now.add(name)
            self.most = max(self.most, len(self.now))
        try:
            yield
        finally:
            with self.guard:
                self.now.discard(name)


def test_a_claimer_stalled_before_locking_does_not_become_a_second_owner(tmp_path, monkeypatch):
    """B opens the lock file and stalls; the owner A finishes (removing the file); C claims
    the directory anew; then B locks the file it opened, which the path no longer names. B is
    refused: C owns the directory, and no two owners exist at any time."""
    out = tmp_path / "run"
    opened, resume = threading.Event(), threading.Event()
    lock = runfiles._lock
    stalled = []

    def stall_b_once(fd, what):
        if threading.current_thread().name == "B" and not stalled:
            stalled.append(fd)
            opened.set()
            assert resume.wait(30)
        lock(fd, what)

    monkeypatch.setattr(runfiles, "_lock", stall_b_once)
    owners, outcome = _Owners(), {}

    def claim_b():
        try:
            with claim(out), owners.inside("B"):
                outcome["B"] = "owner"
        except DirectoryBusyError as err:
            outcome["B"] = str(err)

    b = threading.Thread(target=claim_b, name="B")
    with claim(out), owners.inside("A"):
        b.start()
        assert opened.wait(30)  # B holds A's lock file open, not locked
    with claim(out), owners.inside("C"):
        resume.set()
        b.join(30)
        assert not b.is_alive()
        assert owners.most == 1, outcome
        assert "is in use by another textgym process" in outcome["B"]
    assert not (out / LOCK_NAME).exists()
    with claim(out):  # nobody holds it now
        pass


def test_at_most_one_owner_at_a_time_under_contention_with_stalls(tmp_path, monkeypatch):
    """Threads claim one directory over and over, each stalling at random between opening the
    lock file and locking it: never two owners at once, and every claim ends as an owner or
    refused."""
    out = tmp_path / "run"
    lock = runfiles._lock

    def stall(fd, what):
        rng = random.Random(threading.get_ident() ^ fd)
        threading.Event().wait(rng.random() * 0.002)
        lock(fd, what)

    monkeypatch.setattr(runfiles, "_lock", stall)
    owners, owned, errors = _Owners(), [], []

    def worker(name: str) -> None:
        for _ in range(60):
            try:
                with claim(out), owners.inside(name):
                    owned.append(name)
                    threading.Event().wait(0.0005)
            except DirectoryBusyError:
                pass
            except Exception as err:  # noqa: BLE001  (reported below)
                errors.append(err)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and owned
    assert owners.most == 1
    assert not (out / LOCK_NAME).exists()
