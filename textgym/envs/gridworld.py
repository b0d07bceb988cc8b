"""GridWorld: a robot looks for a diamond on a grid and is killed by fire.

`GridWorldEnv` is one grid; `GridWorldVectorEnv` steps N grids with one array operation.
Both are built from the same helpers (`textgym.envs.gridworld_maps`), so a row of the vector
env behaves exactly like a single env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym._checks import check_int, check_options, check_reset_mask, check_seed
from textgym.envs.gridworld_maps import (
    _N_ACTIONS,
    _REWARD,
    _REWARD_LIST,
    _TERMINAL,
    _TERMINAL_LIST,
    DEFAULT_MAP,
    DIAMOND,
    DOWN,
    FIRE,
    FLOOR,
    LEFT,
    RENDER_MODES,
    RIGHT,
    ROBOT,
    TOKEN_VOCAB,
    UP,
    WALL,
    GridObs,
    _action_masks,
    _check_actions,
    _Map,
    _observation_space,
    _observe,
    _potentials,
    _random_map,
    _render_ansi,
    _render_rgb,
    _set_arguments,
    _shortest_path_actions,
    _slip,
)

__all__ = [
    "DEFAULT_MAP",
    "DIAMOND",
    "DOWN",
    "FIRE",
    "FLOOR",
    "LEFT",
    "RIGHT",
    "ROBOT",
    "TOKEN_VOCAB",
    "UP",
    "WALL",
    "GridWorldEnv",
    "GridWorldEnvV1",
    "GridWorldVectorEnv",
    "GridWorldVectorEnvV1",
]


class GridWorldEnv(gym.Env[GridObs, int]):
    """
    A robot on a grid looks for a diamond; fire kills it.

    ## Description
    The classic reinforcement-learning teaching game. The robot starts on the start cell
    and moves to neighbouring cells until it reaches a diamond or walks into fire. Walls
    and the edges of the grid block it. With `slip > 0` the floor is slippery: the robot
    sometimes moves perpendicular to the chosen direction.

    `GridWorld-v1`'s default map is FrozenLake's size, 4x4 (`S` start, `D` diamond, `F` fire,
    `#` wall, `.` floor), which stock agents at their libraries' defaults learn with v1's shaping
    (see Rewards); `map="6x6"` (the default of `GridWorld-v0` and of the class) and `map="8x8"`
    are harder:
    ```
    4x4       6x6
    ....      S...#.
    .#F.      .##.F.
    F..D      .F..#.
    S...      .#.F..
              ...#F.
              F#...D
    ```
    A custom map is given with `map`; `random_map=True` draws a new solvable map at each
    `reset`. The conventions are FrozenLake's.

    ## Action Space
    `Discrete(4)`, in FrozenLake's order:

    - 0: Move left
    - 1: Move down
    - 2: Move right
    - 3: Move up

    `action_masks()` returns a boolean array of shape `(4,)` that is True for the moves
    that change the robot's position (all True if none does), for sb3-contrib's
    `MaskablePPO`. `shortest_path_actions()` returns the same shape, True for the moves that
    start a shortest path to a diamond avoiding fire: an expert for imitation learning.

    ## Observation Space
    Selected by `obs_mode`:

    - `"index"`: `Discrete(rows * cols)`, the robot's position `row * cols + col`. Only for a
      fixed map: with `random_map=True` the position does not show the map, so it is refused.
    - `"grid"`: `Box(0, 4, (rows, cols), int64)`, a cell code per cell: 0 floor (the start
      cell included), 1 wall, 2 fire, 3 diamond, 4 the robot.
    - `"tokens"`: `Dict(input_ids=Box(0, V - 1, (L,), int64),
      attention_mask=Box(0, 1, (L,), int64))`, the format of `TextGen-v0`: the grid
      written row by row in the symbol vocabulary `TOKEN_VOCAB`
      (`<pad>`, `.`, `#`, `F`, `D`, `R`, newline; `V = env.vocab_size = 7`), every
      row followed by a newline token, so `L = rows * (cols + 1)`. The grid has a fixed
      size, so there is no padding and the mask is all ones. The tokens spell out the
      `"ansi"` rendering.

    ## Starting State
    The robot starts on the `S` cell. `reset` takes a `seed` (None or an integer >= 0) and
    no `options` (None or `{}`); anything else is refused with the env unchanged.

    ## Rewards
    - Reach the diamond: +1
    - Walk into fire: -1
    - Any other step: 0

    With `shaping > 0` (`GridWorld-v1`: 0.5), every step also pays the potential-based shaping
    term of Ng, Harada and Russell (1999), `shaping_gamma * phi(s') - phi(s)`, with the potential
    `phi(s) = shaping * (1 - d(s) / d_max)`: `d(s)` the number of moves from `s` to the nearest
    diamond avoiding fire, `d_max` the largest such number on the map, and `phi = 0` on fire
    and diamonds (the cells that end an episode). So `phi` grows from 0 at the farthest cell to
    nearly `shaping` next to the diamond. Over any episode that ends at fire or a diamond the
    shaping terms sum, discounted by `shaping_gamma`, to `-phi(start)` whatever the policy, so
    the shaping does not change which policy is optimal for an agent that discounts by
    `shaping_gamma` (0.99, the default discount of SB3, CleanRL and RLlib); it tells the agent
    at every step whether it came closer. With `gamma = shaping_gamma`, a step toward the
    diamond from `d` moves pays
    `shaping * ((gamma - 1) + ((1 - gamma) * d + gamma) / d_max)` (about `shaping / d_max`),
    a step away `shaping * ((gamma - 1) + ((1 - gamma) * d - gamma) / d_max)`, a bump into a
    wall `(gamma - 1) * phi(s)`, fire `-1 - phi(s)` and the diamond `1 - phi(s)`. The game's
    own reward is then in `info["task_reward"]`, and `info["is_success"]` says whether the step
    reached the diamond (stable-baselines3's `EvalCallback` reports its mean as the success
    rate).

    ## Episode End
    - Termination: the robot reaches a diamond or walks into fire.
    - Truncation (by the `TimeLimit` wrapper of `gym.make`): 100 steps.

    Calling `step` before `reset` or after termination raises a `RuntimeError`; call `reset`.

    ## Information
    `reset` and `step` return `{"position": (row, col)}`, the robot's cell; with `shaping > 0`
    also `"task_reward"` (the reward without shaping: +1, -1 or 0) and `"is_success"` (whether
    the step reached a diamond).

    ## Arguments
    ```python
    import gymnasium as gym
    import textgym  # registers the environments

    gym.make(
        "GridWorld-v1",
        render_mode=None,
        map=None,  # v1: the 4x4 map; v0: the 6x6 map
        size=None,
        random_map=False,
        slip=0.0,
        obs_mode="index",
        shaping=0.5,  # GridWorld-v0: 0.0
        shaping_gamma=0.99,
    )
    ```
    * `render_mode`: `None`, `"ansi"` (the grid as text, the robot as `R`) or
      `"rgb_array"` (a `uint8` image of 32 px per cell, drawn with numpy).
    * `map`: a named map, `"4x4"` (v1's default), `"6x6"` (v0's) or `"8x8"` (shortest
      routes of 4, 10 and 18 moves; a random walk finds the diamond in 15%, 0.8% and none of
      its episodes), or the rows of a custom map, e.g. `["S.F", "..D"]`. A custom map must be
      rectangular, use only `S`, `D`, `F`, `#`, `.`, have exactly one `S`, at least one `D`,
      and a path from `S` to a `D` that avoids fire and walls. `None` uses the version's map:
      `"4x4"` on v1 (`GridWorldEnvV1`), `"6x6"` on v0 (`GridWorldEnv`).
    * `size`: the side of random maps (default 6); only with `random_map=True`.
    * `random_map`: draw a new solvable `size x size` map from `env.np_random` at every
      `reset` (each other cell is floor, wall or fire with probability 0.75, 0.15, 0.1).
    * `slip`: probability in `[0, 1)` that the robot moves in one of the two perpendicular
      directions (each with probability `slip / 2`) instead of the chosen one.
    * `obs_mode`: `"index"`, `"grid"` or `"tokens"` (see Observation Space); `"grid"` or
      `"tokens"` with `random_map=True`.
    * `shaping`: the largest potential, a number >= 0 (see Rewards; 0: no shaping, the sparse
      game). `GridWorld-v1`: 0.5; `GridWorld-v0` and the classes: 0.
    * `shaping_gamma`: the discount in `(0, 1]` the shaping is exact for: set it to your
      agent's gamma if that is not 0.99.

    `GridWorldVectorEnv` runs N of these grids in one array operation per step:
    `gym.make_vec("GridWorld-v1", num_envs=N, vectorization_mode="vector_entry_point")`.

    ## Version History
    * v1: the 4x4 map by default, and potential-based shaping (`shaping=0.5`), with the infos'
      `task_reward` and `is_success`. On v0's default, the 6x6 map, stable-baselines3's PPO
      and DQN, CleanRL's PPO and RLlib's PPO at their defaults learned only to avoid fire and
      timed out (0% greedy success after 100,000 steps); on 4x4 without shaping SB3's DQN
      still failed for one seed in five. On v1 they reach the diamond for seeds 0-4
      (`scripts/stock_defaults.py`). Moves, terminations and the optimal policy are v0's; the
      6x6 and 8x8 maps are kept by name, and `shaping=0` gives the sparse game.
    * v0: Initial version, kept exactly as it was: the 6x6 map by default.
    """

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "render_fps": 4}
    default_map = "6x6"  # the map of map=None: v0's; `GridWorldEnvV1` has "4x4"

    def __init__(
        self,
        render_mode: str | None = None,
        map: str | Sequence[str] | None = None,
        size: int | None = None,
        random_map: bool = False,
        slip: float = 0.0,
        obs_mode: str = "index",
        shaping: float = 0.0,
        shaping_gamma: float = 0.99,
    ) -> None:
        _set_arguments(
            self, render_mode, map, size, random_map, slip, obs_mode, shaping, shaping_gamma
        )
        self.action_space = spaces.Discrete(_N_ACTIONS)
        self.observation_space = _observation_space(obs_mode, self._rows, self._cols)
        self._map: _Map | None = self._fixed_map
        self._potential_list: list[float] = []
        self._position: int | None = None  # None until the first reset
        self._ended = False
        self._last_action: int | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[GridObs, dict[str, Any]]:
        check_options(options, (), "GridWorldEnv")
        super().reset(seed=check_seed(seed))
        if self._fixed_map is None:
            self._map = _random_map(self._rows, self.np_random)
        if self.shaping and (self._fixed_map is None or not self._potential_list):
            self._potential_list = _potentials(
                self._map.cells[None], self._map.moves[None], self.shaping
            )[0].tolist()
        self._moves_list = self._map.moves.tolist()
        self._cells_list = self._map.cells.tolist()
        self._position = self._map.start
        self._ended = False
        self._last_action = None
        return self._observation(), self._info(0.0)

    def step(self, action: int) -> tuple[GridObs, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._position is None:
            raise RuntimeError("step() was called before reset(); call env.reset() first")
        if self._ended:
            raise RuntimeError(
                "step() was called after the episode ended (the robot reached a diamond or "
                "fire); call env.reset() to start a new episode"
            )
        # Plain ints take a pure-Python path: a gridworld step should cost less than numpy's
        # per-call overhead. Everything else goes through the full check.
        if type(action) is int and 0 <= action < _N_ACTIONS:
            act = action
        else:
            act = int(_check_actions(action, (), "action"))
        move = _slip(act, self.np_random.random(), self.slip)
        before = self._position
        self._position = self._moves_list[before][move]
        self._last_action = act
        code = self._cells_list[self._position]
        self._ended = _TERMINAL_LIST[code]
        task_reward = reward = _REWARD_LIST[code]
        if self.shaping:
            potential = self._potential_list
            reward += self.shaping_gamma * potential[self._position] - potential[before]
        # truncated is always False: the TimeLimit wrapper added by gym.make truncates
        return self._observation(), reward, self._ended, False, self._info(task_reward)

    def action_masks(self) -> np.ndarray:
        """Boolean array of shape (4,): True for the moves that change the position."""
        if self._position is None:
            raise RuntimeError("action_masks() was called before reset(); call env.reset() first")
        position = np.array([self._position])
        return _action_masks(self._map.moves[position], position)[0]

    def shortest_path_actions(self) -> np.ndarray:
        """Boolean array of shape (4,): True for the moves that start a shortest path to a
        diamond avoiding fire — an expert for imitation learning and a check for agents.

        All False once the episode has ended. Slip is ignored: the moves are the intended ones.
        """
        if self._position is None:
            raise RuntimeError(
                "shortest_path_actions() was called before reset(); call env.reset() first"
            )
        position = np.array([self._position])
        return _shortest_path_actions(self._map.cells[None], self._map.moves[None], position)[0]

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called without a render_mode; pass one at initialization, e.g. "
                'gym.make("GridWorld-v1", render_mode="rgb_array")'
            )
            return None
        if self._position is None:
            raise RuntimeError("render() was called before reset(); call env.reset() first")
        if self.render_mode == "ansi":
            return _render_ansi(self._map.cells, self._position, self._cols, self._last_action)
        return _render_rgb(self._map.cells, self._position, self._cols)

    def _observation(self) -> GridObs:
        if self.obs_mode == "index":
            return self._position
        batch = _observe(
            self.obs_mode, self._map.cells[None], np.array([self._position]), self._cols
        )
        if isinstance(batch, dict):
            return {key: value[0] for key, value in batch.items()}
        return batch[0]

    def _info(self, task_reward: float) -> dict[str, Any]:
        assert self._position is not None
        info: dict[str, Any] = {"position": divmod(self._position, self._cols)}
        if self.shaping:
            info["task_reward"], info["is_success"] = task_reward, task_reward == 1.0
        return info


class GridWorldVectorEnv(VectorEnv[Any, np.ndarray, np.ndarray]):
    """
    N independent GridWorld grids stepped with one array operation per step.

    Each row behaves exactly like `GridWorldEnv` wrapped in a `TimeLimit` of
    `max_episode_steps` (same map, same actions, `slip=0` -> same observations, rewards,
    terminations and truncations). Rows autoreset on the next step
    (`AutoresetMode.NEXT_STEP`): the step after a row's episode ends ignores its action and
    returns the reset observation with reward 0 and `terminated = truncated = False`.
    Random maps are drawn per row at reset time.

    Observations are the single env's batched along a first axis of size N; infos are
    `{"position": (N, 2) int64 array of (row, col), "_position": (N,) all True}`;
    `action_masks()` returns an (N, 4) boolean array.

    `reset(seed=..., options=...)`, as gymnasium's `SyncVectorEnv` takes them:

    - `seed=None` continues the random streams; an integer seeds the one generator all rows
      draw slips and random maps from (`self.np_random`); a list of N seeds (each None or an
      integer) gives each row its own generator, so that row i replays
      `GridWorldEnv.reset(seed=seeds[i])` and its episodes exactly, random maps and slips
      included (a None entry keeps the row's generator). Rows keep their own generators
      until an integer seed is given again.
    - `options={"reset_mask": mask}` (a bool array of shape (N,) with at least one True)
      resets only the rows where `mask` is True (seeded by their entries of a seed list);
      the other rows keep their state and the returned observations show where they are.
      The info's `_position` is `mask`: the rows that were reset.

    Any other option, a malformed mask or seed, or a partial reset before the first full one
    is refused with the env unchanged.

    Create it with
    `gym.make_vec("GridWorld-v1", num_envs=N, vectorization_mode="vector_entry_point")`.

    :param num_envs: number of grids N
    :param render_mode: None, "ansi" or "rgb_array"; `render()` returns one frame per row
    :param map: a named map or the rows of a custom map, as for `GridWorldEnv`
    :param size: side of random maps (default 6); only with `random_map=True`
    :param random_map: draw a new solvable map for each row at each of its resets
    :param slip: probability in [0, 1) of moving perpendicular to the chosen direction
    :param obs_mode: "index", "grid" or "tokens", as for `GridWorldEnv`
    :param shaping: potential-based shaping toward the diamond, as for `GridWorldEnv`
    :param shaping_gamma: the discount the shaping is exact for, as for `GridWorldEnv`
    :param max_episode_steps: steps after which a row's episode is truncated
    """

    metadata: dict[str, Any] = {
        "render_modes": list(RENDER_MODES),
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }
    default_map = "6x6"  # the map of map=None: v0's; `GridWorldVectorEnvV1` has "4x4"

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        map: str | Sequence[str] | None = None,
        size: int | None = None,
        random_map: bool = False,
        slip: float = 0.0,
        obs_mode: str = "index",
        shaping: float = 0.0,
        shaping_gamma: float = 0.99,
        max_episode_steps: int = 100,
    ) -> None:
        for name, value in (("num_envs", num_envs), ("max_episode_steps", max_episode_steps)):
            check_int(name, value, 1)
        _set_arguments(
            self, render_mode, map, size, random_map, slip, obs_mode, shaping, shaping_gamma
        )
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.single_action_space = spaces.Discrete(_N_ACTIONS)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = _observation_space(obs_mode, self._rows, self._cols)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

        n_cells = self._rows * self._cols
        template = self._fixed_map
        if template is None:  # placeholders, replaced by random maps at reset
            template = _Map(
                np.zeros(n_cells, np.int8), 0, np.zeros((n_cells, _N_ACTIONS), np.int64)
            )
        self._cells = np.repeat(template.cells[None], self.num_envs, axis=0)  # (N, S)
        self._moves = np.repeat(template.moves[None], self.num_envs, axis=0)  # (N, S, 4)
        self._start = np.full(self.num_envs, template.start, dtype=np.int64)  # (N,)
        self._potential = np.zeros(self._cells.shape)  # (N, S), only read with shaping
        if self.shaping and self._fixed_map is not None:
            self._potential[:] = _potentials(self._cells[:1], self._moves[:1], self.shaping)
        self._position: np.ndarray | None = None  # (N,), None until the first reset
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._last_action = np.full(self.num_envs, -1, dtype=np.int64)  # -1: none yet
        # One generator per row after a reset with a list of seeds; None: all rows share
        # self.np_random.
        self._row_rngs: list[np.random.Generator] | None = None

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        options = check_options(options, ("reset_mask",), "GridWorldVectorEnv")
        seeds = check_seed(seed, self.num_envs)
        rows = np.ones(self.num_envs, dtype=bool)
        if "reset_mask" in options:
            rows = check_reset_mask(options["reset_mask"], self.num_envs)
            if self._position is None:
                raise RuntimeError(
                    "reset() with options['reset_mask'] was called before a full reset(); "
                    "call envs.reset() first"
                )
        if isinstance(seeds, list):
            if self._row_rngs is None:  # rows without a seed continue the shared stream
                self._row_rngs = self.np_random.spawn(self.num_envs)
            for i in np.flatnonzero(rows):
                if seeds[i] is not None:
                    self._row_rngs[i] = seeding.np_random(seeds[i])[0]
        else:
            super().reset(seed=seeds)
            if seeds is not None:
                self._row_rngs = None
        self._draw_maps(rows)
        kept = self._start if self._position is None else self._position
        self._position = np.where(rows, self._start, kept)
        self._steps[rows] = 0
        self._prev_done[rows] = False
        self._last_action[rows] = -1
        info = self._info(np.zeros(self.num_envs))
        for key in [key for key in info if key.startswith("_")]:
            info[key] = rows
        return self._observation(), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._position is None:
            raise RuntimeError("step() was called before reset(); call envs.reset() first")
        acts = _check_actions(actions, (self.num_envs,), "actions")
        rows = np.arange(self.num_envs)
        # NEXT_STEP autoreset: rows whose episode ended on the previous step start a new
        # episode now, ignoring their action.
        restart = self._prev_done
        moves = _slip(acts, self._uniforms(restart), self.slip)
        position = self._moves[rows, self._position, moves]
        code = self._cells[rows, position]
        task_reward, terminated = _REWARD[code], _TERMINAL[code]
        reward = task_reward
        if self.shaping:
            potential = self._potential
            reward = reward + (
                self.shaping_gamma * potential[rows, position] - potential[rows, self._position]
            )
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps

        if restart.any():
            self._draw_maps(restart)
            position[restart] = self._start[restart]
            reward[restart] = task_reward[restart] = 0.0
            terminated[restart] = False
            truncated[restart] = False
            self._steps[restart] = 0
        self._position = position
        self._last_action = np.where(restart, -1, acts)
        self._prev_done = terminated | truncated
        return self._observation(), reward, terminated, truncated, self._info(task_reward)

    def action_masks(self) -> np.ndarray:
        """Boolean array of shape (N, 4): True for the moves that change each position."""
        if self._position is None:
            raise RuntimeError("action_masks() was called before reset(); call envs.reset() first")
        return _action_masks(self._moves[np.arange(self.num_envs), self._position], self._position)

    def shortest_path_actions(self) -> np.ndarray:
        """Boolean array of shape (N, 4): `GridWorldEnv.shortest_path_actions` for each row
        (all False for a row whose episode has just ended)."""
        if self._position is None:
            raise RuntimeError(
                "shortest_path_actions() was called before reset(); call envs.reset() first"
            )
        return _shortest_path_actions(self._cells, self._moves, self._position)

    def render(self) -> tuple[str, ...] | tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called without a render_mode; pass one at initialization, e.g. "
                'gym.make_vec("GridWorld-v1", render_mode="rgb_array")'
            )
            return None
        if self._position is None:
            raise RuntimeError("render() was called before reset(); call envs.reset() first")
        if self.render_mode == "ansi":
            return tuple(
                _render_ansi(cells, int(pos), self._cols, int(act) if act >= 0 else None)
                for cells, pos, act in zip(self._cells, self._position, self._last_action)
            )
        return tuple(
            _render_rgb(cells, int(pos), self._cols)
            for cells, pos in zip(self._cells, self._position)
        )

    def _uniforms(self, restart: np.ndarray) -> np.ndarray:
        """(N,) uniform draws for the slips of a step.

        From the shared generator, one per row. Rows with their own generators draw as a single
        env would: one per row that steps, none for a row that restarts (the single env's
        `reset` draws only its map), and none at all where nothing is random.
        """
        if self._row_rngs is None:
            return self.np_random.random(self.num_envs)
        uniforms = np.zeros(self.num_envs)
        if self.slip or self._fixed_map is None:
            for i in np.flatnonzero(~restart):
                uniforms[i] = self._row_rngs[i].random()
        return uniforms

    def _draw_maps(self, rows: np.ndarray) -> None:
        """Give the selected rows a new random map (fixed maps never change)."""
        if self._fixed_map is not None:
            return
        for i in np.flatnonzero(rows):
            rng = self.np_random if self._row_rngs is None else self._row_rngs[i]
            m = _random_map(self._rows, rng)
            self._cells[i], self._moves[i], self._start[i] = m.cells, m.moves, m.start
            if self.shaping:
                self._potential[i] = _potentials(m.cells[None], m.moves[None], self.shaping)[0]

    def _observation(self) -> Any:
        assert self._position is not None
        return _observe(self.obs_mode, self._cells, self._position, self._cols)

    def _info(self, task_reward: np.ndarray) -> dict[str, Any]:
        assert self._position is not None
        every_row = np.ones(self.num_envs, dtype=bool)
        position = np.stack(np.divmod(self._position, self._cols), axis=1)  # (N, 2)
        info = {"position": position, "_position": every_row}
        if self.shaping:
            info |= {"task_reward": task_reward, "_task_reward": every_row.copy()}
            info |= {"is_success": task_reward == 1.0, "_is_success": every_row.copy()}
        return info


class GridWorldEnvV1(GridWorldEnv):
    """`GridWorld-v1`: `GridWorldEnv` with the 4x4 map when ``map=None`` (see its Version
    History)."""

    default_map = "4x4"


class GridWorldVectorEnvV1(GridWorldVectorEnv):
    """`GridWorld-v1`'s vector env: `GridWorldVectorEnv` with the 4x4 map when ``map=None``."""

    default_map = "4x4"
