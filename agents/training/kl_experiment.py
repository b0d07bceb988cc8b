"""The KL experiment (``textgym kl-experiment``): what the KL penalty buys against a learned RM.

The GPT policy (the zoo's ``gpt``) is trained on the default prompts against a learned proxy
reward model, once per KL setting (fixed ``kl_coef`` values, 0 among them, and adaptive ones
with a KL target) and seed. Every checkpoint of every run is then measured on fresh episodes
(the env on a seed training never used; the prompts are the same default ones) with the same
sampling policy that trains:

- ``proxy``: the proxy RM's score, normalised so the reference policy's samples have mean 0
  and std 1 (``normalize_reward=True``; the same ``kl_coef`` then means the same for any RM);
- ``gold``: the gold judge's score (VADER compound, which the policy never sees) and its share
  of positive texts;
- ``kl``: the KL to the reference per sequence (the env's estimate from the acting policy);
- fluency: the reference model's perplexity of the samples and distinct-1/2 (unique word
  n-grams over all n-grams of all samples).

Gao et al. ("Scaling Laws for Reward Model Overoptimization", 2022) draw gold and proxy score
against the distance from the initial policy; `plot` draws that picture from the checkpoints.
Writes under ``out``: one run directory per (setting, seed) as ``textgym train`` makes them,
plus ``points.csv`` (one row per measured checkpoint), ``kl_experiment.md`` (the table of the
final policies, mean +- std over seeds, and samples) and ``kl_experiment.png``.

Runs already measured (``measure.json`` in their directory) are reused, so several commands
can share the work (e.g. one per seed) and a last one with every seed writes the table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textgym._checks import check_int
from textgym.rewards import VaderSentiment
from textgym.runfiles import atomic_path, claim, write_csv, write_json, write_text
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy
from textgym_agents.training.evaluation import evaluate, evaluate_reference, torch_seeded
from textgym_agents.training.rundir import EVAL_SEED_OFFSET
from textgym_agents.training.train import train

__all__ = ["KL_SETTINGS", "distinct_n", "measure", "parse_setting", "run_kl_experiment"]

# No penalty (reward hacking has a free hand), two fixed strengths, and the adaptive
# controller holding the KL per sequence near a target (with a horizon that lets beta move
# within the default 40,000-step runs, about 1,800 episodes).
KL_SETTINGS = ("0", "0.02", "0.1", "target=3,horizon=200")
POINT_FIELDS = (
    "setting",
    "seed",
    "step",
    "proxy",
    "gold",
    "gold_positive_share",
    "kl",
    "perplexity",
    "distinct_1",
    "distinct_2",
)


def parse_setting(setting: str) -> dict[str, float]:
    """A KL setting as env arguments: ``"0.05"`` -> ``{"kl_coef": 0.05}``; ``"target=4"`` ->
    the adaptive controller ``{"kl_target": 4.0}`` (from the env's default starting
    ``kl_coef``); ``"target=4,horizon=200"`` also sets its horizon in sequences (``kl_horizon``;
    Ziegler et al.'s 10,000 barely moves beta within a run of a few thousand episodes)."""
    parts = dict(part.partition("=")[::2] for part in setting.split(","))
    try:
        if set(parts) in ({"target"}, {"target", "horizon"}):
            target = float(parts["target"])
            horizon = float(parts.get("horizon", 1))
            if target > 0 and horizon >= 1 and horizon == int(horizon):
                parsed: dict[str, float] = {"kl_target": target}
                if "horizon" in parts:
                    parsed["kl_horizon"] = int(horizon)
                return parsed
        elif "," not in setting and "=" not in setting:
            coef = float(setting)
            if coef >= 0:
                return {"kl_coef": coef}
    except ValueError:
        pass
    raise ValueError(
        f"KL setting {setting!r}: expected a kl_coef >= 0 (e.g. '0.05') or 'target=T' with a "
        "KL target T > 0 nats per sequence (adaptive kl_coef), optionally ',horizon=H' with "
        "an int H >= 1 sequences"
    )


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams over all word n-grams of ``texts`` (Li et al., 2016); 0 if none."""
    grams = [
        tuple(words[i : i + n])
        for words in (text.lower().split() for text in texts)
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


def measure(
    policy: GPTActorCriticPolicy | None,
    env_kwargs: dict[str, Any],
    *,
    episodes: int,
    seed: int,
    samples: int = 3,
) -> dict[str, Any]:
    """Proxy and gold score, KL and fluency of ``policy``'s samples (`None`: the reference).

    :param policy: the acting policy (the GPT policy of a ``gpt`` run or checkpoint).
    :param env_kwargs: the run's env arguments (the proxy RM is the env's).
    :param episodes: episodes to sample.
    :param seed: the evaluation env's seed (the prompts).
    :param samples: how many of the samples to keep in the result.
    """
    if policy is None:
        result = evaluate_reference(episodes, seed, env_kwargs, samples=episodes)
    else:
        with torch_seeded(seed):  # the same checkpoint and seed measure the same samples
            result = evaluate(
                policy,
                "TextGen-v0",
                episodes=episodes,
                seed=seed,
                env_kwargs=env_kwargs,
                samples=episodes,
            )
    played = result["samples"]
    texts = [sample["text"] for sample in played]
    gold = VaderSentiment().score([sample["prompt"] for sample in played], texts)
    return {
        "proxy": result["mean_rm_score"],
        "gold": float(gold.mean()),
        "gold_positive_share": float(np.mean(gold > 0.05)),
        "kl": result["mean_kl_per_sequence"],
        "perplexity": result["reference_perplexity"],
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "samples": [
            {**sample, "gold": float(score)} for sample, score in zip(played[:samples], gold)
        ],
    }


def _run(
    setting: str,
    seed: int,
    *,
    reward_model: str,
    steps: int,
    out: Path,
    episodes: int,
    checkpoints: int,
    progress: bool,
    env_kwargs: dict[str, Any],
    overrides: dict[str, Any],
) -> list[dict[str, Any]]:
    """Train one (setting, seed) run, measure the reference and every checkpoint, cache it.

    A run directory already there is reused only if it was made with the arguments asked for
    (else a `ValueError` names the difference); a trained run that was not measured yet (the
    command was interrupted while measuring) is measured without training it again, and one
    whose training was interrupted is resumed from its newest checkpoint.
    """
    run_dir = out / f"kl_{setting.replace('=', '').replace(',', '_')}" / f"seed_{seed}"
    kwargs = {
        **env_kwargs,
        "reward_model": reward_model,
        "normalize_reward": True,
        **parse_setting(setting),
    }
    measured = {"episodes": episodes, "checkpoints": checkpoints}
    cached = run_dir / "measure.json"
    if (run_dir / "config.json").exists():
        config = json.loads((run_dir / "config.json").read_text())
        _check_same(
            run_dir,
            {
                "env_kwargs": config["env_kwargs"],
                "steps": config["steps"],
                "overrides": {"n_envs": config["n_envs"], **config["overrides"]},
            },
            {"env_kwargs": kwargs, "steps": steps, "overrides": {"n_envs": None, **overrides}},
        )
        if cached.exists():
            result = json.loads(cached.read_text())
            _check_same(cached, result["measured"], measured)
            return result["points"]
    if not (run_dir / "summary.json").exists():  # new, or killed before it finished
        if progress:
            print(f"== kl {setting} seed {seed} -> {run_dir}", flush=True)
        train(
            "TextGen-v0",
            "gpt",
            steps=steps,
            seed=seed,
            env_kwargs=kwargs,
            out=run_dir,
            progress=progress,
            checkpoint_every=max(1, steps // checkpoints),
            eval_episodes=min(episodes, 32),  # the experiment measures the checkpoints itself
            resume=True,
            keep_checkpoints=None,  # every checkpoint is measured
            **overrides,
        )
    assess = {"episodes": episodes, "seed": seed + EVAL_SEED_OFFSET}
    points = [{"step": 0, **_reference_point(out, seed, kwargs, assess)}]
    for path in sorted((run_dir / "checkpoints").glob("step_*.zip"), key=_step):
        policy = GPTActorCriticPolicy.load(str(path))
        points.append({"step": _step(path), **measure(policy, kwargs, **assess)})
    points = [{"setting": setting, "seed": seed, **point} for point in points]
    write_json(cached, {"measured": measured, "points": points})
    return points


def _reference_point(
    out: Path, seed: int, env_kwargs: dict[str, Any], assess: dict[str, int]
) -> dict[str, Any]:
    """The reference policy's measurement (step 0), which no KL setting changes: measured once
    per seed and cached in ``out``."""
    reference_kwargs = {k: v for k, v in env_kwargs.items() if not k.startswith("kl_")}
    measured = {"env_kwargs": reference_kwargs, **assess}
    path = out / f"reference_seed_{seed}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        _check_same(path, cached["measured"], measured)
        return cached["point"]
    point = measure(None, reference_kwargs, **assess)
    write_json(path, {"measured": measured, "point": point})
    return point


def _check_same(path: Path, found: dict[str, Any], asked: dict[str, Any]) -> None:
    """Refuse a cached run or measurement made with other arguments than asked."""
    stale = [key for key, value in asked.items() if found.get(key) != value]
    if stale:
        raise ValueError(
            f"{path} was made with other {', '.join(stale)} than asked "
            f"({', '.join(f'{key}={found.get(key)!r}' for key in stale)}): pass another out "
            "directory, or remove it to make it again"
        )


def _step(checkpoint: Path) -> int:
    return int(checkpoint.stem.removeprefix("step_"))


def run_kl_experiment(
    reward_model: str | Path,
    *,
    settings: Sequence[str] = KL_SETTINGS,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 40_000,
    out: str | Path = "runs/kl_experiment",
    episodes: int = 200,
    checkpoints: int = 5,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> str:
    """`textgym kl-experiment`: train and measure every (setting, seed); return the table.

    :param reward_model: the proxy RM, a directory written by ``textgym train-rm``.
    :param settings: KL settings (`parse_setting`): ``kl_coef`` values or ``target=T``.
    :param seeds: training seeds; each run is measured on an env seed it never trained on.
    :param steps: env steps of each run.
    :param out: where the runs, ``points.csv``, ``kl_experiment.md`` and the plot go.
    :param episodes: measured episodes per checkpoint.
    :param checkpoints: measured checkpoints per run (evenly spaced), besides the reference.
    :param env_kwargs: further env arguments for every run.
    :param overrides: `SequencePPO` settings replacing the zoo's (e.g. ``learning_rate``).
    """
    if not settings:
        raise ValueError("settings=() is empty: expected at least one KL setting")
    for setting in settings:
        parse_setting(setting)  # every setting is checked before the first run starts
    if len(set(settings)) != len(settings) or len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(
            f"settings={list(settings)!r}, seeds={list(seeds)!r}: expected at least one seed "
            "and no repeated setting or seed"
        )
    if not Path(reward_model).is_dir():
        raise ValueError(
            f"reward_model={str(reward_model)!r} is not a directory: expected a reward model "
            "written by `textgym train-rm`"
        )
    for name, value in (("steps", steps), ("episodes", episodes), ("checkpoints", checkpoints)):
        check_int(name, value, 1)
    out = Path(out)
    with claim(out):
        points = [
            point
            for setting in settings
            for seed in seeds
            for point in _run(
                setting,
                seed,
                reward_model=str(reward_model),
                steps=steps,
                out=out,
                episodes=episodes,
                checkpoints=checkpoints,
                progress=progress,
                env_kwargs=env_kwargs or {},
                overrides=overrides,
            )
        ]
        write_csv(out / "points.csv", POINT_FIELDS, points, extrasaction="ignore")
        table = _table(points, settings)
        write_text(out / "kl_experiment.md", table)
        plot(points, out / "kl_experiment.png")
        return table


def _runs(points: list[dict[str, Any]], setting: str) -> list[list[dict[str, Any]]]:
    """Each seed's run of ``setting``: its points from the reference (step 0) on."""
    runs: dict[int, list[dict[str, Any]]] = {}
    for point in points:
        if point["setting"] == setting:
            runs.setdefault(point["seed"], []).append(point)
    return [sorted(run, key=lambda point: point["step"]) for run in runs.values()]


