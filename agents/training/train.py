"""Training an agent from the zoo into a run directory (`textgym train`).

`train` reads top to bottom, as the steps of a run:

1. the arguments, checked; the agent built (SB3's zoo, `make_agent`, or RLlib's,
   `_train_rllib`) before the run directory is claimed, so bad arguments leave no trace;
2. the run directory (`_train_claimed`): a new run's ``config.json``, or the run to resume,
   checked against the arguments (`textgym_agents.training.rundir`);
3. before training: the newest checkpoint restored (`textgym_agents.training.checkpoints`), or
   an evaluation (and an expert cloned);
4. training, logged and checkpointed by a recorder (`textgym_agents.training.recorder`);
5. after training: the agent saved, evaluated (seeded, so `evaluate_run` repeats it exactly)
   beside the reference policy, the learning curve plotted, ``summary.json`` written last.

Ctrl-C ends it with a `TrainingInterrupted` that says where a resume goes on from.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

import textgym  # noqa: F401  (registers the envs)
from textgym._checks import check_int, is_int
from textgym.runfiles import claim, write_json
from textgym.threads import torch_threads
from textgym.versions import version_drift
from textgym_agents.backends.sb3.zoo import (
    AGENTS,
    agent_env_kwargs,
    default_budget,
    default_imitation,
    make_agent,
    place_on_device,
)
from textgym_agents.trainers.imitation import clone_expert
from textgym_agents.training.checkpoints import (
    KEEP_CHECKPOINTS,
    latest_checkpoint,
    remove_temporaries,
    restore,
    save_agent,
)
from textgym_agents.training.curves import plot_curves, reference_baseline
from textgym_agents.training.evaluation import (
    evaluate,
    evaluate_reference,
    torch_seeded,
)
from textgym_agents.training.logs import WINDOW, read_episodes
from textgym_agents.training.recorder import (
    TrainingInterrupted,
    interrupt_names_checkpoint,
    learn_recorded,
)
from textgym_agents.training.rundir import (
    EVAL_SEED_OFFSET,
    SAMPLES,
    check_resume,
    holds_run,
    make_summary,
    portable,
    run_config,
    run_directory,
    run_versions,
)

__all__ = ["TrainingInterrupted", "train"]


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
    resume: bool = False,
    keep_checkpoints: int | None = KEEP_CHECKPOINTS,
    backend: str = "sb3",
    num_env_runners: int = 2,
    address: str | None = None,
    num_gpus_per_env_runner: float = 0,
    device: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train ``agent`` on ``env_id`` into a run directory and return (and save) its summary.

    The agent is evaluated before and after training on the same held-out seed
    (``seed + 10000``), so the samples before and after start from the same prompts. The
    evaluation after training also seeds the agent's sampling with that seed, so
    `evaluate_run` reproduces it exactly. On TextGen the summary's ``reference`` holds the
    reference policy's evaluation on the same seed: the baseline to beat.

    Every file of the run directory is written atomically; episodes are appended to
    ``episodes.csv`` as they finish. The process claims the directory before writing to it
    (`textgym.runfiles.claim`): a second run on it stops with a `DirectoryBusyError`.

    Ctrl-C (SIGINT) stops the run at the trainer's next safe point (SB3: after the env step in
    progress; ``gpt`` on TextGen: after the update in progress), saves a checkpoint there and
    raises `TrainingInterrupted` (a `KeyboardInterrupt`); a second Ctrl-C, or one outside
    learning, raises it at once, naming the newest checkpoint. RLlib runs are not saved at the
    interrupt. ``resume=True`` goes on from the newest checkpoint either way.

    :param env_id: ``"GridWorld-v1"``, ``"GridWorld-v0"`` or ``"TextGen-v0"``.
    :param agent: a name from `textgym_agents.backends.sb3.zoo.AGENTS`.
    :param steps: env steps to train (default: the zoo's budget, `default_budget`).
    :param seed: seeds the agent and the training env.
    :param env_kwargs: env arguments on top of the agent's (`agent_env_kwargs`).
    :param out: the run directory (default ``runs/<env>-<agent>-s<seed>-<time>``); it must
        not hold a previous run, unless ``resume``.
    :param progress: show a progress bar.
    :param checkpoint_every: save the agent every this many steps (default: 5 times a run).
    :param eval_episodes: episodes of each evaluation.
    :param n_envs: parallel envs (default: the zoo's).
    :param imitate: env steps of expert demonstrations to clone before RL (default: the zoo's,
        `default_imitation`; 0: none; `textgym_agents.trainers.imitation.clone_expert`: GridWorld's
        shortest paths, SB3 actor-critic agents). The summary's ``imitation`` holds the cloning's
        figures and an evaluation after it.
    :param threads: torch threads for the run (default: as they are); recorded in
        ``config.json`` either way, since results differ in the last bits between counts.
    :param resume: continue the unfinished run in ``out`` (made with the same arguments; only
        ``threads`` may differ) from its newest checkpoint: weights, optimizer, counters,
        replay buffer, RNG states, episode log and logs as they were at that step. The envs
        start afresh (the episodes in flight at the checkpoint are not resumed), so the
        figures are close to, not bit-identical with, an uninterrupted run's. Without a
        checkpoint the run starts over in the same directory; without a run, a new one starts;
        a finished run is not trained again: its summary is returned. It says on stderr which
        step it resumes from.
    :param keep_checkpoints: checkpoints kept: after each save, all but the newest this many
        are deleted (None: keep every one). The newest, which a resume reads, is always kept,
        and so is ``model.zip``.
    :param backend: ``"sb3"`` (this process: SB3, or `SequencePPO` for ``gpt`` on TextGen)
        or ``"rllib"``: Ray RLlib's PPO over ``num_env_runners`` env runners
        (`textgym_agents.backends.rllib`, agents ``ppo`` and ``gpt``; ``pip install -e
        ".[rllib]"``). The run directory is the same either way.
    :param num_env_runners: RLlib: Ray actors stepping envs (0: this process steps them).
    :param address: RLlib: the Ray cluster to join (``ray start --head`` prints it; ``"auto"``:
        the one running on this machine); default: a local Ray instance for this run.
    :param num_gpus_per_env_runner: RLlib: GPUs each env runner reserves (its env and module
        run there).
    :param device: where the agent and TextGen's models run: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ... (default: the env's and SB3's own default, CUDA where available).
        Sets the env argument ``device`` on TextGen and the SB3 algorithm's ``device``
        (`SequencePPO` runs where its env's models are); both are recorded in ``config.json``,
        so an evaluation of the run uses the same device. RLlib places its runners with
        ``num_gpus_per_env_runner``.
    :param overrides: algorithm keywords replacing the zoo's (RLlib: ``PPOConfig.training``
        keywords replacing `RLLIB_HYPERPARAMS`).
    """
    if device is not None:
        if backend == "rllib":
            raise ValueError(
                f"device={device!r}: expected backend='sb3'; RLlib places its env runners "
                "with num_gpus_per_env_runner"
            )
        env_kwargs, overrides = place_on_device(env_id, agent, device, env_kwargs, overrides)
    if keep_checkpoints is not None and not (is_int(keep_checkpoints) and keep_checkpoints >= 1):
        raise ValueError(
            f"keep_checkpoints={keep_checkpoints!r}: expected an integer >= 1 (the newest "
            "checkpoint is what a resume reads), or None to keep every checkpoint"
        )
    if backend == "rllib":
        return _train_rllib(
            env_id,
            agent,
            steps=steps,
            seed=seed,
            env_kwargs=env_kwargs,
            out=out,
            progress=progress,
            checkpoint_every=checkpoint_every,
            eval_episodes=eval_episodes,
            n_envs=n_envs,
            imitate=imitate,
            threads=threads,
            resume=resume,
            keep_checkpoints=keep_checkpoints,
            num_env_runners=num_env_runners,
            address=address,
            num_gpus_per_env_runner=num_gpus_per_env_runner,
            **overrides,
        )
    if backend != "sb3":
        raise ValueError(f"backend={backend!r} is not known: expected 'sb3' or 'rllib'")
    if address is not None or num_gpus_per_env_runner:
        raise ValueError(
            f"address={address!r}, num_gpus_per_env_runner={num_gpus_per_env_runner!r}: "
            "expected backend='rllib' (the SB3 backend trains in this process)"
        )
    with torch_threads(threads) as threads:
        if agent not in AGENTS:
            raise ValueError(f"agent={agent!r} is unknown: expected one of {AGENTS}")
        env_kwargs = agent_env_kwargs(agent, env_id, env_kwargs)
        steps = default_budget(agent, env_id, env_kwargs) if steps is None else steps
        check_int("steps", steps, 1)
        out = run_directory(out, resume, env_id, agent, seed)
        imitate = default_imitation(agent, env_id, env_kwargs) if imitate is None else imitate
        check_int("imitate", imitate, 0)
        config = run_config(locals(), overrides)
        # Bad env arguments or overrides fail here, before the run directory is claimed.
        model = make_agent(
            agent, env_id, seed=seed, n_envs=n_envs, env_kwargs=env_kwargs, **overrides
        )
        if imitate and not isinstance(model, OnPolicyAlgorithm):
            raise ValueError(
                f"imitate={imitate} needs an SB3 actor-critic agent (ppo, a2c, maskable_ppo, or "
                f"gpt on GridWorld): agent={agent!r} on {env_id} is not one"
            )
        with claim(out), interrupt_names_checkpoint(model, config, out):
            return _train_claimed(
                model, config, out, progress, checkpoint_every, resume, keep_checkpoints
            )


