"""The ``textgym`` command: the env commands (`textgym.cli`) plus those that train or load agents.

``textgym train ENV --agent NAME``, ``textgym eval RUN_DIR`` and ``textgym compare``: train
agents from the zoo into run directories, summarise them, compare them.
``textgym kl-experiment``: the GPT policy against a learned proxy RM for several KL settings
(`textgym_agents.training.kl_experiment`). ``textgym render SOURCE``: a run's (or the reference's)
episodes token by token, coloured by step reward, as ANSI, PNG or HTML.

Kept whole (over 400 lines): the parser and one short function per command, the map of what
``textgym --help`` lists; each command's work lives in `textgym_agents.training`.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from textgym import cli
from textgym.cli import (
    COLOR,
    UsageError,
    add_env_arg,
    add_threads,
    check_positive,
    choose_threads,
    parse_env_args,
    show,
    use_color,
)
from textgym.threads import torch_threads

EXAMPLES = """examples:
  textgym rollout TextGen-v0 --episodes 3   the reference model writes; tokens coloured by reward
  textgym train TextGen-v0 --agent gpt      the main job: RLHF on the default task (~4-7 minutes)
  textgym train GridWorld-v1 --agent ppo    stable-baselines3's PPO on the gridworld
  textgym eval runs/DIR                     summarise a trained run afresh
  textgym compare --envs GridWorld-v1 --agents ppo dqn --seeds 0 1
  textgym COMMAND --help                    a command's options"""


