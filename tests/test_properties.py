"""Property-based tests: random sequences of operations on every env and mode.

Hypothesis draws an env (GridWorld single and vector, TextGen single and vector in ``"vocab"``
and ``"topk"`` mode) and a sequence of operations on it: resets (with and without seeds, with
valid and invalid options), steps with valid and invalid actions (out of range, wrong type or
shape, before reset, after the end), policy scorers attached and detached on TextGen (good
ones, and ones that raise or return NaN, inf, the wrong shape or strings), and close. Each
operation is expected to be accepted or refused from what the operations before it did; a
refusal must name the argument at fault. Every operation that was accepted is then replayed
on a fresh env: it must give the same observations, rewards, end flags and infos, so a refused
operation changed nothing (a probe of the env's state is recorded after every refusal, so a
change shows where it happened).

Example counts come from the hypothesis profile loaded in conftest.py (``HYPOTHESIS_PROFILE``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.gridworld import GridWorldEnv

ACCEPT, REFUSE, EITHER = "accept", "refuse", "either"
PROMPTS = ["the movie was", "a quiet drama about a family in", "i watched this film"]
TOP_K = 5
# GridWorld is cheap: it gets this many times the profile's examples.
GRID_FACTOR = 4


@dataclass
class Op:
    """One operation: ``name`` is reset, step, attach, detach, probe or close.

    ``expect`` is what a reset or attach must do (ACCEPT, REFUSE or EITHER); for a step it is
    worked out from the state (`_expectation`). ``names``: words one of which a refusal's message
    must contain (the argument at fault). ``bad_rows``: for a vector step whose actions are only
    out of range, the rows that hold the bad values.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    expect: str = ACCEPT
    names: tuple[str, ...] = ()
    bad_rows: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.kwargs.items())
        return f"{self.name}({args})[{self.expect}]"


@dataclass
class State:
    """What the accepted operations so far imply for the next one."""

    started: bool = False
    ended: bool = False  # single env: the last step terminated
    restart: np.ndarray | None = None  # vector env: rows whose next step is an autoreset
    bad_scorer: bool = False


@dataclass
class Harness:
    """How to build, drive and probe one kind of env."""

    make: Callable[[], Any]
    vector: bool
    num_envs: int = 1
    textgen: bool = False

    def apply(self, env: Any, op: Op) -> Any:
        if op.name == "reset":
            return env.reset(**op.kwargs)
        if op.name == "step":
            return env.step(op.kwargs["action"])
        if op.name in ("attach", "detach"):
            scorer = op.kwargs.get("scorer")
            scorer = SCORERS[scorer](env, self) if isinstance(scorer, str) else scorer
            if self.vector:
                return env.call("attach_policy", scorer)
            return env.unwrapped.attach_policy(scorer)
        if op.name == "probe":
            return self.probe(env)
        if op.name == "close":
            env.close()
            return env.close()  # twice: closing is idempotent
        raise AssertionError(op.name)

    def probe(self, env: Any) -> dict[str, Any]:
        """The state a step depends on, as far as public methods show it."""
        found: dict[str, Any] = {}
        names = ["action_masks"] + (
            ["reference_logprobs"] if self.textgen else ["shortest_path_actions"]
        )
        for name in names:
            try:
                found[name] = getattr(env.unwrapped, name)()
            except Exception as err:  # before reset: the refusal is the state
                found[name] = type(err).__name__
        if self.textgen:
            found["kl_coef"] = env.unwrapped.core.kl_controller.value
        return found


# ---------------------------------------------------------------- scorers


