"""How close a killed and resumed run ends to an uninterrupted one with the same seed.

For each case, three runs of ``textgym train`` (each its own process, as a user runs them):

- ``full``: uninterrupted, seed S;
- ``resumed``: seed S, killed with SIGKILL as soon as its checkpoint nearest the middle of the
  budget is complete, then continued with ``--resume``;
- ``other seed``: uninterrupted, seed S + 1: the run-to-run spread that a difference between
  ``full`` and ``resumed`` should be judged against.

A resumed run restores weights, optimizer, counters, replay buffer and RNG states exactly, but
its envs start afresh (the episodes in flight at the checkpoint are dropped), so it is not
bit-identical with ``full``. Prints one table row per run and figure.

    python scripts/resume_fidelity.py                      # GridWorld ppo + TextGen gpt
    python scripts/resume_fidelity.py --cases grid --seed 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    # name: (env, agent, steps, checkpoint_every, eval episodes)
    "grid": ("GridWorld-v0", "ppo", 200_000, 40_000, 100),  # the zoo's budget
    "text": ("TextGen-v0", "gpt", 40_000, 8_000, 100),
}
FIGURES = ("mean_return", "success_rate", "mean_rm_score", "mean_kl_per_sequence")


def command(case: str, seed: int, out: Path) -> list[str]:
    env, agent, steps, every, episodes = CASES[case]
    return [
        sys.executable,
        "-m",
        "textgym_agents.cli",
        "train",
        env,
        "--agent",
        agent,
        "--steps",
        str(steps),
        "--checkpoint-every",
        str(every),
        "--eval-episodes",
        str(episodes),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--no-progress",
    ]


def killed_and_resumed(case: str, seed: int, out: Path) -> int:
    """Run, SIGKILL once the checkpoint nearest the middle is complete, resume; the step the
    run was resumed from."""
    _, _, steps, every, _ = CASES[case]
    middle = round(steps / 2 / every) * every
    process = subprocess.Popen(command(case, seed, out), stdout=subprocess.DEVNULL)
    while True:
        states = [
            int(p.stem.removeprefix("step_")) for p in (out / "checkpoints").glob("step_*.json")
        ]
        if any(step >= middle for step in states):
            break
        if process.poll() is not None:
            raise RuntimeError(f"the run ended (rc {process.returncode}) before step {middle}")
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    subprocess.run([*command(case, seed, out), "--resume"], check=True, stdout=subprocess.DEVNULL)
    return max(states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="resume_fidelity-"))
    try:
        print("| case | run | " + " | ".join(FIGURES) + " | training steps, episodes |")
        print("|---|---|" + "---|" * (len(FIGURES) + 1))
        for case in args.cases:
            runs = {
                "full": root / f"{case}-full",
                "resumed": root / f"{case}-resumed",
                "other seed": root / f"{case}-other",
            }
            subprocess.run(
                command(case, args.seed, runs["full"]), check=True, stdout=subprocess.DEVNULL
            )
            at = killed_and_resumed(case, args.seed, runs["resumed"])
            subprocess.run(
                command(case, args.seed + 1, runs["other seed"]),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            for name, out in runs.items():
                summary = json.loads((out / "summary.json").read_text())
                cells = [
                    f"{summary[key]:+.3f}" if summary.get(key) is not None else "-"
                    for key in FIGURES
                ]
                training = summary["training"]
                label = f"resumed at step {at:,}" if name == "resumed" else name
                print(
                    f"| {case} | {label} | "
                    + " | ".join(cells)
                    + f" | {training['steps']:,}, {training['episodes']:,} |"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
