"""Training an agent from the zoo into a run directory (`textgym train`), and re-evaluating or
replaying a finished run (`textgym eval`, `textgym render`).

`train` reads top to bottom: check the arguments, build the agent, claim the run directory,
evaluate before, (clone an expert,) learn with a recorder that logs every episode and saves
checkpoints, save, evaluate after (seeded, so `evaluate_run` repeats it exactly), plot.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from tqdm.auto import tqdm

import textgym  # noqa: F401  (registers the envs)
from textgym._checks import check_int
from textgym.threads import torch_threads
from textgym_agents.curves import plot_curves, reference_baseline
from textgym_agents.evaluation import (
    TextEpisode,
    evaluate,
    evaluate_reference,
    play_text,
    torch_seeded,
)
from textgym_agents.imitation import clone_expert
from textgym_agents.rundir import (
    EVAL_SEED_OFFSET,
    SAMPLES,
    WINDOW,
    EpisodeLog,
    default_out,
    jsonable,
    load_agent,
    make_summary,
    read_episodes,
)
from textgym_agents.sequence_ppo import SequencePPO, UpdateStats
from textgym_agents.zoo import (
    AGENTS,
    agent_env_kwargs,
    default_budget,
    default_imitation,
    make_agent,
)

__all__ = ["evaluate_run", "play_run", "train"]


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
        out = Path(out) if out is not None else default_out(env_id, agent, seed)
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
            "overrides": {k: v for k, v in overrides.items() if jsonable(v)},
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
        summary = make_summary(config, after, before=before)
        baselines = None
        if env_id.startswith("TextGen"):
            reference = evaluate_reference(eval_episodes, eval_seed, env_kwargs)
            summary["reference"] = reference
            baseline = reference_baseline(reference["mean_return"], reference["mean_rm_score"])
            baselines = {"reference": baseline}
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


def _last_mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows[-WINDOW:] if row[key] is not None]
    return round(float(np.mean(values)), 4) if values else None


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
    return make_summary(config, after)


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
