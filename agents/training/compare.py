"""`textgym compare`: every agent on every env with every seed, then a table and curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import textgym  # noqa: F401  (registers the envs)
from textgym.runfiles import claim, write_csv, write_text
from textgym.threads import torch_threads
from textgym_agents.backends.hyperparams import RLLIB_AGENTS
from textgym_agents.backends.sb3.zoo import AGENTS, agent_env_kwargs
from textgym_agents.training.curves import plot_curves, reference_baseline, steps_to_threshold
from textgym_agents.training.evaluation import (
    evaluate_reference,
)
from textgym_agents.training.logs import read_episodes
from textgym_agents.training.rundir import EVAL_SEED_OFFSET
from textgym_agents.training.train import train

__all__ = ["THRESHOLDS", "compare"]

# Training return (mean of the last `WINDOW` episodes) that counts as "solved" in `compare`:
# GridWorld, the diamond in nearly every episode (v0 returns +1 for it; v1's shaped shortest
# route returns 0.823: +1, less the start's potential 0.167 and 0.010 of discounting);
# TextGen, well above the reference policy's return (its mean RM score: +0.11 in vocab mode,
# +0.24 among the top-10 tokens).
THRESHOLDS = {"GridWorld-v1": 0.7, "GridWorld-v0": 0.9, "TextGen-v0": 0.4}


def compare(
    env_ids: Sequence[str],
    agents: Sequence[str],
    seeds: Sequence[int],
    *,
    out: str | Path,
    steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    eval_episodes: int = 100,
    progress: bool = True,
    threads: int | None = None,
) -> str:
    """`textgym compare`: every agent on every env with every seed, then a table.

    Writes under ``out``: one run directory per (env, agent, seed), ``compare.csv`` (one row
    per run), ``compare.md`` (the Markdown table, also returned) and ``curves_<env>.png``.
    Runs already in ``out`` (made with the same arguments) are reused and unfinished ones
    resumed (`train`'s ``resume``): a killed compare, started again, goes on where it stopped.
    On TextGen the reference policy gets rows too (`evaluate_reference`, per action mode):
    the return to beat.

    :param steps: budget of every run (default: each agent's zoo budget on each env).
    :param env_kwargs: env arguments for every run, on top of each agent's.
    :param threads: torch threads of every run (default: as they are).

    An agent named ``rllib:NAME`` trains on Ray RLlib (``train(..., backend="rllib")``, two
    env runners), so both backends stand side by side in one table.
    """
    for agent in agents:
        backend, name = split_backend(agent)
        if name not in (AGENTS if backend == "sb3" else RLLIB_AGENTS):
            raise ValueError(
                f"agents: {agent!r} is unknown: expected names from {AGENTS}, or "
                f"rllib:NAME with NAME from {RLLIB_AGENTS} (Ray RLlib's PPO)"
            )
    out = Path(out)
    with claim(out):
        rows = []
        for env_id in env_ids:
            curves: dict[str, list[dict[str, np.ndarray]]] = {}
            for agent in agents:
                for seed in seeds:
                    backend, name = split_backend(agent)
                    run_dir = out / env_id / agent.replace(":", "-") / f"seed_{seed}"
                    if progress:
                        print(f"== {env_id} {agent} seed {seed} -> {run_dir}", flush=True)
                    summary = train(
                        env_id,
                        name,
                        backend=backend,
                        steps=steps,
                        seed=seed,
                        env_kwargs=env_kwargs,
                        out=run_dir,
                        progress=progress,
                        eval_episodes=eval_episodes,
                        threads=threads,
                        resume=True,  # a compare started again goes on where it stopped
                    )
                    episodes = read_episodes(run_dir / "episodes.csv")
                    curves.setdefault(agent, []).append(episodes)
                    rows.append(
                        {
                            "env_id": env_id,
                            "agent": agent,
                            "seed": seed,
                            "steps": summary["training"]["steps"],
                            "final_return": summary["mean_return"],
                            "steps_to_threshold": steps_to_threshold(episodes, THRESHOLDS[env_id]),
                            "wall_seconds": summary["training"]["wall_seconds"],
                            "mean_rm_score": summary.get("mean_rm_score"),
                            "mean_kl_per_sequence": summary.get("mean_kl_per_sequence"),
                            "success_rate": summary.get("success_rate"),
                        }
                    )
            baselines = {}
            if env_id.startswith("TextGen"):
                with torch_threads(threads):
                    references = _reference_rows(agents, seeds, env_kwargs, eval_episodes)
                rows += references
                for row in references:  # the mean over seeds, per action mode
                    group = [other for other in references if other["agent"] == row["agent"]]
                    baselines[row["agent"]] = reference_baseline(
                        np.mean([other["final_return"] for other in group]),
                        np.mean([other["mean_rm_score"] for other in group]),
                    )
            plot_curves(curves, out / f"curves_{env_id}.png", title=env_id, baselines=baselines)
        write_csv(out / "compare.csv", list(rows[0]), rows)
        table = _markdown_table(rows)
        write_text(out / "compare.md", table)
        return table


def split_backend(agent: str) -> tuple[str, str]:
    """``"rllib:gpt"`` -> ``("rllib", "gpt")``; a plain name is the SB3 backend's."""
    backend, _, name = agent.rpartition(":")
    if backend not in ("", "rllib"):
        raise ValueError(f"agents: {agent!r} names backend {backend!r}: expected rllib:NAME")
    return backend or "sb3", name


def _reference_rows(
    agents: Sequence[str], seeds: Sequence[int], env_kwargs: dict | None, episodes: int
) -> list[dict[str, Any]]:
    """The reference policy on TextGen, once per action mode the agents used (its return is
    the baseline they must beat; it differs between modes because "topk" renormalises)."""
    modes = {
        agent_env_kwargs(split_backend(agent)[1], "TextGen-v0", env_kwargs).get(
            "action_mode", "vocab"
        )
        for agent in agents
    }
    rows = []
    for mode in sorted(modes):
        kwargs = {**(env_kwargs or {}), "action_mode": mode}
        for seed in seeds:
            result = evaluate_reference(episodes, seed + EVAL_SEED_OFFSET, kwargs)
            rows.append(
                {
                    "env_id": "TextGen-v0",
                    "agent": f"reference ({mode})",
                    "seed": seed,
                    "steps": 0,
                    "final_return": result["mean_return"],
                    "steps_to_threshold": None,
                    "wall_seconds": 0.0,
                    "mean_rm_score": result["mean_rm_score"],
                    "mean_kl_per_sequence": result["mean_kl_per_sequence"],
                    "success_rate": None,
                }
            )
    return rows


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per (env, agent): mean +- std over seeds of the final return, the steps to
    reach the env's threshold (over the seeds that did), the wall time."""
    lines = [
        "| env | agent | seeds | final return | steps to threshold | wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((row["env_id"], row["agent"]) for row in rows))
    for env_id, agent in keys:
        group = [row for row in rows if (row["env_id"], row["agent"]) == (env_id, agent)]
        returns = np.array([row["final_return"] for row in group])
        reached = [row["steps_to_threshold"] for row in group if row["steps_to_threshold"]]
        if agent.startswith("reference"):
            to_threshold = "(no training)"
        elif reached:
            to_threshold = (
                f"{np.mean(reached):,.0f} ({len(reached)}/{len(group)} reached "
                f"{THRESHOLDS[env_id]:g})"
            )
        else:
            to_threshold = f"not reached ({THRESHOLDS[env_id]:g})"
        wall = np.mean([row["wall_seconds"] for row in group])
        lines.append(
            f"| {env_id} | {agent} | {len(group)} | {returns.mean():+.3f} ± {returns.std():.3f} "
            f"| {to_threshold} | {wall:.0f} |"
        )
    return "\n".join(lines) + "\n"
