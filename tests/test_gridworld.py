"""GridWorld (v0's 6x6 default map): the single env, its numpy vector env, and both with SB3
agents. GridWorld-v1 and shaping: tests/test_gridworld_v1.py."""

from __future__ import annotations

import hashlib
import pickle
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import textgym  # noqa: F401  (registers GridWorld-v0)
from textgym.envs.gridworld import (
    DEFAULT_MAP,
    DIAMOND,
    DOWN,
    FIRE,
    FLOOR,
    LEFT,
    RIGHT,
    ROBOT,
    TOKEN_VOCAB,
    UP,
    WALL,
    GridWorldEnv,
)
from textgym.envs.gridworld_maps import _action_masks
from textgym.envs.gridworld_vector import GridWorldVectorEnv

OBS_MODES = ["index", "grid", "tokens"]
# FrozenLake's 4x4 map in GridWorld characters: holes are fire, the goal is the diamond.
FROZEN_LAKE_4X4 = ["S...", ".F.F", "...F", "F..D"]
OPEN_3X3 = ["...", ".S.", "..D"]


def _solvable(grid: np.ndarray) -> bool:
    return bool(np.isfinite(_distance(grid)))


def _distance(grid: np.ndarray) -> float:
    """Moves from the robot to the nearest diamond without entering fire (BFS on a "grid"
    observation, independent of the env's own search); inf if there is no such path."""
    rows, cols = grid.shape
    start = tuple(np.argwhere(grid == ROBOT)[0])
    seen, queue = {start: 0}, deque([start])
    while queue:
        r, c = queue.popleft()
        if grid[r, c] == DIAMOND:
            return seen[(r, c)]
        if (r, c) != start and grid[r, c] != FLOOR:
            continue
        for dr, dc in ((0, -1), (1, 0), (0, 1), (-1, 0)):
            nxt = (r + dr, c + dc)
            inside = 0 <= nxt[0] < rows and 0 <= nxt[1] < cols
            if inside and nxt not in seen and grid[nxt] != WALL:
                seen[nxt] = seen[(r, c)] + 1
                queue.append(nxt)
    return np.inf


def _distance_after(grid: np.ndarray, action: int) -> float:
    """`_distance` once the robot has made `action` (0 on the diamond, inf in fire)."""
    rows, cols = grid.shape
    r, c = np.argwhere(grid == ROBOT)[0]
    nr, nc = r + (0, 1, 0, -1)[action], c + (-1, 0, 1, 0)[action]
    if not (0 <= nr < rows and 0 <= nc < cols) or grid[nr, nc] == WALL:
        return _distance(grid)
    if grid[nr, nc] != FLOOR:
        return 0.0 if grid[nr, nc] == DIAMOND else np.inf
    moved = grid.copy()
    moved[r, c], moved[nr, nc] = FLOOR, ROBOT
    return _distance(moved)


def _play(env: gym.Env, actions: list[int]) -> list:
    """Observations, rewards and end flags of `actions`, resetting whenever an episode ends."""
    trace = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            trace.append(env.reset()[0])
    return trace


def _same(a: object, b: object) -> bool:
    return data_equivalence(a, b, exact=True)


# --- checkers ---------------------------------------------------------------------------


# SB3 recommends flat observations; the 2-D "grid" is by design (its MlpPolicy flattens it).
@pytest.mark.filterwarnings("ignore:Your observation  has an unconventional shape")
@pytest.mark.filterwarnings("ignore:.*The environment GridWorld-v0 is out of date")
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("env_id", ["GridWorld-v1", "GridWorld-v0"])
@pytest.mark.parametrize(
    ("obs_mode", "random_map"),
    [(obs_mode, False) for obs_mode in OBS_MODES] + [("grid", True), ("tokens", True)],
)
def test_gymnasium_and_sb3_checkers_pass(env_id: str, obs_mode: str, random_map: bool) -> None:
    env = gym.make(env_id, obs_mode=obs_mode, random_map=random_map)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped)
    for render_mode in ("ansi", "rgb_array"):
        rendered = gym.make(env_id, obs_mode=obs_mode, render_mode=render_mode)
        gym_check_env(rendered.unwrapped)


def test_make_wraps_in_time_limit_of_100_steps() -> None:
    env = gym.make("GridWorld-v0")
    env.reset(seed=0)
    for _ in range(99):
        _, _, terminated, truncated, _ = env.step(UP)  # the start is on the top edge
        assert not terminated and not truncated
    _, reward, terminated, truncated, info = env.step(UP)
    assert truncated and not terminated and reward == 0.0
    assert info["position"] == (0, 0)


# --- dynamics ---------------------------------------------------------------------------


def test_fire_ends_episode_with_minus_one() -> None:
    env = GridWorldEnv(map=["SF", ".D"])
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(RIGHT)
    assert (reward, terminated, truncated) == (-1.0, True, False)
    assert info["position"] == (0, 1)


