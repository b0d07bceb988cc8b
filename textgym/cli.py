"""The ``textgym`` command line.

``textgym rollout ENV``: play a few episodes and render them with their per-step rewards,
with the reference policy on TextGen (``--temperature`` or ``--policy random`` to see the
KL penalty bite) and random actions on GridWorld.

``textgym train ENV --agent NAME``, ``textgym eval RUN_DIR`` and ``textgym compare``: train
agents from the zoo (``agents/``) into run directories, summarise them, compare them.

``textgym train-rm``: a Bradley-Terry reward model from preference pairs (`textgym.rewards`).
``textgym kl-experiment``: the GPT policy against a learned proxy RM for several KL settings
(`agents.kl_experiment`). ``textgym render SOURCE``: a run's (or the reference's) episodes
token by token, coloured by step reward, as ANSI, PNG or HTML.
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the envs)
from textgym.threads import ONE_THREAD_BELOW_BYTES, default_threads, torch_threads

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class UsageError(ValueError):
    """A command-line argument that cannot be used; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line, like the commands' own."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# What a user's input can cause: printed as one line (``--debug`` for the traceback).
_USER_ERRORS = (ValueError, TypeError, OSError, gym.error.Error)


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["max_new_tokens=8", "action_mode=topk"]`` -> keyword arguments (literals parsed)."""
    kwargs = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env-arg {pair!r}: expected key=value")
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw
    return kwargs


def _add_env_arg(
    parser: argparse.ArgumentParser, help: str = "constructor argument for the env (repeatable)"
) -> None:
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help=help)


def _text_policy(env: gym.Env, policy: str, temperature: float, rng: np.random.Generator):
    """The acting policy's log-probs for the current state; also attached as the KL scorer."""
    unwrapped = env.unwrapped

    def logprobs() -> np.ndarray:
        if policy == "random":
            n = unwrapped.action_space.n
            return np.full(n, -np.log(n))
        scaled = unwrapped.reference_logprobs().astype(np.float64) / temperature
        return scaled - np.logaddexp.reduce(scaled)

    unwrapped.attach_policy(lambda ids, mask: logprobs()[None])
    return lambda obs: int(rng.choice(unwrapped.action_space.n, p=np.exp(logprobs())))


def _color(args: argparse.Namespace) -> bool:
    """``--color``: ANSI colours on a terminal only, unless forced either way."""
    return args.color == "always" or (args.color == "auto" and sys.stdout.isatty())


def _show(text: str, color: bool) -> None:
    print(text if color else _ANSI.sub("", text))