def _train_rllib(
    env_id: str,
    agent: str,
    *,
    steps: int | None,
    seed: int,
    env_kwargs: dict[str, Any] | None,
    out: str | Path | None,
    progress: bool,
    checkpoint_every: int | None,
    eval_episodes: int,
    n_envs: int | None,
    imitate: int | None,
    threads: int | None,
    resume: bool,
    keep_checkpoints: int | None,
    num_env_runners: int,
    address: str | None,
    num_gpus_per_env_runner: float,
    **overrides: Any,
) -> dict[str, Any]:
    """`train` on Ray RLlib (``backend="rllib"``): the same run directory."""
    try:
        from textgym_agents.backends import rllib
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"backend='rllib' needs Ray RLlib ({err}): pip install -e '.[rllib]'"
        ) from err
    with torch_threads(threads) as threads:
        hyper = rllib.rllib_hyperparams(agent, env_id)
        env_kwargs = rllib.rllib_env_kwargs(agent, env_id, env_kwargs)
        steps = hyper["n_timesteps"] if steps is None else steps
        check_int("steps", steps, 1)
        check_int("num_env_runners", num_env_runners, 0)
        rllib.check_working_directory()  # before Ray starts (rllib_config checks it too)
        if imitate:
            raise ValueError(f"imitate={imitate}: the RLlib backend does not clone an expert")
        out = run_directory(out, resume, env_id, agent, seed)
        config = {
            **run_config(locals(), overrides),
            "imitate": 0,
            "backend": "rllib",
            "num_env_runners": num_env_runners,
            "address": address,
            "num_gpus_per_env_runner": num_gpus_per_env_runner,
        }
        # A resumed run's envs start afresh, seeded anew (as `restore` seeds SB3's).
        latest = latest_checkpoint(out) if resume and holds_run(out) else None
        # Bad env arguments or overrides fail in the session, before the run directory is claimed.
        with (
            rllib.rllib_session(
                address,
                env_id,
                agent,
                seed=seed + (latest[1]["step"] if latest else 0),
                env_kwargs=env_kwargs,
                num_env_runners=num_env_runners,
                n_envs=n_envs,
                num_gpus_per_env_runner=num_gpus_per_env_runner,
                **overrides,
            ) as model,
            claim(out),
            interrupt_names_checkpoint(model, config, out),
        ):
            return _train_claimed(
                model, config, out, progress, checkpoint_every, resume, keep_checkpoints
            )