def test_diamond_ends_episode_with_plus_one_and_other_steps_give_zero() -> None:
    env = GridWorldEnv(map=["S.", "FD"])
    env.reset(seed=0)
    assert env.step(RIGHT)[1:4] == (0.0, False, False)
    assert env.step(DOWN)[1:4] == (1.0, True, False)


def test_walls_and_edges_leave_robot_in_place() -> None:
    env = GridWorldEnv(map=["S#D", "..."])
    env.reset(seed=0)
    for action in (LEFT, UP, RIGHT):  # edge, edge, wall
        obs, reward, terminated, _, info = env.step(action)
        assert (obs, reward, terminated, info["position"]) == (0, 0.0, False, (0, 0))
    assert env.step(DOWN)[0] == 3


@pytest.mark.parametrize("seed", range(3))
def test_transitions_match_frozen_lake_without_slip(seed: int) -> None:
    lake = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=False).unwrapped
    grid = GridWorldEnv(map=FROZEN_LAKE_4X4)
    actions = np.random.default_rng(seed).integers(0, 4, size=200)
    lake.reset(seed=seed)
    grid.reset(seed=seed)
    for action in actions:
        lake_obs, lake_reward, lake_done, _, _ = lake.step(int(action))
        grid_obs, grid_reward, grid_done, _, _ = grid.step(int(action))
        fell_in_hole = lake_done and lake_reward == 0
        assert grid_obs == lake_obs and grid_done == lake_done
        assert grid_reward == (-1.0 if fell_in_hole else lake_reward)
        if grid_done:
            lake.reset()
            grid.reset()


def test_action_constants_follow_frozen_lake_order() -> None:
    assert (LEFT, DOWN, RIGHT, UP) == (0, 1, 2, 3)
    env = GridWorldEnv(map=OPEN_3X3)
    moved = {}
    for action in range(4):
        env.reset(seed=0)
        moved[action] = env.step(action)[4]["position"]
    assert moved == {LEFT: (1, 0), DOWN: (2, 1), RIGHT: (1, 2), UP: (0, 1)}


def test_slip_moves_perpendicular_with_its_probability_and_is_seeded() -> None:
    env = GridWorldEnv(map=OPEN_3X3, slip=0.3)

    def landing_cells(seed: int) -> list[tuple[int, int]]:
        env.reset(seed=seed)
        cells = []
        for _ in range(3000):
            cells.append(env.step(RIGHT)[4]["position"])
            env.reset()
        return cells

    cells = landing_cells(seed=1)
    assert set(cells) == {(1, 2), (0, 1), (2, 1)}  # right, or slipped up / down
    assert abs(cells.count((1, 2)) / len(cells) - 0.7) < 0.04
    assert abs(cells.count((0, 1)) - cells.count((2, 1))) / len(cells) < 0.05
    assert landing_cells(seed=1) == cells
    assert landing_cells(seed=2) != cells


# Digests of seeded random-action rollouts with slip, recorded before the single and vector
# envs shared one slip function: the random stream (and so every result that depends on it,
# the documented GridWorld agents included) must not change.
PINNED_ROLLOUTS = {
    (("slip", 0.3),): ("34945765cf4daeae", "d85b2a2a3b796e7c"),
    (("slip", 0.3), ("random_map", True), ("obs_mode", "grid")): (
        "9d3eaf6724926bfe",
        "a7ca47fb254880ab",
    ),
}


def _digest(trace: list) -> str:
    return hashlib.sha256(repr(trace).encode()).hexdigest()[:16]


@pytest.mark.parametrize("items", list(PINNED_ROLLOUTS))
def test_seeded_slippery_rollouts_are_unchanged(items: tuple) -> None:
    kwargs = dict(items)
    env = gym.make("GridWorld-v0", **kwargs)
    _, info = env.reset(seed=5)
    trace = [info["position"]]
    for action in np.random.default_rng(1).integers(0, 4, size=600):
        _, reward, terminated, truncated, info = env.step(int(action))
        trace.append((*info["position"], reward, terminated, truncated))
        if terminated or truncated:
            trace.append(env.reset()[1]["position"])
    envs = GridWorldVectorEnv(num_envs=4, **kwargs)
    _, info = envs.reset(seed=5)
    rows = [info["position"].tolist()]
    for actions in np.random.default_rng(1).integers(0, 4, size=(300, 4)):
        _, reward, terminated, truncated, info = envs.step(actions)
        rows.append(tuple(x.tolist() for x in (info["position"], reward, terminated, truncated)))
    assert (_digest(trace), _digest(rows)) == PINNED_ROLLOUTS[items]


def test_default_map_is_the_documented_solvable_map() -> None:
    codes = {".": FLOOR, "S": ROBOT, "#": WALL, "F": FIRE, "D": DIAMOND}
    grid, info = GridWorldEnv(obs_mode="grid").reset(seed=0)
    np.testing.assert_array_equal(grid, [[codes[char] for char in row] for row in DEFAULT_MAP])
    assert info["position"] == (0, 0) and _solvable(grid)
    assert all(f"    {row}\n" in GridWorldEnv.__doc__ for row in DEFAULT_MAP)


