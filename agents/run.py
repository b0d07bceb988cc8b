"""Training runs behind ``textgym train``, ``textgym eval`` and ``textgym compare``.

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
from textgym_agents.run import train

summary = train("GridWorld-v0", "ppo", seed=0, out="runs/grid-ppo")
print(summary["after"]["success_rate"])
```
"""

from __future__ import annotations

import csv
import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from tqdm.auto import tqdm

from textgym._checks import check_int
from textgym.threads import torch_threads
from textgym_agents.gpt_policy import GPTActorCriticPolicy
from textgym_agents.imitation import clone_expert
from textgym_agents.sequence_ppo import SequencePPO, UpdateStats
from textgym_agents.zoo import (
    AGENTS,
    ALGORITHMS,
    POSITIVE_THRESHOLD,
    TextEpisode,
    agent_env_kwargs,
    default_budget,
    default_imitation,
    evaluate,
    evaluate_reference,
    is_sequence_agent,
    make_agent,
    play_text,
    torch_seeded,
)

__all__ = [
    "THRESHOLDS",
    "EpisodeLog",
    "compare",
    "evaluate_run",
    "load_agent",
    "play_run",
    "plot_curves",
    "steps_to_threshold",
    "train",
]

EPISODE_FIELDS = ("step", "return", "length", "rm_score", "kl_per_sequence", "kl_coef")
# Training return (mean of the last `WINDOW` episodes) that counts as "solved" in `compare`:
# GridWorld, the diamond in nearly every episode; TextGen, well above the reference policy's
# return (its mean RM score: +0.11 in vocab mode, +0.24 among the top-10 tokens).
THRESHOLDS = {"GridWorld-v0": 0.9, "TextGen-v0": 0.4}
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