def _train_claimed(
    model: Any,
    config: dict[str, Any],
    out: Path,
    progress: bool,
    checkpoint_every: int | None,
    resume: bool,
    keep_checkpoints: int | None,
) -> dict[str, Any]:
    """`train` once ``out`` is claimed: from the start or from ``out``'s newest checkpoint."""
    env_id, steps, seed = config["env_id"], config["steps"], config["seed"]

    # The run directory: the run to resume (made with the same arguments), or a new one.
    resumed = check_resume(out, config) if resume else False
    if resumed:
        saved = json.loads((out / "config.json").read_text()).get("versions")
        drift = version_drift(saved, out / "config.json")
        if drift:
            warnings.warn(f"resuming: {drift}", UserWarning, stacklevel=2)
    if resumed and (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())  # it finished meanwhile
    if not resumed:
        if holds_run(out):
            raise FileExistsError(
                f"out={str(out)!r} already holds a run (config.json): expected a new or empty "
                "directory, so no earlier run is overwritten (resume=True, --resume, continues "
                "an unfinished one)"
            )
        versions = run_versions(config.get("backend", "sb3"))
        write_json(out / "config.json", {**portable(config), "versions": versions})

    # Before training: the newest checkpoint restored, or an evaluation (and an expert cloned).
    # The same held-out seed before and after: the same prompts (or maps) both times.
    eval_seed = seed + EVAL_SEED_OFFSET
    assess = functools.partial(
        evaluate,
        env_id=env_id,
        episodes=config["eval_episodes"],
        seed=eval_seed,
        env_kwargs=config["env_kwargs"],
        samples=SAMPLES,
    )
    every = checkpoint_every if checkpoint_every is not None else max(1, steps // 5)
    latest = latest_checkpoint(out) if resumed else None
    if latest is not None:
        checkpoint, state = latest
        restore(model, checkpoint, state)
        before = {key: state[key] for key in ("before", "imitation")}
        print(
            f"resuming {out} at step {state['step']:,} of {steps:,}, from its newest checkpoint",
            file=sys.stderr,
        )
    else:
        if resumed:
            print(f"resuming {out}: it has no checkpoint yet, so it starts over", file=sys.stderr)
        # A resumed run without a checkpoint starts over: its logs from step 0 are dropped.
        state = {"step": 0, "next_checkpoint": every, "seconds": 0.0} if resumed else None
        before = {"before": assess(model), "imitation": None}
        if config["imitate"]:
            imitation = clone_expert(model, config["imitate"], seed=seed, progress=progress)
            imitation["evaluation"] = assess(model)
            before["imitation"] = imitation
    # Only now, the checkpoint read and checked: a refused resume leaves the directory as it was.
    remove_temporaries(out)

    # Training, logged and checkpointed by a recorder.
    recorder = learn_recorded(model, out, steps, every, progress, before, state, keep_checkpoints)

    # After training: the agent saved, evaluated as `evaluate_run` repeats it, summarised.
    save_agent(model, out / "model.zip")
    with torch_seeded(eval_seed):  # what `evaluate_run` repeats
        after = assess(model)
    summary = make_summary(config, after, before=before["before"], steps=model.num_timesteps)
    baselines = None
    if env_id.startswith("TextGen"):
        reference = evaluate_reference(config["eval_episodes"], eval_seed, config["env_kwargs"])
        summary["reference"] = reference
        baseline = reference_baseline(reference["mean_return"], reference["mean_rm_score"])
        baselines = {"reference": baseline}
    if before["imitation"] is not None:
        summary["imitation"] = before["imitation"]
    seconds = recorder.elapsed
    summary["training"] = {
        "steps": int(model.num_timesteps),
        "episodes": len(recorder.log.rows),
        "wall_seconds": round(seconds, 1),
        "steps_per_second": round(model.num_timesteps / seconds, 1),
        f"final_return_mean_last_{WINDOW}": _last_mean(recorder.log.rows, "return"),
    }
    plot_curves(
        {f"{config['agent']} seed {seed}": read_episodes(out / "episodes.csv")},
        out / "curve.png",
        title=f"{config['agent']} on {env_id}",
        baselines=baselines,
    )
    write_json(out / "summary.json", summary)  # last: a run with a summary is finished
    return summary


def _last_mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows[-WINDOW:] if row[key] is not None]
    return round(float(np.mean(values)), 4) if values else None