# --- random maps --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2, 9))
def test_random_maps_are_solvable(seed: int, size: int) -> None:
    env = GridWorldEnv(size=size, random_map=True, obs_mode="grid")
    grid, _ = env.reset(seed=seed)
    for _ in range(3):
        assert grid.shape == (size, size) and _solvable(grid)
        grid, _ = env.reset()


def test_random_maps_differ_between_resets() -> None:
    env = GridWorldEnv(random_map=True, obs_mode="grid")
    first, _ = env.reset(seed=0)
    grids = [first] + [env.reset()[0] for _ in range(5)]
    assert all(not np.array_equal(first, grid) for grid in grids[1:])


@pytest.mark.parametrize("obs_mode", ["grid", "tokens"])
def test_same_seed_gives_same_map_and_identical_rollout(obs_mode: str) -> None:
    actions = list(np.random.default_rng(0).integers(0, 4, size=150))

    def rollout(seed: int) -> list:
        env = GridWorldEnv(random_map=True, slip=0.2, obs_mode=obs_mode)
        return [env.reset(seed=seed)[0], *_play(env, actions)]

    assert _same(rollout(seed=7), rollout(seed=7))
    assert not _same(rollout(seed=7), rollout(seed=8))


# --- observations -------------------------------------------------------------------------


def test_tokens_spell_the_ansi_rendering_with_a_full_mask() -> None:
    env = GridWorldEnv(obs_mode="tokens", render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert env.vocab_size == len(TOKEN_VOCAB) == 7 and TOKEN_VOCAB[0] == "<pad>"
    assert obs["input_ids"].shape == (6 * 7,) and obs["input_ids"].dtype == np.int64
    assert (obs["attention_mask"] == 1).all()
    assert "".join(TOKEN_VOCAB[i] for i in obs["input_ids"]) == env.render()


def test_grid_marks_the_robot_with_its_own_code() -> None:
    env = GridWorldEnv(map=["S#F", "..D"], obs_mode="grid")
    grid, _ = env.reset(seed=0)
    np.testing.assert_array_equal(grid, [[ROBOT, WALL, FIRE], [FLOOR, FLOOR, DIAMOND]])


@pytest.mark.parametrize("obs_mode", ["grid", "tokens"])
def test_returned_observations_are_fresh_copies(obs_mode: str) -> None:
    env = GridWorldEnv(obs_mode=obs_mode)
    first, _ = env.reset(seed=0)
    arrays = list(first.values()) if isinstance(first, dict) else [first]
    for array in arrays:
        array[...] = 0
    second = env.step(UP)[0]
    assert not _same(first, second)


# --- arguments and errors ---------------------------------------------------------------


def test_custom_map_is_parsed() -> None:
    env = GridWorldEnv(map=("#..D", "S.F."), obs_mode="grid")
    grid, info = env.reset(seed=0)
    assert env.observation_space.shape == (2, 4) and info["position"] == (1, 0)
    np.testing.assert_array_equal(grid, [[WALL, 0, 0, DIAMOND], [ROBOT, 0, FIRE, 0]])


@pytest.mark.parametrize(
    ("bad_map", "expected"),
    [
        ([], "at least one row"),
        (["S.", "..D"], "rectangular"),
        (["S.x", "..D"], "unknown character 'x'"),
        (["...", "..D"], "exactly one start"),
        (["S.S", "..D"], "exactly one start"),
        (["S..", "..."], "at least one diamond"),
        (["S#D", "#.."], "path from 'S' to a 'D'"),
        (["SF.", "F.D"], "path from 'S' to a 'D'"),
    ],
)
def test_invalid_map_raises_value_error_naming_map(bad_map: list[str], expected: str) -> None:
    with pytest.raises(ValueError, match="map") as error:
        GridWorldEnv(map=bad_map)
    assert expected in str(error.value) and repr(bad_map) in str(error.value)


@pytest.mark.parametrize("bad_map", [[["S", "D"]], 42])
def test_map_that_is_not_a_list_of_strings_raises_type_error(bad_map: object) -> None:
    with pytest.raises(TypeError, match="map must be a list of strings"):
        GridWorldEnv(map=bad_map)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"obs_mode": "pixels"}, "obs_mode"),
        ({"render_mode": "human"}, "render_mode"),
        ({"slip": 1.0}, "slip"),
        ({"slip": -0.1}, "slip"),
        ({"slip": float("nan")}, "slip"),
        ({"size": 5}, "size"),
        ({"size": 1, "random_map": True, "obs_mode": "grid"}, "size"),
        ({"size": True, "random_map": True, "obs_mode": "grid"}, "size"),  # not a size
        ({"map": ["SD"], "random_map": True, "obs_mode": "grid"}, "map"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}="):
        GridWorldEnv(**kwargs)


