"""GridWorld's vector env: N grids stepped with one array operation, each row exactly a
`GridWorldEnv` (`textgym.envs.gridworld`), from the same helpers (`textgym.envs.gridworld_maps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    _TERMINAL,
    RENDER_MODES,
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

__all__ = ["GridWorldVectorEnv", "GridWorldVectorEnvV1"]


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


class GridWorldVectorEnvV1(GridWorldVectorEnv):
    """`GridWorld-v1`'s vector env: `GridWorldVectorEnv` with the 4x4 map when ``map=None``."""

    default_map = "4x4"
