"""The ``textgym`` command line: its shared machinery and the commands that need only the envs.

``textgym rollout ENV``: play a few episodes and render them with their per-step rewards,
with the reference policy on TextGen (``--temperature`` or ``--policy random`` to see the
KL penalty bite) and random actions on GridWorld.

``textgym train-rm``: a Bradley-Terry reward model from preference pairs (`textgym.rewards`).

The commands that train or load agents (``train``, ``eval``, ``compare``, ``render``,
``kl-experiment``) live with the agents, in `textgym_agents.cli`, which is the ``textgym``
console script: this package imports no agent code.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen_core import ScorerError
from textgym.rewards import RewardModelError
from textgym.threads import ONE_THREAD_BELOW_BYTES, default_threads, torch_threads

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# The first lines of `textgym --help`.
DESCRIPTION = """\
textgym: text generation as a Gymnasium environment, next to a gridworld.
Every generated token pays a KL penalty against a frozen reference model and the
finished text earns a reward-model score. Play the envs, train agents into run
directories, evaluate and compare them."""


class UsageError(ValueError):
    """A command-line argument that cannot be used; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line, like the commands' own."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# The --color option, for the commands that print ANSI colours.
COLOR = argparse.ArgumentParser(add_help=False)
COLOR.add_argument(
    "--color",
    choices=["auto", "always", "never"],
    default="auto",
    help="ANSI colours: on a terminal only (auto, the default), always, or never",
)

# What a user's input can cause, a reward model or scorer of theirs included: printed as one
# line (``--debug`` for the traceback).
# ModuleNotFoundError: an optional extra that is not installed (the message says which).
_USER_ERRORS = (
    ValueError,
    TypeError,
    OSError,
    ModuleNotFoundError,
    gym.error.Error,
    RewardModelError,
    ScorerError,
)


def parse_env_args(pairs: Sequence[str], env_ids: Sequence[str] = ()) -> dict[str, Any]:
    """``["max_new_tokens=8", "action_mode=topk"]`` -> keyword arguments (literals parsed).

    :param pairs: the ``--env-arg`` values, ``key=value`` each.
    :param env_ids: the envs the arguments are for: a key that one of them does not take
        (`env_keywords`) is refused, naming the closest valid key and listing them all. An id
        that is not registered is left to the command, which names it.
    """
    kwargs, given = {}, {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env-arg {pair!r}: expected key=value")
        given[key] = pair
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw
    for env_id in env_ids:
        try:
            valid = env_keywords(env_id)
        except gym.error.Error:
            continue
        if valid is None:
            continue
        for key, pair in given.items():
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(
                    f"--env-arg {pair!r}: {env_id} takes no argument {key!r}{hint}; expected "
                    f"one of {', '.join(valid)}"
                )
    return kwargs


# Keywords gym.make takes itself, for any env (besides the env's own).
_MAKE_KEYWORDS = ("max_episode_steps", "disable_env_checker")


def env_keywords(env_id: str) -> list[str] | None:
    """The keyword arguments ``gym.make(env_id, ...)`` takes: the env constructor's (TextGen's
    passes every keyword but ``render_mode`` on to `TextGenCore`: the core's keywords), then
    gym.make's own. None for a constructor that takes any keyword (``**kwargs``) and passes
    them where this cannot see.

    :raises gymnasium.error.Error: ``env_id`` is not registered.
    """
    from gymnasium.envs.registration import load_env_creator

    from textgym.envs.textgen import TextGenEnv
    from textgym.envs.textgen_core import TextGenCore

    spec = gym.spec(env_id)
    creator = spec.entry_point
    creator = load_env_creator(creator) if isinstance(creator, str) else creator
    parameters = list(inspect.signature(creator).parameters.values())
    if creator is TextGenEnv:  # TextGenCore(1, **kwargs): its keyword-only arguments
        core = inspect.signature(TextGenCore).parameters.values()
        parameters += [p for p in core if p.kind is p.KEYWORD_ONLY]
    elif any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    named = (p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return list(dict.fromkeys((*named, *_MAKE_KEYWORDS)))


def add_env_arg(
    parser: argparse.ArgumentParser, help: str = "constructor argument for the env (repeatable)"
) -> None:
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help=help)


def _text_policy(env: gym.Env, policy: str, temperature: float, seed: int):
    """``act(obs)`` of the TextGen policy asked for, attached as the env's KL scorer: the
    reference at ``temperature``, or uniform over the actions."""
    if policy == "reference":
        from textgym.reference import ReferencePolicy

        reference = ReferencePolicy(env.unwrapped.core, temperature, seed)
        env.unwrapped.attach_policy(reference)
        return lambda obs: int(reference.act()[0])
    n = env.action_space.n
    env.unwrapped.attach_policy(lambda obs: np.full((len(obs["input_ids"]), n), -np.log(n)))
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(n))


