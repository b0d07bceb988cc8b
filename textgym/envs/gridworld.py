"""GridWorld: a robot looks for a diamond on a grid and is killed by fire.

`GridWorldEnv` is one grid; `GridWorldVectorEnv` steps N grids with one array operation.
Both are built from the same private helpers below, so a row of the vector env behaves
exactly like a single env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym._checks import check_int

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
    "GridWorldVectorEnv",
]

# Actions, in FrozenLake's order.
LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
_ACTION_NAMES = ("Left", "Down", "Right", "Up")
_N_ACTIONS = 4
_STEP_ROW = np.array([0, 1, 0, -1])
_STEP_COL = np.array([-1, 0, 1, 0])

# Cell codes of the "grid" observation; the robot's cell shows ROBOT.
FLOOR, WALL, FIRE, DIAMOND, ROBOT = 0, 1, 2, 3, 4
_CHAR_CODES = {".": FLOOR, "S": FLOOR, "#": WALL, "F": FIRE, "D": DIAMOND}
_REWARD = np.array([0.0, 0.0, -1.0, 1.0])  # indexed by the code of the cell entered
_TERMINAL = np.array([False, False, True, True])
_REWARD_LIST, _TERMINAL_LIST = _REWARD.tolist(), _TERMINAL.tolist()

# Token i of the "tokens" observation; cell code c is token c + 1, so the tokens of a
# grid spell out its "ansi" rendering.
TOKEN_VOCAB: tuple[str, ...] = ("<pad>", ".", "#", "F", "D", "R", "\n")
_NEWLINE_TOKEN = TOKEN_VOCAB.index("\n")

# Two routes to the diamond, both lined with fire: down the left side (10 moves) or
# through the middle (12 moves).
DEFAULT_MAP: tuple[str, ...] = (
    "S...#.",
    ".##.F.",
    ".F..#.",
    ".#.F..",
    "...#F.",
    "F#...D",
)

# Random maps: each cell other than start and diamond is floor, wall or fire.
_RANDOM_CODES = np.array([FLOOR, WALL, FIRE], dtype=np.int8)
_RANDOM_PROBS = (0.75, 0.15, 0.10)

_OBS_MODES = ("index", "grid", "tokens")
_CELL_PX = 32
_COLOURS = np.array(
    [
        (236, 236, 224),  # floor
        (84, 84, 92),  # wall
        (232, 84, 28),  # fire
        (64, 200, 232),  # diamond
        (48, 64, 200),  # robot
    ],
    dtype=np.uint8,
)
_GRID_LINE = np.array((160, 160, 160), dtype=np.uint8)

GridObs = int | np.ndarray | dict[str, np.ndarray]


class _Map(NamedTuple):
    """One map, flattened row-major, with its transitions precomputed."""

    cells: np.ndarray  # (rows * cols,) int8 cell codes
    start: int  # flat index of the start cell
    moves: np.ndarray  # (rows * cols, 4) flat index each action leads to; walls and edges stay


def _compile(cells: np.ndarray, start: int) -> _Map:
    rows, cols = cells.shape
    here = np.arange(rows * cols)
    row = here[:, None] // cols + _STEP_ROW  # (S, 4)
    col = here[:, None] % cols + _STEP_COL
    inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    target = np.clip(row, 0, rows - 1) * cols + np.clip(col, 0, cols - 1)
    blocked = ~inside | (cells.ravel()[target] == WALL)
    return _Map(cells.ravel().copy(), start, np.where(blocked, here[:, None], target))


def _solvable(m: _Map) -> bool:
    """Whether a diamond is reachable from the start without entering fire (walls block)."""
    return bool(np.isfinite(_distances(m.cells[None], m.moves[None])[0, m.start]))


def _parse_map(rows: Sequence[str]) -> _Map:
    if (
        isinstance(rows, str)
        or not isinstance(rows, Sequence)
        or not all(isinstance(row, str) for row in rows)
    ):
        raise TypeError(f"map must be a list of strings (one per row), got map={rows!r}")
    if not rows or not rows[0]:
        raise ValueError(f"map must have at least one row and one column, got map={rows!r}")
    for i, row in enumerate(rows):
        if len(row) != len(rows[0]):
            raise ValueError(
                f"map must be rectangular: row {i} has {len(row)} characters, expected "
                f"{len(rows[0])} like row 0, got map={list(rows)!r}"
            )
        for j, char in enumerate(row):
            if char not in _CHAR_CODES:
                raise ValueError(
                    f"map has unknown character {char!r} at row {i}, column {j}; expected one "
                    f"of {''.join(_CHAR_CODES)!r}, got map={list(rows)!r}"
                )
    text = "".join(rows)
    if text.count("S") != 1:
        raise ValueError(
            f"map must have exactly one start 'S', found {text.count('S')} in map={list(rows)!r}"
        )
    if "D" not in text:
        raise ValueError(
            f"map must have at least one diamond 'D', found none in map={list(rows)!r}"
        )
    cells = np.array([[_CHAR_CODES[char] for char in row] for row in rows], dtype=np.int8)
    m = _compile(cells, text.index("S"))
    if not _solvable(m):
        raise ValueError(
            f"map must have a path from 'S' to a 'D' that avoids fire 'F' and walls '#', "
            f"got map={list(rows)!r}"
        )
    return m


def _random_map(size: int, rng: np.random.Generator) -> _Map:
    """A solvable size x size map: draw cells, start and diamond until a path exists."""
    while True:
        cells = rng.choice(_RANDOM_CODES, size=size * size, p=_RANDOM_PROBS)
        start, diamond = rng.choice(size * size, size=2, replace=False)
        cells[start], cells[diamond] = FLOOR, DIAMOND
        m = _compile(cells.reshape(size, size), int(start))
        if _solvable(m):
            return m


def _check_args(
    render_mode: str | None,
    map: Sequence[str] | None,
    size: int | None,
    random_map: bool,
    slip: float,
    obs_mode: str,
) -> tuple[_Map | None, int, int]:
    """Validate the arguments both envs share; return (the fixed map or None, rows, cols)."""
    if render_mode is not None and render_mode not in GridWorldEnv.metadata["render_modes"]:
        raise ValueError(
            f"render_mode must be None, 'ansi' or 'rgb_array', got render_mode={render_mode!r}"
        )
    if obs_mode not in _OBS_MODES:
        raise ValueError(f"obs_mode must be one of {_OBS_MODES}, got obs_mode={obs_mode!r}")
    if isinstance(slip, bool) or not isinstance(slip, (int, float, np.floating)):
        raise TypeError(f"slip must be a probability in [0, 1), got slip={slip!r}")
    if not 0 <= slip < 1:
        raise ValueError(f"slip must be a probability in [0, 1), got slip={slip!r}")
    if not random_map:
        if size is not None:
            raise ValueError(f"size is only used with random_map=True, got size={size!r}")
        rows = DEFAULT_MAP if map is None else map
        return _parse_map(rows), len(rows), len(rows[0])
    if map is not None:
        raise ValueError(f"map cannot be combined with random_map=True, got map={map!r}")
    size = len(DEFAULT_MAP) if size is None else size
    check_int("size", size, 2)
    return None, int(size), int(size)


def _check_actions(actions: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """`actions` as an int64 array of `shape`, or a TypeError/ValueError naming `name`."""
    if shape == ():
        expected = f"an integer in [0, {_N_ACTIONS})"
    else:
        expected = f"an integer array of shape {shape} with values in [0, {_N_ACTIONS})"
    array = np.asarray(actions)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} must be {expected}, got {name}={actions!r} of type {type(actions).__name__}"
        )
    if array.shape != shape or ((array < 0) | (array >= _N_ACTIONS)).any():
        raise ValueError(f"{name} must be {expected}, got {name}={actions!r}")
    return array.astype(np.int64)


def _slip(actions: np.ndarray, uniforms: np.ndarray, slip: float) -> np.ndarray:
    """Each action turned to either perpendicular direction with probability slip / 2."""
    turn = np.where(uniforms < slip / 2, -1, np.where(uniforms < slip, 1, 0))
    return (actions + turn) % _N_ACTIONS


def _observation_space(obs_mode: str, rows: int, cols: int) -> spaces.Space[Any]:
    if obs_mode == "index":
        return spaces.Discrete(rows * cols)
    if obs_mode == "grid":
        return spaces.Box(0, ROBOT, (rows, cols), np.int64)
    length = rows * (cols + 1)  # every row ends with a newline token
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, len(TOKEN_VOCAB) - 1, (length,), np.int64),
            "attention_mask": spaces.Box(0, 1, (length,), np.int64),
        }
    )


def _observe(
    obs_mode: str, cells: np.ndarray, position: np.ndarray, cols: int
) -> np.ndarray | dict[str, np.ndarray]:
    """Fresh batched observations of robots at flat `position` (N,) on maps `cells` (N, S)."""
    n = len(position)
    if obs_mode == "index":
        return position.astype(np.int64)  # (N,)
    grid = cells.astype(np.int64)  # (N, S), a copy
    grid[np.arange(n), position] = ROBOT
    grid = grid.reshape(n, -1, cols)  # (N, rows, cols)
    if obs_mode == "grid":
        return grid
    newline = np.full((n, grid.shape[1], 1), _NEWLINE_TOKEN)
    ids = np.concatenate([grid + 1, newline], axis=2).reshape(n, -1)  # (N, L)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def _distances(cells: np.ndarray, moves: np.ndarray) -> np.ndarray:
    """(N, S) moves from each cell to the nearest diamond avoiding fire (inf: none), on maps
    ``cells`` (N, S) with transitions ``moves`` (N, S, 4).

    Counted backwards from the diamonds: a floor cell is one move further than the nearest
    cell one of its moves leads to (fire and diamonds end the episode, walls are never entered).
    """
    n, n_cells = cells.shape
    rows = np.arange(n)[:, None, None]
    distance = np.where(cells == DIAMOND, 0.0, np.inf)
    floor = cells == FLOOR
    for _ in range(n_cells):
        closer = np.where(floor, distance[rows, moves].min(axis=2) + 1, distance)
        if (closer == distance).all():
            break
        distance = closer
    return distance


def _shortest_path_actions(
    cells: np.ndarray, moves: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """(N, 4) True for the moves from ``position`` (N,) that start a shortest path to a
    diamond that avoids fire (see `_distances` for the arguments)."""
    distance = _distances(cells, moves)
    rows = np.arange(len(position))
    here = distance[rows, position]  # (N,)
    after = np.take_along_axis(distance, moves[rows, position], axis=1)  # (N, 4)
    return np.isfinite(here)[:, None] & (here[:, None] > 0) & (after == here[:, None] - 1)


def _action_masks(moves: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(N, 4) True where an action changes the position; all True where none does."""
    masks = moves != position[:, None]
    masks[~masks.any(axis=1)] = True
    return masks