def _rolling(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Mean of the last ``window`` values at every index (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(0, idx - window)
    return (sums[idx] - sums[start]) / (idx - start)


def steps_to_threshold(episodes: dict[str, np.ndarray], threshold: float) -> int | None:
    """The first step at which the mean return of the last `WINDOW` episodes reaches
    ``threshold`` (at least `WINDOW` episodes in), or None if it never does."""
    returns = episodes["return"]
    if len(returns) < WINDOW:
        return None
    reached = np.flatnonzero(_rolling(returns)[WINDOW - 1 :] >= threshold)
    return int(episodes["step"][WINDOW - 1 + reached[0]]) if reached.size else None


class _Recorder:
    """Progress bar, episode log and periodic checkpoints of one run, for either trainer."""

    def __init__(self, out: Path, total: int, checkpoint_every: int, progress: bool) -> None:
        self.logger = configure(str(out / "logs"), ["tensorboard", "csv"])
        self.log = EpisodeLog(self.logger)
        self.checkpoints = out / "checkpoints"
        self.checkpoint_every = checkpoint_every
        self.next_checkpoint = checkpoint_every
        self.bar = tqdm(
            total=total, unit="step", disable=not progress, dynamic_ncols=True, mininterval=0.5
        )

    def advance(self, step: int, save) -> None:
        if step > self.bar.total:  # SB3 finishes its last rollout past the budget
            self.bar.total = step
        self.bar.update(step - self.bar.n)
        if self.log.rows:
            recent = [row["return"] for row in self.log.rows[-WINDOW:]]
            self.bar.set_postfix(ret=f"{np.mean(recent):+.3f}", refresh=False)
        if self.checkpoint_every and step >= self.next_checkpoint:
            self.checkpoints.mkdir(exist_ok=True)
            save(self.checkpoints / f"step_{step}.zip")
            self.next_checkpoint = (step // self.checkpoint_every + 1) * self.checkpoint_every

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


class _SB3Callback(BaseCallback):
    """Feeds SB3's finished episodes (``infos[i]["episode"]``, VecMonitor's) to a `_Recorder`."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

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
        self.recorder.advance(self.num_timesteps, self.model.save)
        return True


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
        logger.record("time/total_timesteps", stats.timesteps)  # SB3's name for the step
        logger.dump(stats.timesteps)
        recorder.advance(stats.timesteps, trainer.save)

    return callback


def train(
    env_id: str,
    agent: str,
    *,
    steps: int | None = None,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    checkpoint_every: int | None = None,
    eval_episodes: int = 100,
    n_envs: int | None = None,
    imitate: int | None = None,
    threads: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train ``agent`` on ``env_id`` into a run directory and return (and save) its summary.

    The agent is evaluated before and after training on the same held-out seed
    (``seed + 10000``), so the samples before and after start from the same prompts. The
    evaluation after training also seeds the agent's sampling with that seed, so
    `evaluate_run` reproduces it exactly. On TextGen the summary's ``reference`` holds the
    reference policy's evaluation on the same seed: the baseline to beat.

    :param env_id: ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    :param agent: a name from `textgym_agents.zoo.AGENTS`.
    :param steps: env steps to train (default: the zoo's budget, `default_budget`).
    :param seed: seeds the agent and the training env.
    :param env_kwargs: env arguments on top of the agent's (`agent_env_kwargs`).
    :param out: the run directory (default ``runs/<env>-<agent>-s<seed>-<time>``); it must
        not hold a previous run.
    :param progress: show a progress bar.
    :param checkpoint_every: save the agent every this many steps (default: 5 times a run).
    :param eval_episodes: episodes of each evaluation.
    :param n_envs: parallel envs (default: the zoo's).
    :param imitate: env steps of expert demonstrations to clone before RL (default: the zoo's,
        `default_imitation`; 0: none; `textgym_agents.imitation.clone_expert`: GridWorld's shortest
        paths, SB3 actor-critic agents).
        The summary's ``imitation`` holds the cloning's figures and an evaluation after it.
    :param threads: torch threads for the run (default: as they are); recorded in
        ``config.json`` either way, since results differ in the last bits between counts.
    :param overrides: algorithm keywords replacing the zoo's.
    """
    with torch_threads(threads) as threads:
        if agent not in AGENTS:
            raise ValueError(f"agent={agent!r} is unknown: expected one of {AGENTS}")
        env_kwargs = agent_env_kwargs(agent, env_id, env_kwargs)
        steps = default_budget(agent, env_id, env_kwargs) if steps is None else steps
        check_int("steps", steps, 1)
        out = Path(out) if out is not None else _default_out(env_id, agent, seed)
        if (out / "config.json").exists():
            raise FileExistsError(
                f"out={str(out)!r} already holds a run (config.json): expected a new or empty "
                "directory, so no earlier run is overwritten"
            )
        imitate = default_imitation(agent, env_id, env_kwargs) if imitate is None else imitate
        check_int("imitate", imitate, 0)
        config = {
            "env_id": env_id,
            "agent": agent,
            "seed": seed,
            "steps": steps,
            "env_kwargs": env_kwargs,
            "n_envs": n_envs,
            "imitate": imitate,
            "eval_episodes": eval_episodes,
            "threads": threads,
            "overrides": {k: v for k, v in overrides.items() if _jsonable(v)},
        }
        # Bad env arguments or overrides fail here, before the run directory is claimed.
        model = make_agent(
            agent, env_id, seed=seed, n_envs=n_envs, env_kwargs=env_kwargs, **overrides
        )
        if imitate and not isinstance(model, OnPolicyAlgorithm):
            raise ValueError(
                f"imitate={imitate} needs an SB3 actor-critic agent (ppo, a2c, maskable_ppo, or "
                f"gpt on GridWorld-v0): agent={agent!r} on {env_id} is not one"
            )
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        # The same held-out seed before and after: the same prompts (or maps) both times.
        eval_seed = seed + EVAL_SEED_OFFSET
        assess = functools.partial(
            evaluate,
            env_id=env_id,
            episodes=eval_episodes,
            seed=eval_seed,
            env_kwargs=env_kwargs,
            samples=SAMPLES,
        )
        before = assess(model)
        imitation = None
        if imitate:
            imitation = clone_expert(model, imitate, seed=seed, progress=progress)
            imitation["evaluation"] = assess(model)
        every = checkpoint_every if checkpoint_every is not None else max(1, steps // 5)
        recorder = _Recorder(out, steps, every, progress)
        start = time.perf_counter()
        try:
            if isinstance(model, SequencePPO):
                model.learn(steps, callback=_sequence_callback(recorder))
            else:
                model.set_logger(recorder.logger)
                model.learn(steps, callback=_SB3Callback(recorder))
        finally:
            recorder.close()
        seconds = time.perf_counter() - start
        model.save(out / "model.zip")
        recorder.log.write_csv(out / "episodes.csv")
        with torch_seeded(eval_seed):  # what `evaluate_run` repeats
            after = assess(model)
        summary = _summary(config, after, before=before)
        baselines = None
        if env_id.startswith("TextGen"):
            reference = evaluate_reference(eval_episodes, eval_seed, env_kwargs)
            summary["reference"] = reference
            baselines = {
                "reference": _baseline(reference["mean_return"], reference["mean_rm_score"])
            }
        if imitation is not None:
            summary["imitation"] = imitation
        summary["training"] = {
            "steps": int(model.num_timesteps),
            "episodes": len(recorder.log.rows),
            "wall_seconds": round(seconds, 1),
            "steps_per_second": round(model.num_timesteps / seconds, 1),
            f"final_return_mean_last_{WINDOW}": _last_mean(recorder.log.rows, "return"),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_curves(
            {f"{agent} seed {seed}": read_episodes(out / "episodes.csv")},
            out / "curve.png",
            title=f"{agent} on {env_id}",
            baselines=baselines,
        )
        return summary


def _default_out(env_id: str, agent: str, seed: int) -> Path:
    return Path("runs") / f"{env_id}-{agent}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _last_mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows[-WINDOW:] if row[key] is not None]
    return round(float(np.mean(values)), 4) if values else None


def _summary(
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


def evaluate_run(
    run_dir: str | Path,
    episodes: int | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """`textgym eval`: the summary of a saved agent, evaluated afresh. With the defaults it
    repeats the run's evaluation after training exactly (its ``summary.json``'s ``after``).

    :param episodes: episodes to play (default: as many as the run's evaluations).
    :param seed: seeds the env and the agent's sampling (default: the run's held-out
        evaluation seed).
    :param deterministic: act greedily or sample (default: `evaluate`'s: greedy on GridWorld,
        sampled on TextGen).
    :param threads: torch threads (default: the run's, from ``config.json``).
    """
    model, config = load_agent(run_dir)
    seed = config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    episodes = config.get("eval_episodes", 100) if episodes is None else episodes
    with torch_threads(config.get("threads") if threads is None else threads), torch_seeded(seed):
        after = evaluate(
            model,
            config["env_id"],
            episodes=episodes,
            seed=seed,
            env_kwargs=config["env_kwargs"],
            deterministic=deterministic,
            samples=SAMPLES,
        )
    return _summary(config, after)


def play_run(
    run_dir: str | Path,
    episodes: int = 3,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    threads: int | None = None,
) -> list[TextEpisode]:
    """`textgym render`: episodes of a saved TextGen agent token by token, played as in
    evaluation (sampled, with the agent's policy as the KL scorer).

    :param seed: env seed (default: the run's held-out evaluation seed).
    :param env_kwargs: env arguments on top of the run's (e.g. other prompts).
    :param threads: torch threads (default: the run's, from ``config.json``).
    """
    model, config = load_agent(run_dir)
    if not config["env_id"].startswith("TextGen"):
        raise ValueError(
            f"run_dir={str(run_dir)!r} holds a {config['env_id']} run: expected a TextGen-v0 "
            "run (only text episodes can be rendered token by token)"
        )
    seed = config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    with torch_threads(config.get("threads") if threads is None else threads):
        return play_text(
            model,
            episodes=episodes,
            seed=seed,
            env_kwargs={**config["env_kwargs"], **(env_kwargs or {})},
        )


def _baseline(mean_return: float, mean_rm_score: float) -> dict[str, float]:
    """The reference policy's values per `plot_curves` panel (its KL is 0 by definition)."""
    return {"return": float(mean_return), "rm_score": float(mean_rm_score), "kl_per_sequence": 0.0}


def plot_curves(
    curves: dict[str, dict[str, np.ndarray] | list[dict[str, np.ndarray]]],
    path: Path,
    title: str = "",
    baselines: dict[str, dict[str, float]] | None = None,
) -> None:
    """Learning curves to a PNG: the rolling mean training return per label, and for TextGen
    the RM score and the KL per sequence. A label with several runs (seeds) is drawn as their
    mean on a shared step grid, with the min-max band. ``baselines`` (label -> value per
    panel key, e.g. the reference policy's) are drawn as dashed horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {label: runs if isinstance(runs, list) else [runs] for label, runs in curves.items()}
    text = any(np.isfinite(run["rm_score"]).any() for runs in groups.values() for run in runs)
    panels = [("return", "episodic return")]
    if text:
        panels += [("rm_score", "RM score"), ("kl_per_sequence", "KL per sequence (nats)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels):
        for label, runs in groups.items():
            runs = [run for run in runs if len(run["step"]) and np.isfinite(run[key]).any()]
            if not runs:
                continue
            end = min(run["step"][-1] for run in runs)
            grid = np.linspace(0, end, 200)
            ys = np.stack([np.interp(grid, run["step"], _rolling(run[key])) for run in runs])
            (line,) = ax.plot(grid, ys.mean(0), label=label)
            if len(runs) > 1:
                ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
        for (label, values), style in zip((baselines or {}).items(), ("--", ":", "-.")):
            ax.axhline(values[key], color="0.3", linestyle=style, linewidth=1, label=label)
        ax.set_xlabel("env steps")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=8)
    note = f"rolling mean of the last {WINDOW} training episodes"
    fig.suptitle(f"{title}: {note}" if title else note)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    On TextGen the reference policy gets rows too (`evaluate_reference`, per action mode):
    the return to beat.

    :param steps: budget of every run (default: each agent's zoo budget on each env).
    :param env_kwargs: env arguments for every run, on top of each agent's.
    :param threads: torch threads of every run (default: as they are).
    """
    for agent in agents:
        if agent not in AGENTS:
            raise ValueError(f"agents: {agent!r} is unknown: expected names from {AGENTS}")
    out = Path(out)
    rows = []
    for env_id in env_ids:
        curves: dict[str, list[dict[str, np.ndarray]]] = {}
        for agent in agents:
            for seed in seeds:
                run_dir = out / env_id / agent / f"seed_{seed}"
                if progress:
                    print(f"== {env_id} {agent} seed {seed} -> {run_dir}", flush=True)
                summary = train(
                    env_id,
                    agent,
                    steps=steps,
                    seed=seed,
                    env_kwargs=env_kwargs,
                    out=run_dir,
                    progress=progress,
                    eval_episodes=eval_episodes,
                    threads=threads,
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
                baselines[row["agent"]] = _baseline(
                    np.mean([other["final_return"] for other in group]),
                    np.mean([other["mean_rm_score"] for other in group]),
                )
        plot_curves(curves, out / f"curves_{env_id}.png", title=env_id, baselines=baselines)
    with open(out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = _markdown_table(rows)
    (out / "compare.md").write_text(table)
    return table


def _reference_rows(
    agents: Sequence[str], seeds: Sequence[int], env_kwargs: dict | None, episodes: int
) -> list[dict[str, Any]]:
    """The reference policy on TextGen, once per action mode the agents used (its return is
    the baseline they must beat; it differs between modes because "topk" renormalises)."""
    modes = {
        agent_env_kwargs(agent, "TextGen-v0", env_kwargs).get("action_mode", "vocab")
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