@pytest.mark.parametrize("make", [GridWorldEnv, GridWorldVectorEnv])
def test_index_observations_of_random_maps_are_refused_naming_both(make: type) -> None:
    # The position alone does not show a map that changes at every reset.
    with pytest.raises(ValueError, match="obs_mode='index'.*random_map=True"):
        make(random_map=True)  # obs_mode="index" is the default
    with pytest.raises(ValueError, match="obs_mode='index'.*random_map=True"):
        gym.make("GridWorld-v0", random_map=True, obs_mode="index", size=4)


def test_non_numeric_slip_raises_type_error_naming_slip() -> None:
    with pytest.raises(TypeError, match=r"slip must be a probability in \[0, 1\), got slip='0.1'"):
        GridWorldEnv(slip="0.1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (7, ValueError),
        (4, ValueError),
        (-1, ValueError),
        (np.array([1, 2]), ValueError),
        (1.5, TypeError),
        ("left", TypeError),
        (None, TypeError),
        (True, TypeError),
        (np.array(1.0), TypeError),
    ],
)
def test_bad_action_raises_naming_action_and_leaves_env_usable(
    action: object, error: type[Exception]
) -> None:
    env = GridWorldEnv(slip=0.5)
    env.reset(seed=0)
    env.step(DOWN)
    state = pickle.dumps(env)
    with pytest.raises(error, match=r"action must be an integer in \[0, 4\), got action="):
        env.step(action)  # type: ignore[arg-type]
    clone = pickle.loads(state)
    assert _same(env.step(RIGHT), clone.step(RIGHT))  # state and random stream untouched


@pytest.mark.parametrize("action", [np.int64(2), np.uint8(2), np.int32(2), np.array(2)])
def test_numpy_integer_actions_are_accepted(action: object) -> None:
    env = GridWorldEnv()
    env.reset(seed=0)
    assert env.step(action)[4]["position"] == (0, 1)  # type: ignore[arg-type]


def test_step_before_reset_raises_and_reset_recovers() -> None:
    env = GridWorldEnv()
    with pytest.raises(RuntimeError, match=r"before reset\(\); call env.reset\(\)"):
        env.step(RIGHT)
    env.reset(seed=0)
    assert env.step(RIGHT)[4]["position"] == (0, 1)


def test_step_after_termination_raises_and_reset_recovers() -> None:
    env = GridWorldEnv(map=["SD"])
    env.reset(seed=0)
    assert env.step(RIGHT)[1:3] == (1.0, True)
    with pytest.raises(RuntimeError, match=r"episode ended.*call env.reset\(\)"):
        env.step(LEFT)
    env.reset()
    assert env.step(RIGHT)[1:3] == (1.0, True)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"options": {"prompt_index": 1}},
            ValueError,
            r"options has unknown key\(s\) \['prompt_index'\]",
        ),
        (
            {"options": {"reset_mask": np.array([True])}},
            ValueError,
            "GridWorldEnv.reset takes no options",
        ),
        ({"options": ["reset_mask"]}, TypeError, r"options must be a dict or None"),
        ({"seed": -1}, ValueError, r"seed must be None or an integer >= 0, got seed=-1"),
        ({"seed": 1.5}, ValueError, r"seed must be None or an integer >= 0, got seed=1.5"),
        ({"seed": [1]}, ValueError, r"seed must be None or an integer >= 0, got seed=\[1\]"),
        ({"seed": True}, ValueError, r"got seed=True"),
    ],
)
def test_bad_reset_arguments_are_refused_naming_them_and_change_nothing(
    kwargs: dict, error: type[Exception], message: str
) -> None:
    env = GridWorldEnv(random_map=True, slip=0.5, obs_mode="grid")
    env.reset(seed=0)
    env.step(DOWN)
    state = pickle.dumps(env)
    with pytest.raises(error, match=message):
        env.reset(**kwargs)
    clone = pickle.loads(state)
    assert _same(env.step(RIGHT), clone.step(RIGHT))  # state and random stream untouched
    assert _same(env.reset(), clone.reset())


def test_reset_takes_empty_options_and_numpy_integer_seeds() -> None:
    env = GridWorldEnv(random_map=True, obs_mode="grid")
    first = env.reset(seed=np.int64(3), options={})
    assert _same(first, GridWorldEnv(random_map=True, obs_mode="grid").reset(seed=3))


# --- action masks and rendering -------------------------------------------------------------


def test_action_masks_mark_moves_that_change_position() -> None:
    env = GridWorldEnv(map=["S#D", "..."])
    env.reset(seed=0)
    np.testing.assert_array_equal(env.action_masks(), [False, True, False, False])
    env.step(DOWN)
    np.testing.assert_array_equal(env.action_masks(), [False, False, True, True])
    assert env.action_masks().dtype == np.bool_


def test_action_masks_are_all_true_when_no_move_is_possible() -> None:
    # A valid map always offers a move, so pin the fallback on the shared helper.
    stuck = np.zeros((1, 4), dtype=np.int64)  # every action leads back to cell 0
    np.testing.assert_array_equal(_action_masks(stuck, np.array([0])), [[True] * 4])