def _uniform(env: Any, harness: Harness) -> Callable:
    actions = env.unwrapped.single_action_space.n if harness.vector else env.action_space.n

    def scorer(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.full((len(obs["input_ids"]), actions), -math.log(actions))

    return scorer


def _reference(env: Any, harness: Harness) -> Callable:
    """The reference's own log-probs: every KL step reward is 0."""
    core = env.unwrapped.core

    def scorer(obs: dict[str, np.ndarray]) -> np.ndarray:
        return core.reference_logprobs(core.scoring_rows)

    return scorer


def _hashed(env: Any, harness: Harness) -> Callable:
    """A deterministic policy that depends on the observation, returning a float32 tensor."""
    actions = env.unwrapped.single_action_space.n if harness.vector else env.action_space.n

    def scorer(obs: dict[str, np.ndarray]) -> torch.Tensor:
        seen = torch.as_tensor(obs["input_ids"] * obs["attention_mask"]).sum(-1, keepdim=True)
        logits = torch.sin(seen.double() * 0.37 * torch.arange(actions))
        return torch.log_softmax(logits, -1).float()

    return scorer


def _bad(make_output: Callable[[int, int], Any]) -> Callable:
    def build(env: Any, harness: Harness) -> Callable:
        actions = env.unwrapped.single_action_space.n if harness.vector else env.action_space.n
        return lambda obs: make_output(len(obs["input_ids"]), actions)

    return build


def _raises(rows: int, actions: int) -> Any:
    raise RuntimeError("this scorer always fails")


SCORERS: dict[str, Callable[[Any, Harness], Callable]] = {
    "uniform": _uniform,
    "reference": _reference,
    "hashed": _hashed,
    "raises": _bad(_raises),
    "nan": _bad(lambda b, a: np.full((b, a), np.nan)),
    "inf": _bad(lambda b, a: np.full((b, a), np.inf)),
    "minus_inf": _bad(lambda b, a: np.full((b, a), -np.inf)),
    "zeros": _bad(lambda b, a: np.zeros((b, a))),  # probabilities that sum to a, not 1
    "one_too_many_actions": _bad(lambda b, a: np.full((b, a + 1), -math.log(a + 1))),
    "one_too_many_rows": _bad(lambda b, a: np.full((b + 1, a), -math.log(a))),
    "unbatched": _bad(lambda b, a: np.full(a, -math.log(a))),
    "strings": _bad(lambda b, a: np.full((b, a), "x")),
    "integers": _bad(lambda b, a: np.zeros((b, a), dtype=np.int64)),
    "none": _bad(lambda b, a: None),
}
GOOD_SCORERS = ["uniform", "reference", "hashed"]
BAD_SCORERS = [name for name in SCORERS if name not in GOOD_SCORERS]


def _attach_ops() -> st.SearchStrategy[Op]:
    return st.one_of(
        st.sampled_from(GOOD_SCORERS).map(lambda s: Op("attach", {"scorer": s})),
        st.sampled_from(BAD_SCORERS).map(lambda s: Op("attach", {"scorer": s})),
        st.just(Op("detach", {"scorer": None})),
        st.sampled_from([3, ["not", "callable"]]).map(
            lambda s: Op("attach", {"scorer": s}, REFUSE, ("scorer",))
        ),
    )


# ---------------------------------------------------------------- shared op strategies

SEEDS = st.integers(0, 2**32 - 1)
BAD_SEEDS = st.sampled_from([-1, 1.5, "3", True, b"1", [1, 2, 3, 4, 5, 6, 7]])
Part = tuple[Any, str, tuple[str, ...]]  # (value, expectation, names a refusal must contain)


@dataclass
class Ops:
    """Strategies for one kind of operation: ``any`` (valid three times in four, so that
    sequences get far enough to meet every state) and ``first``, valid ones that a fresh env
    accepts."""

    first: st.SearchStrategy[Op]
    any: st.SearchStrategy[Op]


def _weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """A draw from one of the strategies, each chosen in proportion to its weight (shrinking
    towards the first). ``st.one_of`` chooses evenly and cannot be weighted by repeats."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def _mostly(
    valid: st.SearchStrategy,
    invalid: st.SearchStrategy,
    build: Callable,
    first: st.SearchStrategy | None = None,
) -> Ops:
    any_op = _weighted((3, valid), (1, invalid)).map(build)
    return Ops((valid if first is None else first).map(build), any_op)


def _accepted(values: st.SearchStrategy) -> st.SearchStrategy[Part]:
    return values.map(lambda value: (value, ACCEPT, ()))


def _refused(values: st.SearchStrategy, *names: str) -> st.SearchStrategy[Part]:
    return values.map(lambda value: (value, REFUSE, names))


def _combine(expects: list[str]) -> str:
    if REFUSE in expects:
        return REFUSE
    return EITHER if EITHER in expects else ACCEPT


def _reset(parts: list[Part]) -> Op:
    """A reset from its ``seed`` and ``options`` parts and, for a vector env, a reset mask
    (a mask goes into the options where they are a dict or None)."""
    (seed, *_), (options, *_) = parts[:2]
    if len(parts) == 3 and parts[2][0] is not None and isinstance(options, dict | None):
        options = {**(options or {}), "reset_mask": parts[2][0]}
    else:
        parts = parts[:2]
    names = tuple(name for _, _, part_names in parts for name in part_names)
    return Op("reset", {"seed": seed, "options": options}, _combine([p[1] for p in parts]), names)


def _single_reset_ops(
    options: st.SearchStrategy[Part], bad_options: st.SearchStrategy[Part]
) -> Ops:
    seeds = _accepted(st.one_of(st.none(), SEEDS, SEEDS.map(np.int64)))
    return _mostly(
        st.tuples(seeds, options),
        st.one_of(st.tuples(_refused(BAD_SEEDS, "seed"), options), st.tuples(seeds, bad_options)),
        lambda parts: _reset(list(parts)),
    )


def _vector_reset_ops(
    n: int, options: st.SearchStrategy[Part], bad_options: st.SearchStrategy[Part]
) -> Ops:
    """Resets of a vector env: seeds (one, or a list of one per row), full or partial."""
    seeds = _accepted(
        st.one_of(st.none(), SEEDS, st.lists(st.none() | SEEDS, min_size=n, max_size=n))
    )
    wrong_length = st.integers(0, n + 2).filter(lambda k: k != n)
    bad_seeds = _refused(
        st.one_of(
            wrong_length.flatmap(lambda k: st.lists(SEEDS, min_size=k, max_size=k)),
            st.sampled_from([-1, "0", 2.5]),
            st.lists(st.sampled_from([-5, "1", 0.5]), min_size=n, max_size=n),
        ),
        "seed",
    )
    masks = _accepted(
        st.one_of(
            st.none(),
            st.tuples(st.lists(st.booleans(), min_size=n, max_size=n), st.integers(0, n - 1)).map(
                lambda parts: np.array(parts[0]) | (np.arange(n) == parts[1])
            ),
        )
    )
    bad_masks = _refused(
        st.sampled_from(
            [
                np.zeros(n, dtype=bool),
                np.ones(n + 1, dtype=bool),
                np.ones((1, n), dtype=bool),
                np.ones(n, dtype=np.int64),
                [True] * n,
            ]
        ),
        "reset_mask",
    )
    return _mostly(
        st.tuples(seeds, options, masks),
        st.one_of(
            st.tuples(bad_seeds, options, masks),
            st.tuples(seeds, bad_options, masks),
            st.tuples(seeds, options, bad_masks),
        ),
        lambda parts: _reset(list(parts)),
        first=st.tuples(seeds, options),  # a partial reset needs a full one before it
    )


def _single_step_ops(actions: int) -> Ops:
    valid = st.integers(0, actions - 1)
    bad = st.one_of(
        st.sampled_from([-1, actions, actions + 7, 1.5, "a", None, True]),
        valid.map(lambda a: [a]),
        valid.map(lambda a: np.array([a])),
        valid.map(lambda a: np.array([[a]])),
        valid.map(float),
    )
    return _mostly(
        st.one_of(valid, valid.map(np.int64)).map(lambda a: Op("step", {"action": a})),
        bad.map(lambda a: Op("step", {"action": a}, REFUSE, ("action",))),
        lambda op: op,
    )


def _vector_step_ops(n: int, actions: int) -> Ops:
    valid = st.lists(st.integers(0, actions - 1), min_size=n, max_size=n).map(np.array)

    def out_of_range(parts: tuple) -> Op:
        good, row, value = parts
        bad = good.copy()
        bad[row] = value
        return Op("step", {"action": bad}, REFUSE, ("actions",), bad_rows=(row,))

    malformed = st.one_of(
        valid.map(lambda a: a[:-1]),
        valid.map(lambda a: np.append(a, 0)),
        valid.map(lambda a: a[:, None]),
        valid.map(lambda a: a[None]),
        valid.map(lambda a: a.astype(float)),
        valid.map(lambda a: a.astype(str)),
        st.none(),
    )
    return _mostly(
        st.one_of(valid, valid.map(np.ndarray.tolist)).map(lambda a: Op("step", {"action": a})),
        st.one_of(
            st.tuples(valid, st.integers(0, n - 1), st.sampled_from([-1, actions, 10**6])).map(
                out_of_range
            ),
            malformed.map(lambda a: Op("step", {"action": a}, REFUSE, ("actions",))),
        ),
        lambda op: op,
    )


# ---------------------------------------------------------------- the driver


def _expectation(op: Op, state: State, harness: Harness) -> tuple[str, tuple[str, ...]]:
    if op.name == "reset":
        if harness.vector and "reset_mask" in _options(op) and not state.started:
            return REFUSE, (*op.names, "reset_mask", "reset")  # a partial reset needs a full one
        return op.expect, op.names
    if op.name != "step":
        return op.expect, op.names
    expects, names = [op.expect], list(op.names)
    if not state.started or state.ended:
        expects.append(REFUSE)
        names.append("reset")
    if op.bad_rows is not None and state.started and state.restart[list(op.bad_rows)].all():
        # Only rows that autoreset, whose actions are ignored, hold bad values.
        expects = [EITHER if e == REFUSE else e for e in expects]
    if state.bad_scorer and state.started and not state.ended:
        # The scorer runs unless every row autoresets on this step.
        all_restart = harness.vector and state.restart.all()
        expects.append(EITHER if all_restart else REFUSE)
        names.append("scorer")
    return _combine(expects), tuple(names)


def _options(op: Op) -> dict[str, Any]:
    options = op.kwargs.get("options")
    return options if isinstance(options, dict) else {}


def _update(state: State, op: Op, result: Any, harness: Harness) -> None:
    if op.name == "reset":
        state.started, state.ended = True, False
        mask = _options(op).get("reset_mask")
        if harness.vector:
            state.restart = (
                np.zeros(harness.num_envs, dtype=bool) if mask is None else (state.restart & ~mask)
            )
    elif op.name == "step":
        _, _, terminated, truncated, _ = result
        if harness.vector:
            state.restart = np.asarray(terminated) | np.asarray(truncated)
        else:
            state.ended = bool(terminated)  # GridWorld's TimeLimit truncation may step on
    elif op.name in ("attach", "detach"):
        state.bad_scorer = op.kwargs.get("scorer") in BAD_SCORERS


def _check_refusal(err: Exception, op: Op, names: tuple[str, ...]) -> None:
    """The message names the argument at fault; a bad scalar seed or action is shown too."""
    message = str(err).lower()
    assert any(name.lower() in message for name in names), (
        f"{op!r} was refused with {err!r}, which names none of {names}"
    )
    if names == op.names and names in (("seed",), ("action",)):  # refused for its value alone
        value = op.kwargs["seed" if names == ("seed",) else "action"]
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            assert repr(value) in str(err), (
                f"{op!r} was refused with {err!r}, which does not show the value received"
            )


def _run(harness: Harness, ops: list[Op]) -> None:
    """Drive a fresh env with ``ops``, then replay the accepted ones on another fresh env."""
    env = harness.make()
    state = State(restart=np.zeros(harness.num_envs, dtype=bool))
    accepted: list[tuple[Op, Any]] = []
    for op in ops:
        expect, names = _expectation(op, state, harness)
        try:
            result = harness.apply(env, op)
        except Exception as err:
            event(f"refused: {op.name}, {names}")
            assert expect != ACCEPT, f"{op!r} was refused: {err!r}"
            _check_refusal(err, op, names)
            probe = Op("probe")
            accepted.append((probe, harness.apply(env, probe)))
            continue
        assert expect != REFUSE, f"{op!r} was accepted; expected a refusal naming {names}"
        event(f"accepted: {op.name}" + (" with a bad scorer" if state.bad_scorer else ""))
        if op.name == "step" and np.any(result[2]):
            event("an episode ended")
        if op.name == "step" and np.any(result[3]):
            event("an episode was truncated")
        if op.name == "step" and harness.vector and state.restart.any():
            event("a row autoreset")
        if "reset_mask" in _options(op) and not _options(op)["reset_mask"].all():
            event("a partial reset")
        accepted.append((op, result))
        _update(state, op, result, harness)
    shadow = harness.make()
    for i, (op, result) in enumerate(accepted):
        _assert_same(harness.apply(shadow, op), result, f"accepted op {i} {op!r}")
    env.close()
    shadow.close()


def _assert_same(replayed: Any, recorded: Any, where: str) -> None:
    """Equal, floats to float32 rounding (NaN equal to NaN)."""
    if isinstance(recorded, dict):
        assert isinstance(replayed, dict) and replayed.keys() == recorded.keys(), where
        for key in recorded:
            _assert_same(replayed[key], recorded[key], f"{where}[{key!r}]")
    elif isinstance(recorded, tuple | list):
        assert type(replayed) is type(recorded) and len(replayed) == len(recorded), where
        for i, (a, b) in enumerate(zip(replayed, recorded)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(recorded, np.ndarray) and recorded.dtype.kind in "fc":
        np.testing.assert_allclose(replayed, recorded, rtol=1e-6, atol=1e-7, err_msg=where)
    elif isinstance(recorded, float | np.floating):
        assert replayed == pytest.approx(recorded, rel=1e-6, abs=1e-7, nan_ok=True), where
    else:
        np.testing.assert_equal(replayed, recorded, err_msg=where)


def _seeded(env: Any) -> Any:
    """Seed the generator a reset without a seed uses, so a fresh env's first one repeats."""
    env.unwrapped.np_random = np.random.default_rng(2024)
    return env


def _ops(resets: Ops, steps: Ops, *others: st.SearchStrategy[Op]) -> st.SearchStrategy[list[Op]]:
    """Mostly steps, some resets and others, and a close at the end half of the time; most
    sequences begin with a valid reset."""
    one = _weighted((6, steps.any), (1, resets.any), *((1, other) for other in others))
    start = _weighted((3, resets.first), (1, one)).map(lambda op: [op])
    close = st.sampled_from([[], [Op("close")]])
    return st.tuples(start, st.lists(one, min_size=6, max_size=50), close).map(
        lambda parts: parts[0] + parts[1] + parts[2]
    )


def _grid_settings() -> settings:
    return settings(max_examples=GRID_FACTOR * settings.default.max_examples)


# ---------------------------------------------------------------- GridWorld

GRID_CONFIGS = [
    {},
    {"obs_mode": "grid", "map": ["S.F", "..D"]},
    {"obs_mode": "tokens", "map": ["SD"]},
    {"obs_mode": "grid", "random_map": True, "size": 3},
    {"obs_mode": "tokens", "random_map": True, "size": 4},
]
GRID_PARAMS = st.tuples(
    st.sampled_from(GRID_CONFIGS), st.sampled_from([0.0, 0.3]), st.sampled_from([2, 5, 100])
)
GRID_OPTIONS = _accepted(st.sampled_from([None, {}]))
GRID_BAD_OPTIONS = _refused(
    st.sampled_from([{"prompt_index": 0}, {"foo": None}, "options", 3]), "options"
)


@_grid_settings()
@given(params=GRID_PARAMS, data=st.data())
def test_gridworld_refusals_change_nothing(params: tuple, data: st.DataObject) -> None:
    config, slip, _ = params
    # The env itself: gymnasium's TimeLimit zeroes its step count before the env can refuse a
    # reset, so through gym.make a refused reset restarts the count of the episode in progress.
    harness = Harness(lambda: _seeded(GridWorldEnv(slip=slip, **config)), vector=False)
    bad_options = st.one_of(
        GRID_BAD_OPTIONS, _refused(st.just({"reset_mask": np.array([True])}), "options")
    )
    resets = _single_reset_ops(GRID_OPTIONS, bad_options)
    ops = data.draw(_ops(resets, _single_step_ops(4), st.just(Op("probe"))))
    _run(harness, ops)


@_grid_settings()
@given(params=GRID_PARAMS, n=st.integers(1, 3), data=st.data())
def test_gridworld_vector_refusals_change_nothing(
    params: tuple, n: int, data: st.DataObject
) -> None:
    config, slip, steps = params

    def make() -> Any:
        return _seeded(
            gym.make_vec(
                "GridWorld-v0",
                num_envs=n,
                vectorization_mode="vector_entry_point",
                slip=slip,
                max_episode_steps=steps,
                **config,
            )
        )

    resets = _vector_reset_ops(n, GRID_OPTIONS, GRID_BAD_OPTIONS)
    ops = data.draw(_ops(resets, _vector_step_ops(n, 4), st.just(Op("probe"))))
    _run(Harness(make, vector=True, num_envs=n), ops)


# ---------------------------------------------------------------- TextGen

TEXTGEN_PARAMS = st.fixed_dictionaries(
    {
        "max_new_tokens": st.integers(1, 3),
        "kl_estimator": st.sampled_from(["k1", "k2", "k3"]),
        "kl_target": st.sampled_from([None, 0.5]),
    }
)


def _textgen_kwargs(model: Any, action_mode: str, params: dict) -> dict[str, Any]:
    return {
        "model": str(model),
        "prompts": PROMPTS,
        "max_prompt_tokens": 12,
        "action_mode": action_mode,
        "top_k": TOP_K,
        "kl_horizon": 4,  # so that an adaptive beta moves within an example
        **params,
    }


def _prompt_options(vector: bool) -> tuple[st.SearchStrategy[Part], st.SearchStrategy[Part]]:
    """Valid and invalid options of a TextGen reset.

    A vector env's prompt options are its own addition to gymnasium's reset: either outcome,
    but a refusal must name them and change nothing.
    """
    index = st.integers(0, len(PROMPTS) - 1)
    chosen = st.one_of(
        index.map(lambda i: {"prompt_index": i}),
        index.map(lambda i: {"prompt_index": np.int64(i)}),
        st.just({"prompt": "a short prompt"}),
    )
    if vector:
        chosen = chosen.map(lambda options: (options, EITHER, ("options", "prompt")))
    else:
        chosen = _accepted(chosen)
    valid = st.one_of(_accepted(st.sampled_from([None, {}])), chosen)
    invalid = [
        _refused(
            st.sampled_from([-1, len(PROMPTS), 100, "1", 1.5, True]).map(
                lambda i: {"prompt_index": i}
            ),
            "prompt_index",
        ),
        _refused(st.sampled_from([42, b"bytes", 3.5]).map(lambda p: {"prompt": p}), "prompt"),
        _refused(st.just({"prompt": "x", "prompt_index": 0}), "prompt"),
        _refused(st.sampled_from([{"foo": 1}, {"seed": 3}, "options"]), "options"),
    ]
    if not vector:
        invalid.append(_refused(st.just({"reset_mask": np.array([True])}), "options"))
    return valid, st.one_of(*invalid)


@pytest.fixture(scope="module")
def vocab_size(tiny_gpt2) -> int:
    return gym.make("TextGen-v0", model=str(tiny_gpt2), prompts=PROMPTS).action_space.n


# The no-scorer warning and the passive checker's notes are not what these tests check.
@pytest.mark.filterwarnings("ignore")
@given(params=TEXTGEN_PARAMS, action_mode=st.sampled_from(["vocab", "topk"]), data=st.data())
def test_textgen_refusals_change_nothing(
    tiny_gpt2, vocab_size: int, params: dict, action_mode: str, data: st.DataObject
) -> None:
    kwargs = _textgen_kwargs(tiny_gpt2, action_mode, params)
    # Without gymnasium's passive checker: once a first reset is refused, it fails the first
    # step after the next reset with a TypeError of its own (gymnasium 1.4).
    harness = Harness(
        lambda: _seeded(gym.make("TextGen-v0", disable_env_checker=True, **kwargs)),
        vector=False,
        textgen=True,
    )
    actions = TOP_K if action_mode == "topk" else vocab_size
    ops = data.draw(
        _ops(
            _single_reset_ops(*_prompt_options(vector=False)),
            _single_step_ops(actions),
            _attach_ops(),
            st.just(Op("probe")),
        )
    )
    _run(harness, ops)


@pytest.mark.filterwarnings("ignore")
@given(
    params=TEXTGEN_PARAMS,
    action_mode=st.sampled_from(["vocab", "topk"]),
    n=st.integers(1, 3),
    data=st.data(),
)
def test_textgen_vector_refusals_change_nothing(
    tiny_gpt2, vocab_size: int, params: dict, action_mode: str, n: int, data: st.DataObject
) -> None:
    kwargs = _textgen_kwargs(tiny_gpt2, action_mode, params)

    def make() -> Any:
        return _seeded(
            gym.make_vec(
                "TextGen-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs
            )
        )

    harness = Harness(make, vector=True, num_envs=n, textgen=True)
    actions = TOP_K if action_mode == "topk" else vocab_size
    ops = data.draw(
        _ops(
            _vector_reset_ops(n, *_prompt_options(vector=True)),
            _vector_step_ops(n, actions),
            _attach_ops(),
            st.just(Op("probe")),
        )
    )
    _run(harness, ops)