def _threads(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> int:
    """``--threads``: a number, or ``auto``: one thread for small models (below
    `textgym.threads.ONE_THREAD_BELOW_BYTES`), torch's default for larger or unknown ones."""
    if args.threads != "auto":
        return args.threads
    sources = [env_kwargs.get("model"), env_kwargs.get("reference_model")]
    reward_model = env_kwargs.get("reward_model")
    if isinstance(reward_model, str) and os.path.isdir(reward_model):
        sources.append(reward_model)
    return default_threads(sources)


def _parse_threads(raw: str) -> int | str:
    if raw == "auto":
        return raw
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected 'auto' or an integer >= 1")
    return value


def rollout(args: argparse.Namespace) -> None:

    kwargs = parse_env_args(args.env_arg)
    try:
        gym.spec(args.env)
    except gym.error.Error as err:
        raise UsageError(f"env {args.env!r}: {err}") from err
    with torch_threads(_threads(args, kwargs)):
        _rollout(args, kwargs)


def _rollout(args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
    show = functools.partial(_show, color=_color(args))
    env = gym.make(args.env, render_mode="ansi", **kwargs)
    rng = np.random.default_rng(args.seed)
    is_text = hasattr(env.unwrapped, "attach_policy")
    if is_text:
        act = _text_policy(env, args.policy, args.temperature, rng)
    else:
        env.action_space.seed(args.seed)

        def act(obs):
            return env.action_space.sample()

    returns = []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        rewards, done = [], False
        if not is_text:
            show(env.render())
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            rewards.append(reward)
            done = terminated or truncated
        returns.append(sum(rewards))
        print(f"--- episode {episode}: {len(rewards)} steps, return {sum(rewards):+.3f}")
        if is_text:
            show(env.render())
        else:
            print("rewards per step:", " ".join(f"{r:+g}" for r in rewards))
            show(env.render())
    print(f"mean return over {args.episodes} episodes: {np.mean(returns):+.3f}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="textgym", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not one line"
    )
    color = argparse.ArgumentParser(add_help=False)
    color.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="ANSI colours: on a terminal only (auto, the default), always, or never",
    )

    def add_command(name: str, help: str, *parents: argparse.ArgumentParser):
        return commands.add_parser(name, help=help, parents=[common, *parents])

    roll = add_command("rollout", "play and render a few episodes", color)
    roll.add_argument("env", help="a registered env id, e.g. TextGen-v0 or GridWorld-v0")
    roll.add_argument("--episodes", type=int, default=3)
    roll.add_argument("--seed", type=int, default=0)
    _add_env_arg(roll)
    roll.add_argument(
        "--policy",
        choices=["reference", "random"],
        default="reference",
        help="TextGen: sample from the reference model or uniformly",
    )
    roll.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="TextGen reference policy temperature (1.0 = the reference itself, KL 0)",
    )
    _add_threads(roll)
    roll.set_defaults(func=rollout)

    trn = add_command("train", "train an agent from the zoo into a run directory")
    trn.add_argument("env", help="TextGen-v0 or GridWorld-v0")
    trn.add_argument("--agent", required=True, help="ppo, a2c, dqn, maskable_ppo, gpt, gpt-sb3")
    _add_run_arguments(trn)
    trn.add_argument("--seed", type=int, default=0)
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
    _add_threads(trn)
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
    _add_threads(evl, run=True)
    evl.set_defaults(func=evaluate)

    cmp = add_command("compare", "several agents on several envs and seeds")
    cmp.add_argument("--envs", nargs="+", required=True, metavar="ENV")
    cmp.add_argument("--agents", nargs="+", required=True, metavar="NAME")
    cmp.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S")
    _add_run_arguments(cmp)
    cmp.add_argument("--out", default="runs/compare", help="where the runs and tables go")
    _add_threads(cmp)
    cmp.set_defaults(func=compare)

    # Unset options are left to train_reward_model's defaults, which live in one place.
    trm = add_command("train-rm", "train a Bradley-Terry reward model from preference pairs")
    trm.add_argument(
        "--pairs",
        default="bundled",
        metavar="FILE.jsonl",
        help='{"prompt", "chosen", "rejected"} per line; default: the bundled synthetic set',
    )
    trm.add_argument("--out", required=True, help="a new or empty directory for the model")
    trm.add_argument("--backbone", default=None, help="causal LM name or path (default: bundled)")
    trm.add_argument("--epochs", type=int, default=None, help="passes over the training pairs")
    trm.add_argument(
        "--lr",
        dest="learning_rate",
        type=float,
        default=None,
        metavar="LR",
        help="AdamW learning rate",
    )
    trm.add_argument("--batch-size", type=int, default=None, help="pairs per step")
    trm.add_argument("--center-coef", type=float, default=None, help="reward centring weight")
    trm.add_argument("--heldout", type=float, default=None, help="share of pairs held out")
    trm.add_argument("--seed", type=int, default=0)
    trm.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads(trm)
    trm.set_defaults(func=train_rm)

    rnd = add_command(
        "render", "draw TextGen episodes token by token, coloured by each step's reward", color
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
    _add_env_arg(rnd, "constructor argument for the env, on top of a run's (repeatable)")
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
    _add_threads(rnd, run=True)
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
    _add_env_arg(klx)
    klx.add_argument("--out", default="runs/kl_experiment", help="where the runs and table go")
    klx.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_threads(klx)
    klx.set_defaults(func=kl_experiment)
    return parser


def _add_threads(parser: argparse.ArgumentParser, run: bool = False) -> None:
    default = "the run's, as recorded in its config.json, so its figures reproduce"
    parser.add_argument(
        "--threads",
        type=_parse_threads,
        default="auto",
        metavar="N",
        help="torch threads: a number, or auto (the default: 1 for models under "
        f"{ONE_THREAD_BELOW_BYTES // 1_000_000} MB, else one per core)"
        + (f"; for a run directory, default {default}" if run else ""),
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=int, default=None, help="env steps (default: the zoo's budget)"
    )
    _add_env_arg(parser)
    parser.add_argument(
        "--eval-episodes", type=int, default=100, help="episodes of each evaluation"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {value}: expected an integer >= 1")


def train(args: argparse.Namespace) -> None:
    from agents.run import format_summary
    from agents.run import train as train_run

    _check_positive(args, "steps", "eval_episodes", "checkpoint_every")
    if args.imitate is not None and args.imitate < 0:
        raise UsageError(f"--imitate {args.imitate}: expected a number of steps >= 0")
    env_kwargs = parse_env_args(args.env_arg)
    summary = train_run(
        args.env,
        args.agent,
        steps=args.steps,
        seed=args.seed,
        env_kwargs=env_kwargs,
        threads=_threads(args, env_kwargs),
        out=args.out,
        progress=not args.no_progress,
        checkpoint_every=args.checkpoint_every,
        eval_episodes=args.eval_episodes,
        imitate=args.imitate,
    )
    print(format_summary(summary))


def evaluate(args: argparse.Namespace) -> None:
    from agents.run import evaluate_run, format_summary

    _check_positive(args, "episodes")
    deterministic = False if args.sample else None
    summary = evaluate_run(
        args.run_dir,
        episodes=args.episodes,
        seed=args.seed,
        deterministic=deterministic,
        threads=None if args.threads == "auto" else args.threads,
    )
    print(format_summary(summary))


def compare(args: argparse.Namespace) -> None:
    from agents.run import compare as compare_runs

    _check_positive(args, "steps", "eval_episodes")
    env_kwargs = parse_env_args(args.env_arg)
    table = compare_runs(
        args.envs,
        args.agents,
        args.seeds,
        out=args.out,
        steps=args.steps,
        env_kwargs=env_kwargs,
        threads=_threads(args, env_kwargs),
        eval_episodes=args.eval_episodes,
        progress=not args.no_progress,
    )
    print(table)


def kl_experiment(args: argparse.Namespace) -> None:
    from agents.kl_experiment import KL_SETTINGS, run_kl_experiment

    _check_positive(args, "steps", "episodes", "checkpoints")
    env_kwargs = parse_env_args(args.env_arg)
    with torch_threads(_threads(args, {**env_kwargs, "reward_model": args.reward_model})):
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
    from pathlib import Path

    from textgym.render import html_page, render_ansi, render_html, render_rgb, shared_scale

    _check_positive(args, "episodes")
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
    env_kwargs = parse_env_args(args.env_arg)
    if args.source == "reference":
        from agents.zoo import play_text

        with torch_threads(_threads(args, env_kwargs)):
            episodes = play_text(
                None,
                episodes=args.episodes,
                seed=0 if args.seed is None else args.seed,
                env_kwargs=env_kwargs,
                temperature=args.temperature,
            )
    else:
        from agents.run import play_run

        threads = None if args.threads == "auto" else args.threads
        episodes = play_run(args.source, args.episodes, args.seed, env_kwargs, threads=threads)
    # One colour scale for every episode drawn, so their colours compare.
    scale = args.scale or shared_scale([e.step_rewards for e in episodes])

    def draw(renderer, e):
        return renderer(
            e.prompt, e.tokens, e.step_rewards, e.rm_score, scale=scale, penalty=e.penalty
        )

    if out is None:
        for i, episode in enumerate(episodes):
            print(f"--- episode {i}")
            _show(draw(render_ansi, episode), _color(args))
        return
    if out.suffix.lower() == ".png":
        from PIL import Image

        images = [draw(render_rgb, episode) for episode in episodes]
        rule = np.full((2, images[0].shape[1], 3), 160, dtype=np.uint8)  # between episodes
        stacked = np.concatenate([part for image in images for part in (image, rule)][:-1])
        Image.fromarray(stacked).save(out)
    else:
        fragments = [draw(render_html, episode) for episode in episodes]
        out.write_text(html_page(fragments, f"textgym render {args.source}"), encoding="utf-8")
    print(f"wrote {len(episodes)} episodes to {out}")


def train_rm(args: argparse.Namespace) -> None:
    from textgym.rewards import load_pairs, train_reward_model

    _check_positive(args, "epochs", "batch_size")
    names = ("backbone", "epochs", "learning_rate", "batch_size", "center_coef", "heldout")
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    pairs = load_pairs(None if args.pairs == "bundled" else args.pairs)
    with torch_threads(_threads(args, {"model": options.get("backbone")})):
        summary = train_reward_model(
            pairs, args.out, seed=args.seed, progress=not args.no_progress, **options
        )
    counts, heldout = summary["pairs"], summary["heldout_accuracy"]
    print(
        f"reward model saved to {args.out} ({counts['train']} training pairs, "
        f"{counts['heldout']} held out, {summary['args']['epochs']} epochs, "
        f"{summary['seconds']:.0f} s)"
    )
    held = "no held-out pairs" if heldout is None else f"held-out {heldout:.3f}"
    print(f"pairwise accuracy: train {summary['train_accuracy']:.3f}, {held} (chance 0.5)")
    print(f"rewards: mean {summary['reward_mean']:+.3f}, std {summary['reward_std']:.3f}")
    print(f'use it: gym.make("TextGen-v0", reward_model="{args.out}")')


def main(argv: Sequence[str] | None = None) -> None:
    """Run a ``textgym`` command. An error the user's input caused prints as one line on
    stderr (``textgym COMMAND: message``) with exit status 2; ``--debug`` shows the traceback."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "temperature", 1.0) <= 0:
            raise UsageError(f"--temperature {args.temperature}: expected a number > 0")
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            args.func(args)
    except _USER_ERRORS as err:
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"textgym {args.command}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