def test_shortest_path_actions_walk_the_default_map_in_ten_moves() -> None:
    env = gym.make("GridWorld-v0")
    env.reset(seed=0)
    np.testing.assert_array_equal(env.unwrapped.shortest_path_actions(), [0, 1, 0, 0])
    moves, terminated = 0, False
    while not terminated and moves < 20:
        allowed = env.unwrapped.shortest_path_actions()
        assert allowed.dtype == np.bool_ and allowed.shape == (4,)
        _, reward, terminated, _, _ = env.step(int(np.flatnonzero(allowed)[0]))
        moves += 1
    assert (moves, reward) == (10, 1.0)  # the documented route down the left side
    np.testing.assert_array_equal(env.unwrapped.shortest_path_actions(), [False] * 4)


@pytest.mark.parametrize("seed", range(3))
def test_shortest_path_actions_are_the_moves_that_shorten_the_path(seed: int) -> None:
    # Checked against an independent BFS in every state the robot visits on random maps,
    # moving at random among the moves that do not enter fire.
    env = GridWorldEnv(random_map=True, size=5, obs_mode="grid")
    grid, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(300):
        here = _distance(grid)
        after = np.array([_distance_after(grid, a) for a in range(4)])
        np.testing.assert_array_equal(env.shortest_path_actions(), after == here - 1)
        grid, _, terminated, _, _ = env.step(int(rng.choice(np.flatnonzero(after < np.inf))))
        if terminated:
            grid, _ = env.reset()


def test_following_shortest_path_actions_always_reaches_the_diamond() -> None:
    envs = GridWorldVectorEnv(num_envs=32, random_map=True, size=6, obs_mode="grid")
    grid, _ = envs.reset(seed=0)
    expected = [_distance(g) for g in grid]
    moves = np.zeros(32, dtype=int)
    reached = np.zeros(32, dtype=bool)
    for _ in range(36):
        allowed = envs.shortest_path_actions()
        assert allowed[~reached].any(axis=1).all()
        _, reward, terminated, _, _ = envs.step(allowed.argmax(axis=1))
        moves += ~reached
        assert (reward[~reached] >= 0).all()  # never fire
        reached |= terminated
        if reached.all():
            break
    assert reached.all()
    np.testing.assert_array_equal(moves, expected)


def test_shortest_path_actions_before_reset_raise() -> None:
    with pytest.raises(RuntimeError, match=r"shortest_path_actions\(\) was called before reset"):
        GridWorldEnv().shortest_path_actions()
    with pytest.raises(RuntimeError, match=r"shortest_path_actions\(\) was called before reset"):
        GridWorldVectorEnv(num_envs=2).shortest_path_actions()


