"""Where a second torch thread starts to pay: GPT training speed with 2 threads / 1 thread.

    python benchmarks/threads.py                    # 2.3M, 10M, 30M, 85M parameters, ~3-6 min
    python benchmarks/threads.py --busy             # the same with a busy neighbour process
    python benchmarks/threads.py --sizes 0.3M,2.3M  # other sizes (names: see SIZES)
    python benchmarks/threads.py --rows 64 --n_epochs 4   # the zoo's update (slower)

For each size a random-weight GPT-2 (the bundled model's vocabulary of 2,356 tokens, 128
positions) is saved to a temporary folder and trained by the real sequence-level trainer
(`SequencePPO`, the zoo's ``gpt`` agent on ``TextGen-v0`` with ``model=<that folder>``). The
timed unit is one update: ``rows`` episodes of 24 tokens collected (the policy's and the
frozen reference's KV-cached forwards) plus ``n_epochs`` epochs of PPO on them (minibatches of
16 episodes, like the zoo). Units run with ``torch.set_num_threads(1)`` and ``(2)`` in turn
(1, 2, 2, 1, 1, 2, ...) in one process, so a slow spell of the shared machine hits both
alike; the figure is the ratio of the median speeds, speed(2 threads) / speed(1 thread).
``--busy`` starts one ``python -c "while True: pass"`` process for the duration (and kills
it): the case of the issue, training on a 2-core machine next to another busy process.

Absolute times on shared machines drift; ratios measured back to back in one process hold.
Nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import textgym

# name -> (layers, width, heads); parameters with the 2,356-token vocabulary, tied embeddings.
SIZES: dict[str, tuple[int, int, int]] = {
    "0.3M": (2, 64, 2),  # smaller than anything shipped (not in the default run): 0.26M
    "2.3M": (4, 192, 4),  # the bundled model's shape: 2.26M parameters
    "10M": (5, 384, 6),  # 9.83M
    "30M": (9, 512, 8),  # 29.6M
    "85M": (12, 768, 12),  # 87.0M (GPT-2 small's trunk)
}
DEFAULT_SIZES = "2.3M,10M,30M,85M"


@dataclass
class Args:
    """Benchmark settings."""

    sizes: str = DEFAULT_SIZES  # comma-separated names from SIZES
    busy: bool = False  # run a busy `while True: pass` process alongside
    repeats: int = 3  # timed units per thread count (medians are kept)
    rows: int = 16  # parallel rows = episodes per update
    n_epochs: int = 2  # PPO epochs per update (minibatches of 16 episodes)


def build_model(folder: Path, layers: int, width: int, heads: int) -> int:
    """A random-weight GPT-2 of the given shape, saved with the bundled tokenizer; its
    parameter count."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    bundled = Path(textgym.__file__).parent / "assets" / "model"
    config = GPT2Config.from_pretrained(bundled)
    config.n_layer, config.n_embd, config.n_head = layers, width, heads
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(bundled / name, folder)
    return sum(p.numel() for p in model.parameters())


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (steal included) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _pid_cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores kept busy by processes other than this one (and the ``--busy`` neighbour) while
    the block runs: other users of a shared machine (Linux only; NaN elsewhere)."""

    def __init__(self, neighbour: int | None = None) -> None:
        self.neighbour, self.cores = neighbour, float("nan")

    def _sample(self) -> tuple[float, float, float]:
        own = time.process_time() + _pid_cpu_seconds(self.neighbour)
        return time.perf_counter(), _busy_cpu_seconds(), own

    def __enter__(self) -> OtherLoad:
        try:
            self._start = self._sample()
        except (OSError, ValueError):
            self._start = None
        return self

    def __exit__(self, *exc) -> None:
        if self._start is not None:
            wall, busy, own = (b - a for a, b in zip(self._start, self._sample()))
            self.cores = max(0.0, (busy - own) / wall)


def measure(args: Args, name: str, folder: Path, neighbour: int | None = None) -> dict:
    """Median seconds per training update with 1 and with 2 torch threads, interleaved."""
    import torch

    from textgym_agents.backends.sb3.zoo import make_agent

    layers, width, heads = SIZES[name]
    params = build_model(folder, layers, width, heads)
    size_bytes = (folder / "model.safetensors").stat().st_size
    agent = make_agent(
        "gpt",
        "TextGen-v0",
        n_envs=args.rows,
        env_kwargs={"model": str(folder)},
        episodes_per_update=args.rows,
        minibatch_episodes=min(16, args.rows),
        n_epochs=args.n_epochs,
    )

    def one_update(threads: int) -> tuple[float, int]:
        torch.set_num_threads(threads)
        start, tokens = time.perf_counter(), agent.num_timesteps
        agent.learn(10**9, callback=lambda *_: False)  # stops after one update
        return time.perf_counter() - start, agent.num_timesteps - tokens

    one_update(1), one_update(2)  # warm-up: first forwards, allocator, the OpenMP pool
    times: dict[int, list[float]] = {1: [], 2: []}
    tokens: dict[int, list[int]] = {1: [], 2: []}
    order = [1, 2, 2, 1] * ((args.repeats + 1) // 2)  # ABBA: a linear drift cancels
    with OtherLoad(neighbour) as others:
        for threads in order[: 2 * args.repeats]:
            seconds, counted = one_update(threads)
            times[threads].append(seconds)
            tokens[threads].append(counted)
    agent.env.close()
    speed = {t: float(np.median(np.array(tokens[t]) / np.array(times[t]))) for t in (1, 2)}
    return {
        "shape": f"{layers}x{width}",
        "params": params,
        "safetensors_mb": size_bytes / 1e6,
        "tokens_per_update": int(np.median(tokens[1] + tokens[2])),
        "seconds_1": float(np.median(times[1])),
        "seconds_2": float(np.median(times[2])),
        "ratio": speed[2] / speed[1],
        "ratios_each": [a / b for a, b in zip(times[1], times[2])],
        "other_cores": others.cores,
    }


def table(results: dict[str, dict]) -> str:
    rows = [
        "| model | layers x width | params | safetensors | s/update, 1 thread "
        "| s/update, 2 threads | speed(2) / speed(1) | per pair | others' load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        pairs = " ".join(f"{x:.2f}" for x in r["ratios_each"])
        rows.append(
            f"| {name} | {r['shape']} | {r['params'] / 1e6:.2f}M | {r['safetensors_mb']:.1f} MB "
            f"| {r['seconds_1']:.2f} | {r['seconds_2']:.2f} | **{r['ratio']:.2f}** | {pairs} "
            f"| {r['other_cores']:.2f} cores |"
        )
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Args()).items():
        if isinstance(default, bool):
            parser.add_argument(f"--{name}", action="store_true")
        else:
            parser.add_argument(f"--{name}", type=type(default), default=default)
    args = Args(**vars(parser.parse_args(argv)))
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown {unknown}; expected names from {list(SIZES)}")
    if args.repeats < 1 or args.rows < 1 or args.n_epochs < 1:
        parser.error("--repeats, --rows and --n_epochs must be >= 1")

    import torch

    warnings.simplefilter("ignore")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    default_threads = torch.get_num_threads()
    neighbour = None
    if args.busy:
        neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)  # let it get going
    results, start = {}, time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="textgym-threads-") as tmp:
            for name in names:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                folder = Path(tmp) / name
                pid = neighbour.pid if neighbour is not None else None
                results[name] = measure(args, name, folder, pid)
                shutil.rmtree(folder)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
        torch.set_num_threads(default_threads)
    print(
        f"CPUs: {len(os.sched_getaffinity(0))} (torch default {default_threads} threads), "
        f"torch {torch.__version__}; busy neighbour: {'yes' if args.busy else 'no'}; "
        f"update = {args.rows} episodes x 24 tokens, {args.n_epochs} epochs; "
        f"median of {args.repeats} per thread count; {time.perf_counter() - start:.0f} s. "
        "per pair: time(1) / time(2) of each interleaved pair; others' load: cores used by "
        "other processes (not this one, not the neighbour) during the timed units"
    )
    print(table(results))


if __name__ == "__main__":
    main()
