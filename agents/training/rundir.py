"""A run directory: what `textgym_agents.training.train.train` writes and `textgym eval` reads.

A run directory holds everything a run made, so scripts can read it back (every file is
written atomically; a running job holds ``.textgym.lock``, see `textgym.runfiles`)::

    config.json    env id, agent, seed, budget, env arguments (what `load_agent` needs), and
                   the versions that decide the run's numbers (`installed_versions`)
    model.zip      the trained agent (SB3's format; for ``gpt`` on TextGen the GPT policy's
                   and trainer's: JSON and weights, `SequencePPO.save`)
    summary.json   the summary printed at the end (`evaluate` before and after training);
                   written last: a run directory with a summary holds a finished run
    episodes.csv   every training episode: step, return, length, rm_score, kl, kl_coef
                   (appended as episodes finish)
    curve.png      the learning curve (TextGen: also the RM score and the KL per sequence)
    checkpoints/   step_N.zip (the agent with its optimizer and counters), step_N.buffer.npz
                   (an off-policy agent's replay buffer, newest only) and step_N.json (RNG
                   states, KL coefficient, evaluation before training; written last), every
                   ``--checkpoint-every`` steps and at a Ctrl-C: what ``--resume`` continues
                   from; the newest ``--keep-checkpoints`` (default 2) are kept
    logs/          TensorBoard events and progress.csv: charts/episodic_return,
                   charts/episode_length, text/rm_score, text/positive_share,
                   text/kl_per_sequence, text/kl_coef, train/..., time/...

```python
from textgym_agents.training.train import train

summary = train("GridWorld-v1", "ppo", seed=0, out="runs/grid-ppo")
print(summary["after"]["success_rate"])
```
"""

from __future__ import annotations

import json
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import textgym  # noqa: F401  (registers the envs)
from textgym.versions import ENV_DISTRIBUTIONS, installed_versions
from textgym_agents.backends.sb3.zoo import ALGORITHMS, is_sequence_agent, make_agent
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy
from textgym_agents.saving import former_modules, load_sb3, pickled_weights_error, warn_pickle

EVAL_SEED_OFFSET = 10_000  # evaluation seeds are held out from training seeds

SAMPLES = 4


# The distributions whose versions decide a training run's numbers (recorded in config.json).
VERSIONED = (*ENV_DISTRIBUTIONS, "stable-baselines3", "sb3-contrib")


def run_versions(backend: str = "sb3") -> dict[str, str | None]:
    """What a run's ``config.json`` records under ``versions``: `installed_versions` of
    `VERSIONED`, and of ``ray`` for the RLlib backend."""
    return installed_versions((*VERSIONED, "ray") if backend == "rllib" else VERSIONED)


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run, finished or not: its ``config.json``, written first."""
    return (Path(run_dir) / "config.json").is_file()


def default_out(env_id: str, agent: str, seed: int) -> Path:
    return Path("runs") / f"{env_id}-{agent}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


# What config.json holds for an env argument that JSON cannot (a Python object, such as a
# reward function): ``{PYTHON_OBJECT: "module.qualname"}``. Nothing reads it back into an
# object: the run's user gives the object again to evaluate or resume the run.
PYTHON_OBJECT = "python object"


def portable_env_kwargs(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` as config.json holds them: each value JSON cannot hold replaced by
    ``{PYTHON_OBJECT: "module.qualname"}``, which names it."""
    portable = {}
    for key, value in env_kwargs.items():
        if not jsonable(value):
            kind = value if hasattr(value, "__qualname__") else type(value)
            value = {PYTHON_OBJECT: f"{kind.__module__}.{kind.__qualname__}"}
        portable[key] = value
    return portable


def given_env_kwargs(
    saved: dict[str, Any], given: dict[str, Any] | None, source: Path
) -> dict[str, Any]:
    """The env arguments of a run: ``saved`` (read from ``source``) with ``given`` on top. A
    Python object the run was made with (`PYTHON_OBJECT`) must be among ``given``."""
    env_kwargs = {**saved, **(given or {})}
    for key, value in env_kwargs.items():
        if isinstance(value, dict) and set(value) == {PYTHON_OBJECT}:
            raise ValueError(
                f"{source}: the env argument {key}= was a Python object, "
                f"{value[PYTHON_OBJECT]}, which a file cannot hold (nothing is imported from "
                f"a run directory): give it again from Python, e.g. "
                f"evaluate_run(run_dir, env_kwargs={{{key!r}: ...}})"
            )
    return env_kwargs