def test_ansi_render_shows_robot_and_last_action() -> None:
    env = GridWorldEnv(render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text.splitlines() == ["R" + DEFAULT_MAP[0][1:], *DEFAULT_MAP[1:]]
    env.step(DOWN)
    lines = env.render().splitlines()
    assert lines[:3] == ["  (Down)", "....#.", "R##.F."] and env.render().count("R") == 1


def test_rgb_render_is_uint8_image_and_robot_colour_moves() -> None:
    env = GridWorldEnv(render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    assert before.shape == (6 * 32, 6 * 32, 3) and before.dtype == np.uint8
    robot_colour = before[16, 16].copy()
    env.step(RIGHT)
    after = env.render()
    assert (after[16, 48] == robot_colour).all() and not (after[16, 16] == robot_colour).all()
    colours = {tuple(after[r * 32 + 16, c * 32 + 16]) for r in range(6) for c in range(6)}
    assert len(colours) == 5  # floor, wall, fire, diamond, robot


# --- pickling -----------------------------------------------------------------------------


@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_pickled_env_continues_identically(obs_mode: str) -> None:
    random_map = obs_mode != "index"  # the index alone cannot show a random map
    env = gym.make("GridWorld-v0", obs_mode=obs_mode, random_map=random_map, slip=0.3)
    env.reset(seed=3)
    for action in (RIGHT, DOWN, DOWN):
        env.step(action)
    clone = pickle.loads(pickle.dumps(env))
    actions = list(np.random.default_rng(1).integers(0, 4, size=60))
    assert _same(_play(env, actions), _play(clone, actions))


# --- vector env -----------------------------------------------------------------------------


@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_vector_env_rows_match_single_envs(obs_mode: str) -> None:
    """Native vector env == gymnasium's SyncVectorEnv of N single envs (NEXT_STEP autoreset)."""
    n = 4
    kwargs = {"obs_mode": obs_mode, "max_episode_steps": 30}
    native = gym.make_vec("GridWorld-v0", n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("GridWorld-v0", n, vectorization_mode="sync", **kwargs)
    assert native.observation_space == sync.observation_space
    assert native.action_space == sync.action_space
    assert _same(native.reset(seed=0)[0], sync.reset(seed=0)[0])
    rng = np.random.default_rng(0)
    terminations = truncations = 0
    for _ in range(150):
        actions = rng.integers(0, 4, size=n)
        native_step, sync_step = native.step(actions), sync.step(actions)
        assert _same(native_step[:4], sync_step[:4])
        np.testing.assert_array_equal(
            native_step[4]["position"], np.array(list(sync_step[4]["position"]))
        )
        terminations += native_step[2].sum()
        truncations += native_step[3].sum()
    assert terminations > 0 and truncations > 0  # both kinds of autoreset were compared


def test_vector_env_autoresets_on_next_step() -> None:
    envs = GridWorldVectorEnv(num_envs=2, map=["SD"])
    obs, _ = envs.reset(seed=0)
    np.testing.assert_array_equal(obs, [0, 0])
    obs, reward, terminated, truncated, _ = envs.step(np.array([RIGHT, LEFT]))
    np.testing.assert_array_equal(obs, [1, 0])
    np.testing.assert_array_equal(reward, [1.0, 0.0])
    np.testing.assert_array_equal(terminated, [True, False])
    obs, reward, terminated, truncated, _ = envs.step(np.array([RIGHT, RIGHT]))
    np.testing.assert_array_equal(obs, [0, 1])  # row 0 reset and ignored its action
    np.testing.assert_array_equal(reward, [0.0, 1.0])
    np.testing.assert_array_equal(terminated, [False, True])
    assert not truncated.any()


def test_vector_env_truncates_at_max_episode_steps() -> None:
    envs = GridWorldVectorEnv(num_envs=3, max_episode_steps=3)
    envs.reset(seed=0)
    stay = np.full(3, UP)
    flags = [envs.step(stay)[3].all() for _ in range(8)]
    # steps 1-3, autoreset step 4, steps 5-7 (the autoreset step counts as the reset)
    assert flags == [False, False, True, False, False, False, True, False]


@pytest.mark.parametrize(
    ("obs_mode", "shapes"),
    [
        ("index", {None: (5,)}),
        ("grid", {None: (5, 6, 6)}),
        ("tokens", {"input_ids": (5, 42), "attention_mask": (5, 42)}),
    ],
)
def test_make_vec_batches_observations(obs_mode: str, shapes: dict) -> None:
    envs = gym.make_vec(
        "GridWorld-v0", num_envs=5, vectorization_mode="vector_entry_point", obs_mode=obs_mode
    )
    assert isinstance(envs.unwrapped, GridWorldVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert envs.unwrapped.max_episode_steps == 100
    assert envs.single_action_space == gym.spaces.Discrete(4)
    obs, _ = envs.reset(seed=0)
    for _ in range(2):
        assert obs in envs.observation_space
        got = {k: v.shape for k, v in obs.items()} if isinstance(obs, dict) else {None: obs.shape}
        assert got == shapes
        obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
        assert reward.shape == terminated.shape == truncated.shape == (5,)


def test_vector_random_maps_are_solvable_per_row_and_seeded() -> None:
    def maps(seed: int) -> np.ndarray:
        envs = GridWorldVectorEnv(num_envs=8, random_map=True, size=5, obs_mode="grid")
        return envs.reset(seed=seed)[0]

    grids = maps(0)
    assert all(_solvable(grid) for grid in grids)
    assert len({grid.tobytes() for grid in grids}) == 8
    assert _same(maps(0), grids) and not _same(maps(1), grids)


def test_vector_action_masks_match_single_env() -> None:
    envs = GridWorldVectorEnv(num_envs=2, map=["S#D", "..."])
    envs.reset(seed=0)
    envs.step(np.array([DOWN, RIGHT]))
    np.testing.assert_array_equal(
        envs.action_masks(), [[False, False, True, True], [False, True, False, False]]
    )


def test_vector_bad_actions_and_step_before_reset_raise() -> None:
    envs = GridWorldVectorEnv(num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.array([0, 0]))
    envs.reset(seed=0)
    for bad in (np.array([0, 4]), np.array([0]), np.array([0.0, 1.0])):
        with pytest.raises((ValueError, TypeError), match=r"actions must be .* in \[0, 4\)"):
            envs.step(bad)
    assert envs.step(np.array([RIGHT, DOWN]))[4]["position"].tolist() == [[0, 1], [1, 0]]


def test_vector_reset_mask_resets_only_the_selected_rows() -> None:
    envs = GridWorldVectorEnv(num_envs=3, max_episode_steps=5)
    envs.reset(seed=0)
    envs.step(np.array([RIGHT, DOWN, RIGHT]))
    envs.step(np.array([RIGHT, DOWN, RIGHT]))
    obs, info = envs.reset(options={"reset_mask": np.array([False, True, False])})
    np.testing.assert_array_equal(obs, [2, 0, 2])  # rows 0 and 2 stay where they were
    np.testing.assert_array_equal(info["_position"], [False, True, False])
    np.testing.assert_array_equal(info["position"][1], [0, 0])
    # Row 1's step count restarted: rows 0 and 2 truncate at 5 steps, row 1 two steps later.
    truncated = [envs.step(np.full(3, UP))[3].tolist() for _ in range(5)]
    assert truncated[2] == [True, False, True] and truncated[4] == [False, True, False]


def test_vector_reset_mask_clears_a_pending_autoreset() -> None:
    envs = GridWorldVectorEnv(num_envs=2, map=["SD"])
    envs.reset(seed=0)
    envs.step(np.array([RIGHT, RIGHT]))  # both reach the diamond
    envs.reset(options={"reset_mask": np.array([True, False])})
    obs, reward, terminated, _, _ = envs.step(np.array([RIGHT, RIGHT]))
    # Row 0 was reset by hand, so it steps; row 1 autoresets and ignores its action.
    np.testing.assert_array_equal(obs, [1, 0])
    np.testing.assert_array_equal(reward, [1.0, 0.0])
    np.testing.assert_array_equal(terminated, [True, False])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"slip": 0.3},
        {"slip": 0.3, "random_map": True, "size": 4, "obs_mode": "grid"},
        {"random_map": True, "size": 3, "obs_mode": "tokens"},
    ],
)
def test_vector_rows_seeded_by_a_list_replay_single_envs(kwargs: dict) -> None:
    """A list of seeds makes row i replay GridWorldEnv seeded seeds[i], through autoresets and
    partial resets: the native env equals gymnasium's SyncVectorEnv of single envs."""
    n, make = 4, {"max_episode_steps": 7, **kwargs}
    native = gym.make_vec("GridWorld-v0", n, vectorization_mode="vector_entry_point", **make)
    sync = gym.make_vec("GridWorld-v0", n, vectorization_mode="sync", **make)
    assert _same(native.reset(seed=[5, 6, 7, 8])[0], sync.reset(seed=[5, 6, 7, 8])[0])
    rng = np.random.default_rng(0)
    for t in range(120):
        actions = rng.integers(0, 4, size=n)
        assert _same(native.step(actions)[:4], sync.step(actions)[:4])
        if t % 25 == 10:
            mask = np.array([True, False, True, False]) if t % 50 else np.ones(n, dtype=bool)
            seeds = [int(rng.integers(100)), None, None, int(rng.integers(100))]
            obs, info = native.reset(seed=seeds, options={"reset_mask": mask})
            sync_obs, sync_info = sync.reset(seed=seeds, options={"reset_mask": mask.copy()})
            assert _same(obs, sync_obs)
            np.testing.assert_array_equal(info["_position"], sync_info["_position"])


def test_vector_rows_seeded_by_a_list_depend_only_on_their_own_seed() -> None:
    def grids(seeds: list[int]) -> np.ndarray:
        envs = GridWorldVectorEnv(num_envs=3, random_map=True, slip=0.3, obs_mode="grid")
        trace = [envs.reset(seed=seeds)[0]]
        for actions in np.random.default_rng(0).integers(0, 4, size=(40, 3)):
            trace.append(envs.step(actions)[0])
        return np.stack(trace)  # (steps, rows, r, c)

    first, second = grids([1, 2, 3]), grids([9, 2, 4])
    assert _same(first[:, 1], second[:, 1]) and not _same(first[:, 0], second[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"seed": [1, 2]},
            ValueError,
            r"list of num_envs=3 seeds.*\(got 2 entries\), got seed=\[1, 2\]",
        ),
        ({"seed": [1, 2, 3, 4]}, ValueError, r"\(got 4 entries\), got seed=\[1, 2, 3, 4\]"),
        ({"seed": [1, -2, 3]}, ValueError, r"seed must be None, an integer >= 0 or a list"),
        ({"seed": [1, "2", 3]}, ValueError, r"got seed=\[1, '2', 3\]"),
        ({"seed": -1}, ValueError, r"got seed=-1"),
        ({"seed": "0"}, ValueError, r"got seed='0'"),
        (
            {"options": {"reset_mask": [True, False, True]}},
            TypeError,
            r"reset_mask'\] must be a numpy array of dtype bool",
        ),
        (
            {"options": {"reset_mask": np.array([1, 0, 1])}},
            TypeError,
            r"\(ndarray of dtype int64\)",
        ),
        (
            {"options": {"reset_mask": np.array([True, False])}},
            ValueError,
            r"shape \(3,\).*got options\['reset_mask'\]=array\(\[ True, False\]\)",
        ),
        ({"options": {"reset_mask": np.array([[True, False, True]])}}, ValueError, r"shape \(3,\)"),
        ({"options": {"reset_mask": np.zeros(3, dtype=bool)}}, ValueError, r"at least one True"),
        (
            {"options": {"reset_mask": np.ones(3, dtype=bool), "seed": 1}},
            ValueError,
            r"unknown key\(s\) \['seed'\]: GridWorldVectorEnv.reset takes only 'reset_mask'",
        ),
        ({"options": "reset_mask"}, TypeError, r"options must be a dict or None"),
    ],
)
def test_vector_bad_reset_arguments_are_refused_naming_them_and_change_nothing(
    kwargs: dict, error: type[Exception], message: str
) -> None:
    envs = GridWorldVectorEnv(num_envs=3, random_map=True, slip=0.3, obs_mode="grid")
    envs.reset(seed=[4, 5, 6])
    envs.step(np.array([DOWN, RIGHT, UP]))
    state = pickle.dumps(envs)
    with pytest.raises(error, match=message):
        envs.reset(**kwargs)
    clone = pickle.loads(state)
    for actions in np.random.default_rng(0).integers(0, 4, size=(20, 3)):
        assert _same(envs.step(actions)[:4], clone.step(actions)[:4])
    assert _same(envs.reset()[0], clone.reset()[0])