def _final(points: list[dict[str, Any]], setting: str) -> list[dict[str, Any]]:
    """The last measured point of each seed's run of ``setting``."""
    return [run[-1] for run in _runs(points, setting)]


def _table(points: list[dict[str, Any]], settings: Sequence[str]) -> str:
    """Markdown: the reference and each setting's final policies (mean +- std over seeds),
    then a few samples of each setting's first seed."""
    header = (
        "| policy | seeds | proxy RM (ref. std) | gold VADER | gold positive | KL/seq (nats) "
        "| ref. perplexity | distinct-1 | distinct-2 |"
    )
    lines = [header, "|---" * 9 + "|"]

    def row(name: str, group: list[dict[str, Any]]) -> str:
        cells = []
        for key in POINT_FIELDS[3:]:
            values = np.array([point[key] for point in group], dtype=float)
            spread = f" ± {values.std():.2f}" if key in ("proxy", "gold", "kl") else ""
            cells.append(f"{values.mean():.2f}{spread}")
        return f"| {name} | {len(group)} | " + " | ".join(cells) + " |"

    reference = [
        point for point in points if point["step"] == 0 and point["setting"] == settings[0]
    ]
    lines.append(row("reference", reference))
    for setting in settings:
        lines.append(row(f"kl {setting}", _final(points, setting)))
    lines.append("")
    for setting in settings:
        final = _final(points, setting)
        if not final:
            continue
        first = min(final, key=lambda point: point["seed"])
        lines.append(f"kl {setting}, seed {first['seed']}:")
        for sample in first["samples"]:
            lines.append(
                f"- {sample['prompt']!r} -> {sample['text']!r} (proxy {sample['rm_score']:+.2f}, "
                f"gold {sample['gold']:+.2f}, KL {sample.get('episode_kl') or 0.0:.1f})"
            )
        lines.append("")
    return "\n".join(lines)


def plot(points: list[dict[str, Any]], path: Path) -> None:
    """Proxy and gold score against KL per sequence, one line per setting (mean over seeds at
    each checkpoint), from the reference at KL 0: the overoptimisation picture. A third panel
    shows fluency (the reference's perplexity of the samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(point["setting"] for point in points))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [
        ("proxy", "proxy RM score (ref. std units)"),
        ("gold", "gold VADER score"),
        ("perplexity", "reference perplexity of samples (log scale)"),
    ]
    for ax, (key, name) in zip(axes, panels):
        for setting in settings:
            # By checkpoint index: the seeds reach their n-th checkpoint at slightly
            # different steps (whole episodes).
            at = list(zip(*_runs(points, setting)))
            kl = [np.mean([point["kl"] for point in group]) for group in at]
            value = [np.mean([point[key] for point in group]) for group in at]
            ax.plot(kl, value, marker="o", label=f"kl {setting}")
        ax.set_xlabel("KL per sequence (nats)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "GPT policy vs a learned proxy RM, from the reference (KL 0) to its last checkpoint"
    )
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=100)
    plt.close(fig)
