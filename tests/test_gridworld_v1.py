"""GridWorld-v1 (v0's game on the 4x4 map, with potential-based shaping) and the shaping.

What the docstring promises is computed here against the env: the shaping's step terms, their
sum over an episode, the optimal policy (value iteration with and without shaping), the infos,
the vector env row for row, and v0 left exactly as it was.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.gridworld import (
    DIAMOND,
    FIRE,
    FLOOR,
    GridWorldEnv,
    GridWorldEnvV1,
)
from textgym.envs.gridworld_maps import MAPS, _distances, _parse_map, _random_map
from textgym.envs.gridworld_vector import GridWorldVectorEnv, GridWorldVectorEnvV1

SHAPING, GAMMA = 0.5, 0.99


def _fingerprint(env_id: str, **kwargs) -> str:
    """A hash of 30 episodes of random moves: observations, rewards, ends and infos."""
    digest = hashlib.sha256()
    env = gym.make(env_id, **kwargs)
    rng = np.random.default_rng(0)
    for episode in range(30):
        obs, info = env.reset(seed=episode)
        digest.update(repr((obs, info)).encode())
        done = False
        while not done:
            step = env.step(int(rng.integers(4)))
            digest.update(repr(step).encode())
            done = step[2] or step[3]
    return digest.hexdigest()[:16]


def test_v0_is_exactly_the_game_it_was():
    # Computed with the code before v1 existed (commit 2f1efc0).
    assert _fingerprint("GridWorld-v0", slip=0.2) == "25f3ae97cd580b3b"
    assert _fingerprint("GridWorld-v0", random_map=True, obs_mode="grid", slip=0.1) == (
        "5e47c17ed13ee72b"
    )


def test_v1_is_v0_on_the_4x4_map_with_shaping():
    v1, v0 = gym.make("GridWorld-v1"), gym.make("GridWorld-v0")
    assert type(v1.unwrapped) is GridWorldEnvV1 and isinstance(v1.unwrapped, GridWorldEnv)
    assert v1.spec.kwargs == {"shaping": SHAPING} and v0.spec.kwargs == {}
    assert v1.spec.max_episode_steps == v0.spec.max_episode_steps == 100
    assert (v1.unwrapped.shaping, v0.unwrapped.shaping) == (SHAPING, 0.0)
    same = gym.make("GridWorld-v0", map="4x4", shaping=SHAPING)
    sparse = gym.make("GridWorld-v0", map="4x4")
    for env in (v1, same, sparse):
        env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        action = int(rng.integers(4))
        step = v1.step(action)
        assert step == same.step(action)
        # The game itself is v0's on 4x4: its rewards are v1's task rewards.
        obs, reward, terminated, truncated, info = sparse.step(action)
        assert (obs, terminated, truncated) == (step[0], step[2], step[3])
        assert reward == step[4]["task_reward"] and info["position"] == step[4]["position"]
        if terminated or truncated:
            for env in (v1, same, sparse):
                env.reset()
    # Random maps do not clash with v1's default map.
    grid, _ = gym.make("GridWorld-v1", random_map=True, obs_mode="grid").reset(seed=0)
    assert grid.shape == (6, 6)
    vector = gym.make_vec("GridWorld-v1", 2, vectorization_mode="vector_entry_point")
    assert type(vector.unwrapped) is GridWorldVectorEnvV1 and vector.unwrapped.shaping == SHAPING
    assert vector.unwrapped.single_observation_space.n == 16
    gym_check_env(gym.make("GridWorld-v1").unwrapped)
    sb3_check_env(gym.make("GridWorld-v1"))


def test_without_shaping_the_infos_hold_the_position_alone():
    for env in (gym.make("GridWorld-v1", shaping=0), gym.make("GridWorld-v0")):
        assert set(env.reset(seed=0)[1]) == set(env.step(0)[4]) == {"position"}


def _walk(env: gym.Env, actions: list[int]) -> list[tuple[float, dict]]:
    """(reward, info) of each of ``actions`` from a reset."""
    env.reset(seed=0)
    return [env.step(action)[1::3] for action in actions]


def _cell(info: dict) -> int:
    row, col = info["position"]
    return row * 6 + col


def _potential(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The docstring's potential on a named map, computed here: (phi, d, d_max)."""
    m = _parse_map(MAPS[name])
    distance = _distances(m.cells[None], m.moves[None])[0]
    reachable = (m.cells == FLOOR) & np.isfinite(distance)
    d_max = distance[reachable].max()
    return np.where(reachable, SHAPING * (1 - distance / d_max), 0.0), distance, d_max


