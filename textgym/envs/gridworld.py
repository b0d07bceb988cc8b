"""GridWorld: a robot looks for a diamond on a grid and is killed by fire.

`GridWorldEnv` is one grid; `GridWorldVectorEnv` (`textgym.envs.gridworld_vector`) steps N
grids with one array operation. Both are built from the same helpers
(`textgym.envs.gridworld_maps`), so a row of the vector env behaves exactly like a single env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from textgym._checks import check_options, check_seed
from textgym.envs.gridworld_maps import (
    _N_ACTIONS,
    _REWARD_LIST,
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


class GridWorldEnvV1(GridWorldEnv):
    """`GridWorld-v1`: `GridWorldEnv` with the 4x4 map when ``map=None`` (see its Version
    History)."""

    default_map = "4x4"
