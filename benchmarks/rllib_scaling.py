"""The GPT policy's training throughput on Ray RLlib (1 and 2 env runners) against the
single-process `SequencePPO`, same task and budget, in one command.

    python benchmarks/rllib_scaling.py                 # docs/rllib.md's figures (rllib extra)
    python benchmarks/rllib_scaling.py --updates 2     # a quick look

Each trainer runs ``--updates`` collect + update cycles of the zoo's settings for ``gpt`` on
TextGen-v0 (64 rows, 64 episodes of up to 24 tokens per update, 4 epochs); the first
``--warmup`` are left out. Printed: generated tokens (env steps) per second of training, and
each figure's ratio to `SequencePPO`'s, and for RLlib the share of an iteration its
learner's update takes (RLlib's ``learner_update_timer``). The trainers run one after the other
in this process (RLlib's runners in Ray actors), so a slow spell of the machine can tilt a
ratio: run it twice.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import textgym  # noqa: E402, F401  (registers the envs)
from textgym.runfiles import write_json  # noqa: E402


def sequence_ppo(updates: int, warmup: int) -> float:
    """`SequencePPO`'s tokens/s over the timed updates (collection + update)."""
    from textgym_agents.backends.sb3.zoo import make_agent

    agent = make_agent("gpt", "TextGen-v0", seed=0)
    timed = {"tokens": 0, "seconds": 0.0, "updates": 0}

    def callback(_, stats) -> bool:
        timed["updates"] += 1
        if timed["updates"] > warmup:
            timed["tokens"] += stats.tokens
            timed["seconds"] += stats.collect_seconds + stats.update_seconds
        return timed["updates"] < updates

    agent.learn(10**9, callback=callback)
    return timed["tokens"] / timed["seconds"]


def rllib(updates: int, warmup: int, runners: int) -> float:
    """RLlib PPO's tokens/s over the timed iterations (sampling + learner update)."""
    import ray

    from textgym_agents.backends.rllib import RLlibAgent, rllib_config

    ray.init(include_dashboard=False, log_to_driver=False)
    timed = {"tokens": 0, "seconds": 0.0, "update_seconds": 0.0}
    try:
        agent = RLlibAgent(rllib_config("TextGen-v0", "gpt", num_env_runners=runners))
        try:
            stats = []
            for _ in range(updates):
                agent.learn(1, callback=lambda _, s: stats.append(s))  # one iteration
            for iteration in stats[warmup:]:
                timed["tokens"] += iteration.env_steps
                timed["seconds"] += iteration.seconds
                timed["update_seconds"] += iteration.update_seconds
        finally:
            agent.close()
    finally:
        ray.shutdown()
    return timed["tokens"] / timed["seconds"], timed["update_seconds"] / timed["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"sequence_ppo": sequence_ppo(args.updates, args.warmup)}
    update_share = {}
    for runners in (1, 2):
        name = f"rllib_{runners}_runners"
        results[name], update_share[name] = rllib(args.updates, args.warmup, runners)
    base = results["sequence_ppo"]
    print(f"{'trainer':<28} {'tokens/s':>9} {'ratio':>7} {'update share':>13}")
    for name, rate in results.items():
        share = f"{update_share[name]:.0%}" if name in update_share else ""
        print(f"{name:<28} {rate:>9.1f} {rate / base:>7.2f} {share:>13}")
    if args.out:
        figures = {"tokens_per_second": results, "update_share": update_share}
        write_json(Path(args.out), {**figures, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