def make_summary(
    config: dict[str, Any],
    after: dict[str, Any],
    before: dict[str, Any] | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """The headline numbers (after training) first, then the full evaluations.

    :param steps: the env steps the agent was trained for (its budget ``config["steps"]``
        when not given; a trainer may run past its budget to finish a rollout).
    """
    headline = (
        "mean_return",
        "std_return",
        "success_rate",
        "mean_rm_score",
        "positive_share",
        "mean_kl_per_sequence",
    )
    summary: dict[str, Any] = {key: config[key] for key in ("env_id", "agent", "seed")}
    summary["steps"] = config["steps"] if steps is None else int(steps)
    summary["budget"] = config["steps"]
    summary.update({key: after[key] for key in headline if key in after})
    if before is not None:
        summary["before"] = before
    summary["after"] = after
    return summary


def load_agent(
    run_dir: str | Path,
    *,
    env_kwargs: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """The trained agent of a run directory and its ``config.json``, loaded without running
    code from either.

    SB3 agents are built anew from the run's configuration (`make_agent`) and given the saved
    weights, optimizer state and counters (`load_sb3`); ``gpt`` on TextGen comes back as its
    `GPTActorCriticPolicy` (what acts), from JSON and weights. Nothing is unpickled.

    :param allow_pickle: load an SB3 agent with SB3's own ``load`` (which unpickles the
        ``data`` entries of ``model.zip``: objects a configuration cannot rebuild, such as
        custom classes among the overrides) and a GPT policy pickled by SB3. A pickle runs any
        code it holds: only for run directories you or someone you trust made.
    :param trust_remote_code: honour ``trust_remote_code=True`` among the run's env
        arguments; without it the model's own code does not run (a run directory cannot turn
        it on).
    :param env_kwargs: env arguments on top of the run's: the Python objects it was made with
        (a reward function: config.json names it, `PYTHON_OBJECT`), other prompts, ...
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
    config["env_kwargs"] = given_env_kwargs(
        safe_env_kwargs(config["env_kwargs"], trust_remote_code, config_path),
        env_kwargs,
        config_path,
    )
    if config.get("backend") == "rllib":
        from textgym_agents.backends.rllib import load_module  # needs the rllib extra

        return load_module(model_path), config
    if is_sequence_agent(config["agent"], config["env_id"]):
        return GPTActorCriticPolicy.load(model_path, allow_pickle=allow_pickle), config
    if allow_pickle:
        try:
            with former_modules():
                warn_pickle(model_path)
                return ALGORITHMS[config["agent"]].load(str(model_path)), config
        except pickle.UnpicklingError as err:  # SB3 reads the weights weights-only even so
            raise pickled_weights_error(f"{model_path}: a .pth entry", err) from err
    model = make_agent(
        config["agent"],
        config["env_id"],
        seed=config["seed"],
        n_envs=config["n_envs"],
        env_kwargs=config["env_kwargs"],
        **config["overrides"],
    )
    load_sb3(model, model_path)
    return model, config


def safe_env_kwargs(
    env_kwargs: dict[str, Any], trust_remote_code: bool, source: Path
) -> dict[str, Any]:
    """``env_kwargs`` read from ``source``, with ``trust_remote_code`` off unless the user
    turned it on (a warning says it was turned off)."""
    if env_kwargs.get("trust_remote_code") and not trust_remote_code:
        warnings.warn(
            f"{source} asks for trust_remote_code=True: ignored, the model's own code does not "
            "run unless you pass --trust-remote-code (trust_remote_code=True) yourself",
            UserWarning,
            stacklevel=3,
        )
        return {**env_kwargs, "trust_remote_code": False}
    return env_kwargs


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the text ``textgym train`` and ``eval`` print."""
    lines = [f"note: {summary['version_drift']}"] if summary.get("version_drift") else []
    lines.append(f"{summary['agent']} on {summary['env_id']} (seed {summary['seed']})")
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


# Settings that may change when a run resumes (its results do not depend on them).
# What a resumed run may change: resources, and the installed versions (a warning says so).
_RESUMABLE_CHANGES = (
    "threads",
    "num_env_runners",
    "address",
    "num_gpus_per_env_runner",
    "versions",
)


def run_directory(out: str | Path | None, resume: bool, env_id: str, agent: str, seed: int) -> Path:
    if resume and out is None:
        raise ValueError("resume=True needs out: the run directory to continue")
    return Path(out) if out is not None else default_out(env_id, agent, seed)


_CONFIG_KEYS = (
    "env_id",
    "agent",
    "seed",
    "steps",
    "env_kwargs",
    "n_envs",
    "imitate",
    "eval_episodes",
    "threads",
)


def run_config(arguments: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config.json``: the run's arguments (from ``train``'s) and its JSON-able overrides."""
    config = {key: arguments[key] for key in _CONFIG_KEYS}
    config["overrides"] = {k: v for k, v in overrides.items() if jsonable(v)}
    return config


def portable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as config.json holds it (`portable_env_kwargs`)."""
    return {**config, "env_kwargs": portable_env_kwargs(config["env_kwargs"])}


def check_resume(out: Path, config: dict[str, Any]) -> bool:
    """Whether ``out`` holds a run to resume, finished or not (else it is new); refuse one
    made with other arguments."""
    if not holds_run(out):
        return False
    saved = json.loads((out / "config.json").read_text())
    config = portable(config)
    changed = [
        f"{key}={config.get(key)!r} (the run has {saved.get(key)!r})"
        for key in sorted(set(saved) | set(config))
        if key not in _RESUMABLE_CHANGES and saved.get(key) != config.get(key)
    ]
    if changed:
        raise ValueError(
            f"out={str(out)!r} holds a run made with other arguments: {', '.join(changed)}; "
            "expected the same arguments as the run to resume"
        )
    return True