def build_parser() -> argparse.ArgumentParser:
    """Every ``textgym`` command."""
    parser, add_command = cli.new_parser(EXAMPLES)
    cli.add_env_commands(add_command)
    trn = add_command("train", "train an agent from the zoo into a run directory")
    trn.add_argument("env", help="TextGen-v0, GridWorld-v1 (or the sparse GridWorld-v0)")
    trn.add_argument("--agent", required=True, help="ppo, a2c, dqn, maskable_ppo, gpt, gpt-sb3")
    add_run_arguments(trn)
    trn.add_argument("--seed", type=int, default=0)
    trn.add_argument(
        "--device",
        default=None,
        help="where the agent and TextGen's models run: cpu, cuda, cuda:1, ... (default: CUDA "
        "where available, else the CPU)",
    )
    trn.add_argument(
        "--out", default=None, help="run directory (default runs/<env>-<agent>-s<seed>-<time>)"
    )
    trn.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="save the agent every N steps (default: 5 times a run)",
    )
    trn.add_argument(
        "--imitate",
        type=int,
        default=None,
        metavar="STEPS",
        help="before RL, clone the env's expert (GridWorld's shortest paths) from STEPS env "
        "steps of demonstrations (SB3 actor-critic agents; default: the zoo's, 0 for most)",
    )
    trn.add_argument(
        "--keep-checkpoints",
        type=_parse_keep,
        default=argparse.SUPPRESS,  # train's default, KEEP_CHECKPOINTS
        metavar="K",
        help="keep the newest K checkpoints, deleting older ones once a new one is complete "
        "(default 2: the newest, which --resume reads, and the one before it); all: keep "
        "every one; model.zip is always kept",
    )
    resuming = trn.add_mutually_exclusive_group()
    resuming.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in --out (killed, crashed, interrupted) from its "
        "newest checkpoint; give the arguments it was started with; refused when --out holds "
        "no run",
    )
    resuming.add_argument(
        "--resume-or-start",
        action="store_true",
        help="as --resume, but start the run when --out holds none (for a job script that "
        "runs one command until it finishes)",
    )
    trn.add_argument(
        "--backend",
        choices=("sb3", "rllib"),
        default="sb3",
        help="sb3: this process (SB3, or SequencePPO for gpt on TextGen); rllib: Ray RLlib's "
        "PPO over env runners, on this machine or a Ray cluster (agents ppo and gpt; "
        'pip install -e ".[rllib]")',
    )
    trn.add_argument(
        "--num-env-runners",
        type=int,
        default=2,
        metavar="N",
        help="rllib: Ray actors that step envs, each with one vector env (default 2)",
    )
    trn.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="rllib: join the Ray cluster at ADDR (`ray start --head` prints it; auto: the one "
        "on this machine); default: a local Ray instance for this run",
    )
    trn.add_argument(
        "--num-gpus-per-env-runner",
        type=float,
        default=0,
        metavar="G",
        help="rllib: GPUs each env runner reserves; its env and module run there",
    )
    add_threads(trn)
    trn.set_defaults(func=train)

    evl = add_command("eval", "summarise a trained run directory afresh")
    evl.add_argument("run_dir", help="a directory written by `textgym train`")
    evl.add_argument(
        "--episodes", type=int, default=None, help="default: as many as the run's evaluations"
    )
    evl.add_argument(
        "--seed", type=int, default=None, help="evaluation seed (default: the run's held-out one)"
    )
    evl.add_argument(
        "--sample",
        action="store_true",
        help="sample the agent's actions (GridWorld's default is its most likely action; "
        "TextGen always samples)",
    )
    add_loading_arguments(evl)
    add_threads(evl, run=True)
    evl.set_defaults(func=evaluate)

    cmp = add_command("compare", "several agents on several envs and seeds")
    cmp.add_argument("--envs", nargs="+", required=True, metavar="ENV")
    cmp.add_argument(
        "--agents",
        nargs="+",
        required=True,
        metavar="NAME",
        help="zoo agents; rllib:ppo and rllib:gpt train on Ray RLlib (2 env runners)",
    )
    cmp.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S")
    add_run_arguments(cmp)
    cmp.add_argument("--out", default="runs/compare", help="where the runs and tables go")
    add_threads(cmp)
    cmp.set_defaults(func=compare)

    # Unset options are left to train_reward_model's defaults, which live in one place.
    rnd = add_command(
        "render", "draw TextGen episodes token by token, coloured by each step's reward", COLOR
    )
    rnd.add_argument(
        "source",
        metavar="SOURCE",
        help="a TextGen-v0 run directory written by `textgym train`, or `reference`",
    )
    rnd.add_argument("--episodes", type=int, default=3)
    rnd.add_argument(
        "--seed", type=int, default=None, help="env seed (default: a run's held-out one, or 0)"
    )
    add_env_arg(rnd, "constructor argument for the env, on top of a run's (repeatable)")
    rnd.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write FILE.png (episodes stacked) or FILE.html instead of ANSI to the terminal",
    )
    rnd.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="the reference policy's temperature (SOURCE reference only)",
    )
    rnd.add_argument(
        "--scale",
        type=float,
        default=None,
        help="the |step reward| drawn at full colour (default: the largest among the episodes "
        "drawn); give two renders the same value to compare them",
    )
    add_loading_arguments(rnd)
    add_threads(rnd, run=True)
    rnd.set_defaults(func=render)

    klx = add_command(
        "kl-experiment",
        "the GPT policy against a learned RM, per KL setting and seed: proxy vs gold score",
    )
    klx.add_argument(
        "--reward-model", required=True, help="the proxy RM: a directory from `textgym train-rm`"
    )
    klx.add_argument(
        "--kl",
        nargs="+",
        default=None,
        metavar="SETTING",
        help="kl_coef values, or target=T[,horizon=H] for the adaptive kl_coef; "
        "default: 0 0.02 0.1 target=3,horizon=200",
    )
    klx.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S")
    klx.add_argument("--steps", type=int, default=40_000, help="env steps of each run")
    klx.add_argument(
        "--episodes",
        type=int,
        default=200,
        help="episodes per measured checkpoint (on an env seed training never used)",
    )
    klx.add_argument("--checkpoints", type=int, default=5, help="measured checkpoints per run")
    add_env_arg(klx)
    klx.add_argument("--out", default="runs/kl_experiment", help="where the runs and table go")
    klx.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_threads(klx)
    klx.set_defaults(func=kl_experiment)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=int, default=None, help="env steps (default: the zoo's budget)"
    )
    add_env_arg(parser)
    parser.add_argument(
        "--eval-episodes", type=int, default=100, help="episodes of each evaluation"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_loading_arguments(parser: argparse.ArgumentParser) -> None:
    """The opt-ins for loading a run directory that someone else made."""
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let SB3 unpickle the agent (for agents built with arguments config.json cannot "
        "hold); a pickle runs any code it holds: only for run directories you trust",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="honour trust_remote_code=True in the run's config.json (runs the model's own "
        "code); ignored without this flag",
    )


def _parse_keep(raw: str) -> int | None:
    """``--keep-checkpoints``: a count >= 1, or ``all`` (None)."""
    if raw == "all":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{raw!r}: expected an integer >= 1 (the newest checkpoint is what --resume "
            "reads) or 'all'"
        )
    return value


def train(args: argparse.Namespace) -> None:
    from textgym_agents.training.recorder import TrainingInterrupted
    from textgym_agents.training.rundir import format_summary, holds_run
    from textgym_agents.training.train import train as train_run

    check_positive(args, "steps", "eval_episodes", "checkpoint_every")
    resume_flag = "--resume" if args.resume else "--resume-or-start"
    if (args.resume or args.resume_or_start) and args.out is None:
        raise UsageError(f"{resume_flag}: expected --out, the run directory to continue")
    if args.resume and not holds_run(args.out):
        raise UsageError(
            f"--resume: --out {args.out} holds no run (no config.json): expected the directory "
            "of a run to continue (--resume-or-start starts one where there is none)"
        )
    if args.imitate is not None and args.imitate < 0:
        raise UsageError(f"--imitate {args.imitate}: expected a number of steps >= 0")
    if args.num_env_runners < 0:
        raise UsageError(f"--num-env-runners {args.num_env_runners}: expected a count >= 0")
    if args.num_gpus_per_env_runner < 0:
        raise UsageError(f"--num-gpus-per-env-runner {args.num_gpus_per_env_runner}: expected >= 0")
    rllib_only = ("address", "num_gpus_per_env_runner")
    if args.backend != "rllib" and any(getattr(args, name) for name in rllib_only):
        raise UsageError("--address and --num-gpus-per-env-runner: expected --backend rllib")
    env_kwargs = parse_env_args(args.env_arg, [args.env])
    # Without --keep-checkpoints, train's default (KEEP_CHECKPOINTS) holds.
    keep = {"keep_checkpoints": args.keep_checkpoints} if "keep_checkpoints" in args else {}
    try:
        summary = train_run(
            args.env,
            args.agent,
            steps=args.steps,
            seed=args.seed,
            env_kwargs=env_kwargs,
            threads=choose_threads(args, env_kwargs),
            out=args.out,
            progress=not args.no_progress,
            checkpoint_every=args.checkpoint_every,
            eval_episodes=args.eval_episodes,
            imitate=args.imitate,
            resume=args.resume or args.resume_or_start,
            device=args.device,
            **keep,
            **_backend_arguments(args),
        )
    except TrainingInterrupted as stop:
        raise KeyboardInterrupt(
            f"{stop}; continue with: {_resume_command(args, stop.out)}"
        ) from None
    print(format_summary(summary))


def _resume_command(args: argparse.Namespace, out: Path) -> str:
    """The ``textgym train`` command as given, with ``--out`` (a default one named) and
    ``--resume``: what goes on with the run in ``out``."""
    argv = list(args.argv)
    if args.out is None:
        argv += ["--out", str(out)]
    if not (args.resume or args.resume_or_start):
        argv.append("--resume")
    return shlex.join(["textgym", *argv])


def _backend_arguments(args: argparse.Namespace) -> dict:
    if args.backend != "rllib":
        return {}
    return {
        "backend": "rllib",
        "num_env_runners": args.num_env_runners,
        "address": args.address,
        "num_gpus_per_env_runner": args.num_gpus_per_env_runner,
    }


def evaluate(args: argparse.Namespace) -> None:
    from textgym_agents.training.evaluation import evaluate_run
    from textgym_agents.training.rundir import format_summary

    check_positive(args, "episodes")
    deterministic = False if args.sample else None
    summary = evaluate_run(
        args.run_dir,
        episodes=args.episodes,
        seed=args.seed,
        deterministic=deterministic,
        threads=None if args.threads == "auto" else args.threads,
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
    )
    print(format_summary(summary))


def compare(args: argparse.Namespace) -> None:
    from textgym_agents.training.compare import compare as compare_runs

    check_positive(args, "steps", "eval_episodes")
    env_kwargs = parse_env_args(args.env_arg, args.envs)
    table = compare_runs(
        args.envs,
        args.agents,
        args.seeds,
        out=args.out,
        steps=args.steps,
        env_kwargs=env_kwargs,
        threads=choose_threads(args, env_kwargs),
        eval_episodes=args.eval_episodes,
        progress=not args.no_progress,
    )
    print(table)


def kl_experiment(args: argparse.Namespace) -> None:
    from textgym_agents.training.kl_experiment import KL_SETTINGS, run_kl_experiment

    check_positive(args, "steps", "episodes", "checkpoints")
    env_kwargs = parse_env_args(args.env_arg, ["TextGen-v0"])
    with torch_threads(choose_threads(args, {**env_kwargs, "reward_model": args.reward_model})):
        table = run_kl_experiment(
            args.reward_model,
            settings=args.kl or KL_SETTINGS,
            seeds=args.seeds,
            steps=args.steps,
            out=args.out,
            episodes=args.episodes,
            checkpoints=args.checkpoints,
            env_kwargs=env_kwargs,
            progress=not args.no_progress,
        )
    print(table)


def render(args: argparse.Namespace) -> None:
    from textgym.render import html_page, render_ansi, render_html, render_rgb, shared_scale
    from textgym.runfiles import atomic_path, write_text

    check_positive(args, "episodes")
    out = None if args.out is None else Path(args.out)
    if out is not None and out.suffix.lower() not in (".png", ".html"):
        raise UsageError(f"--out {args.out}: expected a file name ending in .png or .html")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out {args.out}: the directory {out.parent} does not exist")
    if args.scale is not None and not (args.scale > 0 and np.isfinite(args.scale)):
        raise UsageError(f"--scale {args.scale}: expected a |step reward| > 0")
    if args.source != "reference" and args.temperature != 1.0:
        raise UsageError(
            f"--temperature {args.temperature}: applies to SOURCE reference only (a run's "
            "agent samples from its own policy)"
        )
    env_kwargs = parse_env_args(args.env_arg, ["TextGen-v0"])
    if args.source == "reference":
        from textgym_agents.training.evaluation import play_text

        with torch_threads(choose_threads(args, env_kwargs)):
            episodes = play_text(
                None,
                episodes=args.episodes,
                seed=0 if args.seed is None else args.seed,
                env_kwargs=env_kwargs,
                temperature=args.temperature,
            )
    else:
        from textgym_agents.training.evaluation import play_run

        threads = None if args.threads == "auto" else args.threads
        episodes = play_run(
            args.source,
            args.episodes,
            args.seed,
            env_kwargs,
            threads=threads,
            allow_pickle=args.allow_pickle,
            trust_remote_code=args.trust_remote_code,
        )
    # One colour scale for every episode drawn, so their colours compare.
    scale = args.scale or shared_scale([e.step_rewards for e in episodes])

    def draw(renderer, e):
        return renderer(
            e.prompt, e.tokens, e.step_rewards, e.rm_score, scale=scale, penalty=e.penalty
        )

    if out is None:
        for i, episode in enumerate(episodes):
            print(f"--- episode {i}")
            show(draw(render_ansi, episode), use_color(args))
        return
    if out.suffix.lower() == ".png":
        from PIL import Image

        images = [draw(render_rgb, episode) for episode in episodes]
        rule = np.full((2, images[0].shape[1], 3), 160, dtype=np.uint8)  # between episodes
        stacked = np.concatenate([part for image in images for part in (image, rule)][:-1])
        with atomic_path(out) as temp:
            Image.fromarray(stacked).save(temp)
    else:
        fragments = [draw(render_html, episode) for episode in episodes]
        write_text(out, html_page(fragments, f"textgym render {args.source}"))
    print(f"wrote {len(episodes)} episodes to {out}")


def main(argv: Sequence[str] | None = None) -> None:
    """The ``textgym`` console script."""
    cli.run(build_parser(), argv)


if __name__ == "__main__":
    main()
