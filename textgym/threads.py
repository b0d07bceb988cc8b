"""How many CPU threads torch uses for a job.

Small models are best served by one thread: on a machine shared with a busy process torch's
default of one thread per core made training 6-17x slower, while on an idle machine more
threads gain less than 2x (`benchmarks/threads.py` measures both). Results also differ in the
last bits between thread counts, so a run records its count and a re-evaluation uses it again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Below this size (the largest model a job loads, in bytes of weight files on disk) one
# thread is the default. benchmarks/threads.py on 2 cores, GPT-2 models of 9-348 MB: a second
# thread made training 1.3-1.6x faster on an idle machine and 2-2.7x slower next to one busy
# process, at every size; one thread is also the count that reproduces on any machine.
ONE_THREAD_BELOW_BYTES = 400_000_000
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def model_bytes(source: str | os.PathLike | None) -> int | None:
    """The size of a model's weight files, or None when it is not a local directory (a Hub
    name, whose size is not known before download). ``None`` is the bundled model."""
    if source is None:
        from textgym.lm import BUNDLED_MODEL

        source = BUNDLED_MODEL
    path = Path(source)
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in _WEIGHT_SUFFIXES)


def default_threads(sources: Iterable[str | os.PathLike | None]) -> int:
    """One thread when every model in ``sources`` (None: the bundled one) is a local model
    under `ONE_THREAD_BELOW_BYTES`, else torch's default (one per core)."""
    sizes = [model_bytes(source) for source in sources]
    if all(size is not None and size < ONE_THREAD_BELOW_BYTES for size in sizes):
        return 1
    import torch

    return torch.get_num_threads()


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch threads (None: as they are) and restore the
    previous count afterwards; yields the count in force."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads={threads!r}: expected an integer >= 1")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
