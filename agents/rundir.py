"""A run directory: what `textgym_agents.train.train` writes and `textgym eval` reads.

A run directory holds everything a run made, so scripts can read it back::

    config.json    env id, agent, seed, budget, env arguments (what `load_agent` needs)
    model.zip      the trained agent (SB3's format; the GPT policy's for ``gpt`` on TextGen)
    summary.json   the summary printed at the end (`evaluate` before and after training)
    episodes.csv   every training episode: step, return, length, rm_score, kl, kl_coef
    curve.png      the learning curve (TextGen: also the RM score and the KL per sequence)
    checkpoints/   the agent every ``--checkpoint-every`` steps
    logs/          TensorBoard events and progress.csv: charts/episodic_return,
                   charts/episode_length, text/rm_score, text/positive_share,
                   text/kl_per_sequence, text/kl_coef, train/..., time/...

```python
from textgym_agents.train import train

summary = train("GridWorld-v0", "ppo", seed=0, out="runs/grid-ppo")
print(summary["after"]["success_rate"])
```
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import Logger

import textgym  # noqa: F401  (registers the envs)
from textgym_agents.evaluation import (
    POSITIVE_THRESHOLD,
)
from textgym_agents.gpt_policy import GPTActorCriticPolicy
from textgym_agents.zoo import ALGORITHMS, is_sequence_agent

EPISODE_FIELDS = ("step", "return", "length", "rm_score", "kl_per_sequence", "kl_coef")

WINDOW = 100

EVAL_SEED_OFFSET = 10_000  # evaluation seeds are held out from training seeds

SAMPLES = 4


class EpisodeLog:
    """Every finished training episode, also recorded to the logger under path-like names."""

    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.rows: list[dict[str, float | None]] = []

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
        self.logger.record_mean("charts/episodic_return", float(episode_return))
        self.logger.record_mean("charts/episode_length", float(length))
        if rm_score is not None:
            self.logger.record_mean("text/rm_score", float(rm_score))
            self.logger.record_mean("text/positive_share", float(rm_score > POSITIVE_THRESHOLD))
        if kl is not None:
            self.logger.record_mean("text/kl_per_sequence", float(kl))
        if kl_coef is not None:
            self.logger.record("text/kl_coef", float(kl_coef))

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EPISODE_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)


def read_episodes(path: Path) -> dict[str, np.ndarray]:
    """``episodes.csv`` -> one float array per column (NaN where a value is missing)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        key: np.array([float(row[key]) if row[key] != "" else np.nan for row in rows])
        for key in EPISODE_FIELDS
    }


def default_out(env_id: str, agent: str, seed: int) -> Path:
    return Path("runs") / f"{env_id}-{agent}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def make_summary(
    config: dict[str, Any], after: dict[str, Any], before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The headline numbers (after training) first, then the full evaluations."""
    headline = (
        "mean_return",
        "std_return",
        "success_rate",
        "mean_rm_score",
        "positive_share",
        "mean_kl_per_sequence",
    )
    summary: dict[str, Any] = {key: config[key] for key in ("env_id", "agent", "seed", "steps")}
    summary.update({key: after[key] for key in headline if key in after})
    if before is not None:
        summary["before"] = before
    summary["after"] = after
    return summary


def load_agent(run_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """The trained agent of a run directory and its ``config.json``.

    SB3 agents come back as their algorithm class; ``gpt`` on TextGen as its
    `GPTActorCriticPolicy` (what acts; the trainer's state is not needed to evaluate).
    """
    run_dir = Path(run_dir)
    config_path, model_path = run_dir / "config.json", run_dir / "model.zip"
    for path in (config_path, model_path):
        if not path.exists():
            raise FileNotFoundError(
                f"run_dir={str(run_dir)!r} has no {path.name}: expected a directory made by "
                "`textgym train` that finished training"
            )
    config = json.loads(config_path.read_text())
    if is_sequence_agent(config["agent"], config["env_id"]):
        return GPTActorCriticPolicy.load(str(model_path)), config
    return ALGORITHMS[config["agent"]].load(str(model_path)), config


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the text ``textgym train`` and ``eval`` print."""
    lines = [f"{summary['agent']} on {summary['env_id']} (seed {summary['seed']})"]
    if "training" in summary:
        t = summary["training"]
        lines.append(
            f"trained {t['steps']:,} steps ({t['episodes']:,} episodes) in "
            f"{t['wall_seconds']:.0f} s, {t['steps_per_second']:.0f} steps/s"
        )
    stages = [("reference", summary["reference"])] if "reference" in summary else []
    if "before" in summary:
        stages.append(("before", summary["before"]))
    if "imitation" in summary:
        stages.append(("cloned", summary["imitation"]["evaluation"]))
    stages.append(("after" if "before" in summary else "eval", summary["after"]))
    for name, result in stages:
        parts = [f"mean return {result['mean_return']:+.3f} ± {result['std_return']:.3f}"]
        if "success_rate" in result:
            parts.append(f"success {result['success_rate']:.0%}")
        if "mean_rm_score" in result:
            parts.append(f"RM score {result['mean_rm_score']:+.3f}")
            parts.append(f"positive {result['positive_share']:.0%}")
        if "mean_kl_per_sequence" in result:
            parts.append(f"KL/sequence {result['mean_kl_per_sequence']:.2f} nats")
        acting = {True: ", greedy", False: ", sampled"}.get(result.get("deterministic"), "")
        lines.append(f"{name:>9} ({result['episodes']} episodes{acting}): " + ", ".join(parts))
        for sample in result.get("samples", []):
            kl = sample.get("episode_kl")
            kl_text = f", KL {kl:.2f}" if kl is not None else ""
            lines.append(
                f"    {sample['prompt']!r} -> {sample['text']!r} "
                f"(RM {sample['rm_score']:+.2f}{kl_text})"
            )
    return "\n".join(lines)