def test_each_step_pays_the_documented_shaping_term():
    env = gym.make("GridWorld-v0", shaping=SHAPING)
    m = _parse_map(MAPS["6x6"])
    phi, distance, d_max = _potential("6x6")

    def toward(d):
        return SHAPING * ((GAMMA - 1) + ((1 - GAMMA) * d + GAMMA) / d_max)

    def away(d):
        return SHAPING * ((GAMMA - 1) + ((1 - GAMMA) * d - GAMMA) / d_max)

    # Down x4, right x2, down, right x3: the 10-move route along the left side.
    steps = _walk(env, [1, 1, 1, 1, 2, 2, 1, 2, 2, 2])
    cells = [m.start] + [_cell(info) for _, info in steps]
    assert m.cells[cells[-1]] == DIAMOND
    for (reward, info), here, there in zip(steps, cells, cells[1:]):
        if there == cells[-1]:
            expected = 1.0 - phi[here]  # "the diamond 1 - phi(s)"
        else:
            assert distance[there] == distance[here] - 1
            expected = toward(distance[here])
        assert reward == pytest.approx(expected, abs=1e-12)
        assert info["task_reward"] == (1.0 if there == cells[-1] else 0.0)
    assert steps[-1][1]["is_success"] and not any(info["is_success"] for _, info in steps[:-1])
    # A step away: down to (1, 0), then back up to the start, one move further.
    (_, below), (reward, info) = _walk(env, [1, 3])
    assert distance[_cell(info)] == distance[_cell(below)] + 1
    assert reward == pytest.approx(away(distance[_cell(below)]), abs=1e-12)
    # A bump into the edge stays put: (gamma - 1) * phi(s).
    ((reward, info),) = _walk(env, [0])
    assert _cell(info) == m.start and info["task_reward"] == 0.0
    assert reward == pytest.approx((GAMMA - 1) * phi[m.start], abs=1e-12)
    # Fire: -1 - phi(s), from (2, 0) into the fire at (2, 1).
    *_, (reward, info) = _walk(env, [1, 1, 2])
    assert info["task_reward"] == -1.0 and not info["is_success"]
    assert reward == pytest.approx(-1.0 - phi[12], abs=1e-12)


@pytest.mark.parametrize("name", sorted(MAPS))
def test_shaping_sums_to_minus_the_start_potential_over_any_finished_episode(name):
    """The docstring's invariance: sum_t gamma^t (r_t - task_r_t) = -phi(start)."""
    env = gym.make("GridWorld-v1", map=name, shaping=SHAPING, max_episode_steps=10_000)
    start_potential = _potential(name)[0][_parse_map(MAPS[name]).start]
    rng = np.random.default_rng(1)
    finished = 0
    for episode in range(40):
        env.reset(seed=episode)
        total, discount, done = 0.0, 1.0, False
        while not done:
            _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
            total += discount * (reward - info["task_reward"])
            discount *= GAMMA
            done = terminated or truncated
        if terminated:
            finished += 1
            assert total == pytest.approx(-start_potential, abs=1e-9)
    assert finished >= 20


def _greedy_actions(m, reward: np.ndarray, gamma: float) -> dict[int, set[int]]:
    """Value iteration on a map's deterministic moves: the optimal actions of every floor cell
    from which a diamond can be reached. ``reward[s, a]`` is the reward of action a in s."""
    terminal = (m.cells == FIRE) | (m.cells == DIAMOND)
    value = np.zeros(len(m.cells))
    for _ in range(5_000):
        q = reward + gamma * np.where(terminal[m.moves], 0.0, value[m.moves])
        new = q.max(axis=1)
        if np.abs(new - value).max() < 1e-13:
            break
        value = new
    distance = _distances(m.cells[None], m.moves[None])[0]
    best = {}
    for s in np.flatnonzero((m.cells == FLOOR) & np.isfinite(distance)):
        best[int(s)] = set(np.flatnonzero(q[s] >= q[s].max() - 1e-9).tolist())
    return best


