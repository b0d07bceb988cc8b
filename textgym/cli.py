"""The ``textgym`` command line.

``textgym rollout ENV``: play a few episodes and render them with their per-step rewards,
with the reference policy on TextGen (``--temperature`` or ``--policy random`` to see the
KL penalty bite) and random actions on GridWorld.

``textgym train ENV --agent NAME``, ``textgym eval RUN_DIR`` and ``textgym compare``: train
agents from the zoo (``agents/``) into run directories, summarise them, compare them.
"""

from __future__ import annotations

import argparse
import ast
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the envs)


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["max_new_tokens=8", "action_mode=topk"]`` -> keyword arguments (literals parsed)."""
    kwargs = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env-arg {pair!r}: expected key=value")
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw
    return kwargs


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


def rollout(args: argparse.Namespace) -> None:
    kwargs = parse_env_args(args.env_arg)
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
            print(env.render())
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            rewards.append(reward)
            done = terminated or truncated
        returns.append(sum(rewards))
        print(f"--- episode {episode}: {len(rewards)} steps, return {sum(rewards):+.3f}")
        if is_text:
            print(env.render())
        else:
            print("rewards per step:", " ".join(f"{r:+g}" for r in rewards))
            print(env.render())
    print(f"mean return over {args.episodes} episodes: {np.mean(returns):+.3f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textgym", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    roll = commands.add_parser("rollout", help="play and render a few episodes")
    roll.add_argument("env", help="a registered env id, e.g. TextGen-v0 or GridWorld-v0")
    roll.add_argument("--episodes", type=int, default=3)
    roll.add_argument("--seed", type=int, default=0)
    roll.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor argument for the env (repeatable)",
    )
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
    roll.set_defaults(func=rollout)

    trn = commands.add_parser("train", help="train an agent from the zoo into a run directory")
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
    trn.set_defaults(func=train)

    evl = commands.add_parser("eval", help="summarise a trained run directory afresh")
    evl.add_argument("run_dir", help="a directory written by `textgym train`")
    evl.add_argument("--episodes", type=int, default=100)
    evl.add_argument(
        "--seed", type=int, default=None, help="evaluation seed (default: the run's held-out one)"
    )
    evl.set_defaults(func=evaluate)

    cmp = commands.add_parser("compare", help="several agents on several envs and seeds")
    cmp.add_argument("--envs", nargs="+", required=True, metavar="ENV")
    cmp.add_argument("--agents", nargs="+", required=True, metavar="NAME")
    cmp.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S")
    _add_run_arguments(cmp)
    cmp.add_argument("--out", default="runs/compare", help="where the runs and tables go")
    cmp.set_defaults(func=compare)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=int, default=None, help="env steps (default: the zoo's budget)"
    )
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor argument for the env (repeatable)",
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=100, help="episodes of each evaluation"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"{flag} {value}: expected an integer >= 1")


def train(args: argparse.Namespace) -> None:
    from agents.run import format_summary
    from agents.run import train as train_run

    _check_positive(args, "steps", "eval_episodes", "checkpoint_every")
    summary = train_run(
        args.env,
        args.agent,
        steps=args.steps,
        seed=args.seed,
        env_kwargs=parse_env_args(args.env_arg),
        out=args.out,
        progress=not args.no_progress,
        checkpoint_every=args.checkpoint_every,
        eval_episodes=args.eval_episodes,
    )
    print(format_summary(summary))


def evaluate(args: argparse.Namespace) -> None:
    from agents.run import evaluate_run, format_summary

    _check_positive(args, "episodes")
    print(format_summary(evaluate_run(args.run_dir, episodes=args.episodes, seed=args.seed)))


def compare(args: argparse.Namespace) -> None:
    from agents.run import compare as compare_runs

    _check_positive(args, "steps", "eval_episodes")
    table = compare_runs(
        args.envs,
        args.agents,
        args.seeds,
        out=args.out,
        steps=args.steps,
        env_kwargs=parse_env_args(args.env_arg),
        eval_episodes=args.eval_episodes,
        progress=not args.no_progress,
    )
    print(table)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "temperature", 1.0) <= 0:
        raise SystemExit(f"--temperature {args.temperature}: expected a number > 0")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        args.func(args)


if __name__ == "__main__":
    sys.exit(main())