def test_vector_partial_reset_before_a_full_reset_is_refused() -> None:
    envs = GridWorldVectorEnv(num_envs=2)
    with pytest.raises(RuntimeError, match=r"reset_mask.*before a full reset\(\)"):
        envs.reset(options={"reset_mask": np.array([True, False])})
    with pytest.raises(RuntimeError, match="before reset"):
        envs.step(np.array([0, 0]))
    assert envs.reset(seed=0)[1]["_position"].all()


def test_vector_integer_seed_after_a_seed_list_returns_to_the_shared_stream() -> None:
    def rollout(first_seed: object) -> list:
        envs = GridWorldVectorEnv(num_envs=3, slip=0.4, random_map=True, obs_mode="grid")
        envs.reset(seed=first_seed)
        trace = [envs.reset(seed=11)[0]]
        for actions in np.random.default_rng(2).integers(0, 4, size=(30, 3)):
            trace.append(envs.step(actions)[:4])
        return trace

    assert _same(rollout([1, 2, 3]), rollout(None))


def test_vector_render_returns_one_frame_per_row() -> None:
    frames = GridWorldVectorEnv(num_envs=2, render_mode="rgb_array")
    frames.reset(seed=0)
    assert [frame.shape for frame in frames.render()] == [(192, 192, 3)] * 2
    texts = GridWorldVectorEnv(num_envs=2, render_mode="ansi")
    texts.reset(seed=0)
    assert all("R" in text for text in texts.render())