@pytest.mark.parametrize("name", [*sorted(MAPS), "random"])
def test_shaping_leaves_the_optimal_policy_unchanged(name):
    maps = (
        [_parse_map(MAPS[name])]
        if name != "random"
        else [_random_map(6, np.random.default_rng(seed)) for seed in range(5)]
    )
    for m in maps:
        task = np.where(m.cells == DIAMOND, 1.0, np.where(m.cells == FIRE, -1.0, 0.0))
        distance = _distances(m.cells[None], m.moves[None])[0]
        reachable = (m.cells == FLOOR) & np.isfinite(distance)
        phi = np.where(reachable, SHAPING * (1 - distance / distance[reachable].max()), 0.0)
        assert phi.min() >= 0 and phi.max() < SHAPING
        v0 = _greedy_actions(m, task[m.moves], GAMMA)
        v1 = _greedy_actions(m, task[m.moves] + GAMMA * phi[m.moves] - phi[:, None], GAMMA)
        assert v0 == v1
        # ... and both are the shortest fire-free routes (the env's expert).
        for s, actions in v0.items():
            after = distance[m.moves[s, sorted(actions)]]
            assert np.all(after == distance[s] - 1), (s, actions)


def test_vector_env_rows_are_single_envs_with_shaping():
    kwargs = {"random_map": True, "obs_mode": "grid", "slip": 0.2, "shaping": SHAPING}
    vector = gym.make_vec("GridWorld-v1", 3, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec("GridWorld-v1", 3, vectorization_mode="sync", **kwargs)
    assert isinstance(vector.unwrapped, GridWorldVectorEnv) and vector.unwrapped.shaping == SHAPING
    for envs in (vector, sync):
        envs.reset(seed=[1, 2, 3])
    rng = np.random.default_rng(0)
    for _ in range(400):
        actions = rng.integers(0, 4, 3)
        (*v, v_info), (*s, s_info) = vector.step(actions), sync.step(actions)
        for a, b in zip(v, s):
            np.testing.assert_array_equal(a, b)
        for key in ("task_reward", "_task_reward", "is_success", "_is_success"):
            np.testing.assert_array_equal(v_info[key], s_info[key])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"shaping": -0.1}, ValueError, r"shaping must be a finite number >= 0, got shaping=-0.1"),
        ({"shaping": float("nan")}, ValueError, "shaping must be a finite number >= 0"),
        ({"shaping": float("inf")}, ValueError, "shaping must be a finite number >= 0"),
        ({"shaping": True}, TypeError, "shaping must be a finite number >= 0, got shaping=True"),
        ({"shaping": "0.1"}, TypeError, "shaping must be"),
        ({"shaping_gamma": 0.0}, ValueError, r"shaping_gamma must be a discount in \(0, 1\]"),
        ({"shaping_gamma": 1.5}, ValueError, "shaping_gamma must be a discount"),
        ({"shaping_gamma": None}, TypeError, "shaping_gamma must be a discount"),
    ],
)
def test_bad_shaping_arguments_are_refused(kwargs, error, match):
    for make in (GridWorldEnv, GridWorldVectorEnv):
        with pytest.raises(error, match=match):
            make(**kwargs)


def test_the_shortest_route_on_v1_returns_the_documented_0_823():
    env = gym.make("GridWorld-v1")
    steps = _walk(env, [2, 2, 2, 3])  # right three times, then up to the diamond
    m = _parse_map(MAPS["4x4"])
    phi = _potential("4x4")[0]
    route = [12 + 1, 12 + 2, 12 + 3]  # the floor cells passed on the bottom row (4 columns)
    total = sum(reward for reward, _ in steps)
    assert steps[-1][1]["is_success"]
    assert total == pytest.approx(1 - phi[m.start] - (1 - GAMMA) * phi[route].sum(), abs=1e-12)
    assert round(total, 3) == 0.823 and round(phi[m.start], 3) == 0.167