def _render_ansi(cells: np.ndarray, position: int, cols: int, last_action: int | None) -> str:
    chars = [TOKEN_VOCAB[code + 1] for code in cells]
    chars[position] = TOKEN_VOCAB[ROBOT + 1]
    grid = "".join(
        "".join(chars[start : start + cols]) + "\n" for start in range(0, len(chars), cols)
    )
    return grid if last_action is None else f"  ({_ACTION_NAMES[last_action]})\n{grid}"


def _render_rgb(cells: np.ndarray, position: int, cols: int) -> np.ndarray:
    image = _COLOURS[cells.reshape(-1, cols)]  # (rows, cols, 3)
    image = image.repeat(_CELL_PX, axis=0).repeat(_CELL_PX, axis=1)  # (H, W, 3)
    image[::_CELL_PX] = _GRID_LINE
    image[:, ::_CELL_PX] = _GRID_LINE
    row, col = divmod(position, cols)
    margin = _CELL_PX // 5  # the robot is a square inset in its cell, which stays visible
    image[
        row * _CELL_PX + margin : (row + 1) * _CELL_PX - margin + 1,
        col * _CELL_PX + margin : (col + 1) * _CELL_PX - margin + 1,
    ] = _COLOURS[ROBOT]
    return image


class GridWorldEnv(gym.Env[GridObs, int]):
    """
    A robot on a grid looks for a diamond; fire kills it.

    ## Description
    The classic reinforcement-learning teaching game. The robot starts on the start cell
    and moves to neighbouring cells until it reaches a diamond or walks into fire. Walls
    and the edges of the grid block it. With `slip > 0` the floor is slippery: the robot
    sometimes moves perpendicular to the chosen direction.

    The default map is 6x6 (`S` start, `D` diamond, `F` fire, `#` wall, `.` floor):
    ```
    S...#.
    .##.F.
    .F..#.
    .#.F..
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

    - `"index"`: `Discrete(rows * cols)`, the robot's position `row * cols + col`.
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
    The robot starts on the `S` cell.

    ## Rewards
    - Reach the diamond: +1
    - Walk into fire: -1
    - Any other step: 0

    ## Episode End
    - Termination: the robot reaches a diamond or walks into fire.
    - Truncation (by the `TimeLimit` wrapper of `gym.make`): 100 steps.

    Calling `step` after termination raises a `RuntimeError`; call `reset`.

    ## Information
    `reset` and `step` return `{"position": (row, col)}`, the robot's cell.

    ## Arguments
    ```python
    import gymnasium as gym
    import textgym  # registers the environments

    gym.make(
        "GridWorld-v0",
        render_mode=None,
        map=None,
        size=None,
        random_map=False,
        slip=0.0,
        obs_mode="index",
    )
    ```
    * `render_mode`: `None`, `"ansi"` (the grid as text, the robot as `R`) or
      `"rgb_array"` (a `uint8` image of 32 px per cell, drawn with numpy).
    * `map`: the rows of a custom map, e.g. `["S.F", "..D"]`. It must be rectangular, use
      only `S`, `D`, `F`, `#`, `.`, have exactly one `S`, at least one `D`, and a path from
      `S` to a `D` that avoids fire and walls. `None` uses the default map.
    * `size`: the side of random maps (default 6); only with `random_map=True`.
    * `random_map`: draw a new solvable `size x size` map from `env.np_random` at every
      `reset` (each other cell is floor, wall or fire with probability 0.75, 0.15, 0.1).
    * `slip`: probability in `[0, 1)` that the robot moves in one of the two perpendicular
      directions (each with probability `slip / 2`) instead of the chosen one.
    * `obs_mode`: `"index"`, `"grid"` or `"tokens"` (see Observation Space).

    `GridWorldVectorEnv` runs N of these grids in one array operation per step:
    `gym.make_vec("GridWorld-v0", num_envs=N, vectorization_mode="vector_entry_point")`.

    ## Version History
    * v0: Initial version.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        render_mode: str | None = None,
        map: Sequence[str] | None = None,
        size: int | None = None,
        random_map: bool = False,
        slip: float = 0.0,
        obs_mode: str = "index",
    ) -> None:
        self._fixed_map, self._rows, self._cols = _check_args(
            render_mode, map, size, random_map, slip, obs_mode
        )
        self.render_mode = render_mode
        self.slip = float(slip)
        self.obs_mode = obs_mode
        self.vocab_size = len(TOKEN_VOCAB)
        self.action_space = spaces.Discrete(_N_ACTIONS)
        self.observation_space = _observation_space(obs_mode, self._rows, self._cols)
        self._map: _Map | None = self._fixed_map
        self._position: int | None = None  # None until the first reset
        self._ended = False
        self._last_action: int | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[GridObs, dict[str, Any]]:
        super().reset(seed=seed)
        if self._fixed_map is None:
            self._map = _random_map(self._rows, self.np_random)
        assert self._map is not None
        self._moves_list = self._map.moves.tolist()
        self._cells_list = self._map.cells.tolist()
        self._position = self._map.start
        self._ended = False
        self._last_action = None
        return self._observation(), self._info()

    def step(self, action: int) -> tuple[GridObs, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._position is None or self._map is None:
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
        uniform = self.np_random.random()
        move = act if uniform >= self.slip else (act + (-1 if uniform < self.slip / 2 else 1)) % 4
        self._position = self._moves_list[self._position][move]
        self._last_action = act
        code = self._cells_list[self._position]
        self._ended = _TERMINAL_LIST[code]
        # truncated is always False: the TimeLimit wrapper added by gym.make truncates
        return self._observation(), _REWARD_LIST[code], self._ended, False, self._info()

    def action_masks(self) -> np.ndarray:
        """Boolean array of shape (4,): True for the moves that change the position."""
        if self._position is None or self._map is None:
            raise RuntimeError("action_masks() was called before reset(); call env.reset() first")
        position = np.array([self._position])
        return _action_masks(self._map.moves[position], position)[0]

    def shortest_path_actions(self) -> np.ndarray:
        """Boolean array of shape (4,): True for the moves that start a shortest path to a
        diamond avoiding fire — an expert for imitation learning and a check for agents.

        All False once the episode has ended. Slip is ignored: the moves are the intended ones.
        """
        if self._position is None or self._map is None:
            raise RuntimeError(
                "shortest_path_actions() was called before reset(); call env.reset() first"
            )
        position = np.array([self._position])
        return _shortest_path_actions(self._map.cells[None], self._map.moves[None], position)[0]

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called without a render_mode; pass one at initialization, e.g. "
                'gym.make("GridWorld-v0", render_mode="rgb_array")'
            )
            return None
        if self._position is None or self._map is None:
            raise RuntimeError("render() was called before reset(); call env.reset() first")
        if self.render_mode == "ansi":
            return _render_ansi(self._map.cells, self._position, self._cols, self._last_action)
        return _render_rgb(self._map.cells, self._position, self._cols)

    def _observation(self) -> GridObs:
        assert self._map is not None and self._position is not None
        if self.obs_mode == "index":
            return self._position
        batch = _observe(
            self.obs_mode, self._map.cells[None], np.array([self._position]), self._cols
        )
        if isinstance(batch, dict):
            return {key: value[0] for key, value in batch.items()}
        return int(batch[0]) if self.obs_mode == "index" else batch[0]

    def _info(self) -> dict[str, Any]:
        assert self._position is not None
        return {"position": divmod(self._position, self._cols)}


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

    Create it with
    `gym.make_vec("GridWorld-v0", num_envs=N, vectorization_mode="vector_entry_point")`.

    :param num_envs: number of grids N
    :param render_mode: None, "ansi" or "rgb_array"; `render()` returns one frame per row
    :param map: rows of a custom map, as for `GridWorldEnv`
    :param size: side of random maps (default 6); only with `random_map=True`
    :param random_map: draw a new solvable map for each row at each of its resets
    :param slip: probability in [0, 1) of moving perpendicular to the chosen direction
    :param obs_mode: "index", "grid" or "tokens", as for `GridWorldEnv`
    :param max_episode_steps: steps after which a row's episode is truncated
    """

    metadata: dict[str, Any] = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        map: Sequence[str] | None = None,
        size: int | None = None,
        random_map: bool = False,
        slip: float = 0.0,
        obs_mode: str = "index",
        max_episode_steps: int = 100,
    ) -> None:
        for name, value in (("num_envs", num_envs), ("max_episode_steps", max_episode_steps)):
            check_int(name, value, 1)
        self._fixed_map, self._rows, self._cols = _check_args(
            render_mode, map, size, random_map, slip, obs_mode
        )
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.render_mode = render_mode
        self.slip = float(slip)
        self.obs_mode = obs_mode
        self.vocab_size = len(TOKEN_VOCAB)
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
        self._position: np.ndarray | None = None  # (N,), None until the first reset
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._last_action = np.full(self.num_envs, -1, dtype=np.int64)  # -1: none yet

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        everyone = np.ones(self.num_envs, dtype=bool)
        self._draw_maps(everyone)
        self._position = self._start.copy()
        self._steps[:] = 0
        self._prev_done[:] = False
        self._last_action[:] = -1
        return self._observation(), self._info()

    def step(
        self, actions: np.ndarray
    ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._position is None:
            raise RuntimeError("step() was called before reset(); call envs.reset() first")
        acts = _check_actions(actions, (self.num_envs,), "actions")
        rows = np.arange(self.num_envs)
        moves = _slip(acts, self.np_random.random(self.num_envs), self.slip)
        position = self._moves[rows, self._position, moves]
        code = self._cells[rows, position]
        reward, terminated = _REWARD[code], _TERMINAL[code]
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps

        # NEXT_STEP autoreset: rows whose episode ended on the previous step start a new
        # episode now, ignoring their action.
        restart = self._prev_done
        if restart.any():
            self._draw_maps(restart)
            position[restart] = self._start[restart]
            reward[restart] = 0.0
            terminated[restart] = False
            truncated[restart] = False
            self._steps[restart] = 0
        self._position = position
        self._last_action = np.where(restart, -1, acts)
        self._prev_done = terminated | truncated
        return self._observation(), reward, terminated, truncated, self._info()

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
                'gym.make_vec("GridWorld-v0", render_mode="rgb_array")'
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

    def _draw_maps(self, rows: np.ndarray) -> None:
        """Give the selected rows a new random map (fixed maps never change)."""
        if self._fixed_map is not None:
            return
        for i in np.flatnonzero(rows):
            m = _random_map(self._rows, self.np_random)
            self._cells[i], self._moves[i], self._start[i] = m.cells, m.moves, m.start

    def _observation(self) -> Any:
        assert self._position is not None
        return _observe(self.obs_mode, self._cells, self._position, self._cols)

    def _info(self) -> dict[str, Any]:
        assert self._position is not None
        position = np.stack(np.divmod(self._position, self._cols), axis=1)  # (N, 2)
        return {"position": position, "_position": np.ones(self.num_envs, dtype=bool)}