# --- agents -------------------------------------------------------------------------------


def test_sb3_ppo_smoke_run_completes() -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", gym.make("GridWorld-v0"), n_steps=128, batch_size=64, seed=0)
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256


def test_sb3_contrib_maskable_ppo_smoke_run_completes() -> None:
    from sb3_contrib import MaskablePPO

    env = gym.make("GridWorld-v0", obs_mode="grid")
    model = MaskablePPO("MlpPolicy", env, n_steps=128, batch_size=64, seed=0)
    model.learn(total_timesteps=256)
    assert model.num_timesteps == 256


@pytest.mark.parametrize(("name", "moves"), [("4x4", 4), ("6x6", 10), ("8x8", 18)])
def test_named_maps_are_solvable_in_their_shortest_route(name, moves):
    env = GridWorldEnv(map=name)
    env.reset(seed=0)
    for step in range(moves):
        _, reward, terminated, _, _ = env.step(int(np.flatnonzero(env.shortest_path_actions())[0]))
        assert terminated == (step == moves - 1)
    assert reward == 1.0
    vector = GridWorldVectorEnv(3, map=name)
    vector.reset(seed=0)
    assert vector.shortest_path_actions().any(axis=1).all()


def test_the_default_map_is_the_named_6x6_and_unknown_names_are_refused():
    default, named = GridWorldEnv(render_mode="ansi"), GridWorldEnv(render_mode="ansi", map="6x6")
    default.reset(seed=0), named.reset(seed=0)
    assert default.render() == named.render()
    for name in ("5x5", "S.D"):  # a string names a map; a custom map is a list of rows
        with pytest.raises(ValueError, match=rf"map='{name}' is not a named map: expected one"):
            GridWorldEnv(map=name)
    with pytest.raises(ValueError, match="map='8x8'"):
        GridWorldEnv(map="8x8", random_map=True, obs_mode="grid")


def test_the_4x4_map_has_fire_one_step_up_and_the_diamond_to_the_right():
    env = GridWorldEnv(map="4x4")
    env.reset(seed=0)
    assert env.step(UP)[1] == -1.0  # fire, one step up
    env.reset(seed=0)
    assert env.shortest_path_actions()[RIGHT]


def test_random_walk_success_on_the_named_maps_is_as_documented():
    """The figures of docs/gridworld.md: a uniform random walk of up to 100 steps finds the
    diamond in 15% of 2,000 episodes on 4x4, 0.8% on 6x6 and never on 8x8."""
    found = {}
    for name in ("4x4", "6x6", "8x8"):
        env, wins, rng = GridWorldEnv(map=name), 0, np.random.default_rng(0)
        for episode in range(2000):
            env.reset(seed=episode)
            for _ in range(100):
                _, reward, terminated, _, _ = env.step(int(rng.integers(4)))
                if terminated:
                    wins += reward > 0
                    break
        found[name] = wins / 2000
    assert found == {"4x4": 0.1475, "6x6": 0.008, "8x8": 0.0}