def use_color(args: argparse.Namespace) -> bool:
    """``--color``: ANSI colours on a terminal only, unless forced either way."""
    return args.color == "always" or (args.color == "auto" and sys.stdout.isatty())


def show(text: str, color: bool) -> None:
    """Print ``text``, without its ANSI colour codes unless ``color``."""
    print(text if color else _ANSI.sub("", text))


def choose_threads(args: argparse.Namespace, env_kwargs: dict[str, Any]) -> int:
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
    check_positive(args, "episodes")
    try:
        gym.spec(args.env)
    except gym.error.Error as err:
        raise UsageError(f"env {args.env!r}: {err}") from err
    kwargs = parse_env_args(args.env_arg, [args.env])
    with torch_threads(choose_threads(args, kwargs)):
        _rollout(args, kwargs)


def _rollout(args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
    color = use_color(args)
    env = gym.make(args.env, render_mode="ansi", **kwargs)
    is_text = hasattr(env.unwrapped, "attach_policy")
    if is_text:
        act = _text_policy(env, args.policy, args.temperature, args.seed)
    else:
        env.action_space.seed(args.seed)

        def act(obs):
            return env.action_space.sample()

    returns = []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        rewards, done = [], False
        if not is_text:
            show(env.render(), color)
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs))
            rewards.append(reward)
            done = terminated or truncated
        returns.append(sum(rewards))
        print(f"--- episode {episode}: {len(rewards)} steps, return {sum(rewards):+.3f}")
        if is_text:
            show(env.render(), color)
        else:
            print("rewards per step:", " ".join(f"{r:+g}" for r in rewards))
            show(env.render(), color)
    print(f"mean return over {args.episodes} episodes: {np.mean(returns):+.3f}")


def new_parser(
    epilog: str = "run textgym COMMAND --help for a command's options",
) -> tuple[argparse.ArgumentParser, Callable[..., argparse.ArgumentParser]]:
    """The ``textgym`` parser without commands, and ``add_command(name, help, *parents)``,
    which adds one with the options every command shares (``--debug``); ``epilog`` ends
    ``textgym --help``."""
    parser = _Parser(
        prog="textgym",
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not one line"
    )

    def add_command(name: str, help: str, *parents: argparse.ArgumentParser):
        return commands.add_parser(name, help=help, parents=[common, *parents])

    return parser, add_command


def add_env_commands(add_command: Callable[..., argparse.ArgumentParser]) -> None:
    """The commands that need only the envs: ``rollout`` and ``train-rm``."""
    roll = add_command("rollout", "play and render a few episodes", COLOR)
    roll.add_argument("env", help="a registered env id, e.g. TextGen-v0 or GridWorld-v1")
    roll.add_argument("--episodes", type=int, default=3)
    roll.add_argument("--seed", type=int, default=0)
    add_env_arg(roll)
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
    add_threads(roll)
    roll.set_defaults(func=rollout)

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
    add_threads(trm)
    trm.set_defaults(func=train_rm)


def build_parser() -> argparse.ArgumentParser:
    """The env commands alone (``python -m textgym.cli``); the ``textgym`` command adds the
    agents' (`textgym_agents.cli`)."""
    parser, add_command = new_parser()
    add_env_commands(add_command)
    return parser


def add_threads(parser: argparse.ArgumentParser, run: bool = False) -> None:
    """``--threads`` (``run``: for a command that reads a run directory)."""
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


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Refuse options ``names`` below 1 (None: unset, fine)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {value}: expected an integer >= 1")


def train_rm(args: argparse.Namespace) -> None:
    from textgym.rewards import load_pairs, train_reward_model

    check_positive(args, "epochs", "batch_size")
    names = ("backbone", "epochs", "learning_rate", "batch_size", "center_coef", "heldout")
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    pairs = load_pairs(None if args.pairs == "bundled" else args.pairs)
    with torch_threads(choose_threads(args, {"model": options.get("backbone")})):
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


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` and run its command. An error the user's input caused prints as one
    line on stderr (``textgym COMMAND: message``) with exit status 2; Ctrl-C (SIGINT) prints
    one line too (``textgym COMMAND: interrupted``, or the `KeyboardInterrupt`'s message: where
    a command stopped) with exit status 130; ``--debug`` shows the traceback of either.

    The command sees ``argv`` as given in ``args.argv`` (to repeat it in a message).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
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
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        message = " ".join(str(err).split()) or "interrupted"
        print(f"textgym {args.command}: {message}", file=sys.stderr)
        raise SystemExit(130) from None  # 128 + SIGINT, as shells report it


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m textgym.cli``: the env commands alone."""
    run(build_parser(), argv)


if __name__ == "__main__":
    main()
