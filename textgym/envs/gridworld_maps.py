"""GridWorld's maps and the array operations both GridWorld envs are built from: cell codes,
parsing and drawing maps, random solvable maps, moves, slips, observations, shortest paths and
rendering. `GridWorldEnv` and `GridWorldVectorEnv` (`textgym.envs.gridworld`) share them, so
a row of the vector env behaves exactly like a single env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from textgym._checks import check_int

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

# The named maps (``map="4x4"``), as FrozenLake names its own.
MAPS: dict[str, tuple[str, ...]] = {
    # Small, in the spirit of the textbook example: fire one step up from the start, the
    # diamond three steps right and one up (4 moves); a random walk finds it in 15% of
    # episodes.
    "4x4": (
        "....",
        ".#F.",
        "F..D",
        "S...",
    ),
    # The default. Two routes to the diamond, both lined with fire: down the left side
    # (10 moves) or through the middle (12 moves); a random walk finds it in under 1% of
    # episodes, so exploration decides.
    "6x6": (
        "S...#.",
        ".##.F.",
        ".F..#.",
        ".#.F..",
        "...#F.",
        "F#...D",
    ),
    # Larger: the shortest route is 18 moves between walls and fire; a random walk of 100
    # steps never found it in 2,000 episodes.
    "8x8": (
        "S..#....",
        ".#...F..",
        "...F.#..",
        "#.#...F.",
        "...#.#..",
        ".F...F.#",
        "..#.F...",
        "F...#..D",
    ),
}
DEFAULT_MAP: tuple[str, ...] = MAPS["6x6"]

# Random maps: each cell other than start and diamond is floor, wall or fire.
_RANDOM_CODES = np.array([FLOOR, WALL, FIRE], dtype=np.int8)
_RANDOM_PROBS = (0.75, 0.15, 0.10)

_OBS_MODES = ("index", "grid", "tokens")
RENDER_MODES = ("ansi", "rgb_array")
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
        raise TypeError(
            f"map must be a list of strings (one per row) or a name in {sorted(MAPS)}, got "
            f"map={rows!r}"
        )
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


def _check_shaping(shaping: float, shaping_gamma: float) -> None:
    for name, value, expected, ok in (
        ("shaping", shaping, "a finite number >= 0", lambda v: 0 <= v < np.inf),
        ("shaping_gamma", shaping_gamma, "a discount in (0, 1]", lambda v: 0 < v <= 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be {expected}, got {name}={value!r}")
        if not ok(value):
            raise ValueError(f"{name} must be {expected}, got {name}={value!r}")


def _set_arguments(
    env: Any,
    render_mode: str | None,
    map: str | Sequence[str] | None,
    size: int | None,
    random_map: bool,
    slip: float,
    obs_mode: str,
    shaping: float,
    shaping_gamma: float,
) -> None:
    """Check the arguments both envs share, then set them on ``env`` with the fixed map
    (``_fixed_map``: None for random maps; ``map=None`` is the named map ``env.default_map``)
    and its ``_rows`` and ``_cols``."""
    _check_shaping(shaping, shaping_gamma)
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(
            f"render_mode must be None, 'ansi' or 'rgb_array', got render_mode={render_mode!r}"
        )
    if obs_mode not in _OBS_MODES:
        raise ValueError(f"obs_mode must be one of {_OBS_MODES}, got obs_mode={obs_mode!r}")
    if isinstance(slip, bool) or not isinstance(slip, (int, float, np.floating)):
        raise TypeError(f"slip must be a probability in [0, 1), got slip={slip!r}")
    if not 0 <= slip < 1:
        raise ValueError(f"slip must be a probability in [0, 1), got slip={slip!r}")
    if isinstance(map, str) and map not in MAPS:
        raise ValueError(
            f"map={map!r} is not a named map: expected one of {sorted(MAPS)}, or the rows "
            "of a map as a list of strings"
        )
    if not random_map:
        if size is not None:
            raise ValueError(f"size is only used with random_map=True, got size={size!r}")
        rows = MAPS[map] if isinstance(map, str) else MAPS[env.default_map] if map is None else map
        env._fixed_map, env._rows, env._cols = _parse_map(rows), len(rows), len(rows[0])
    else:
        if map is not None:
            raise ValueError(f"map cannot be combined with random_map=True, got map={map!r}")
        size = len(DEFAULT_MAP) if size is None else size
        check_int("size", size, 2)
        if obs_mode == "index":
            raise ValueError(
                "obs_mode='index' cannot be combined with random_map=True: the robot's position "
                "does not show a map that changes at every reset; expected obs_mode='grid' or "
                "'tokens' with random_map=True"
            )
        env._fixed_map, env._rows, env._cols = None, int(size), int(size)
    env.render_mode = render_mode
    env.slip = float(slip)
    env.obs_mode = obs_mode
    env.shaping = float(shaping)
    env.shaping_gamma = float(shaping_gamma)
    env.vocab_size = len(TOKEN_VOCAB)


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


def _slip(action: Any, uniform: Any, slip: float) -> Any:
    """The move made for ``action`` given a ``uniform`` draw in [0, 1): turned to either
    perpendicular direction with probability ``slip / 2`` each (``uniform < slip / 2``: one
    way, ``slip / 2 <= uniform < slip``: the other). Plain arithmetic, so the single env's ints
    stay ints (no numpy call per step) and the vector env's arrays stay arrays."""
    turn = (uniform < slip) * (1 - 2 * (uniform < slip / 2))  # -1, +1 or 0
    return (action + turn) % _N_ACTIONS


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


def _potentials(cells: np.ndarray, moves: np.ndarray, shaping: float) -> np.ndarray:
    """(N, S) shaping potential of each cell: ``shaping * (1 - d / d_max)`` on floor from which
    a diamond is reachable, ``d`` its distance to the nearest one and ``d_max`` the largest such
    distance on the map (so the potential lies in ``[0, shaping)`` and grows toward the
    diamond); 0 on the cells that end an episode (fire, diamonds: a terminal state's potential
    must be 0 for the shaping to leave the optimal policy unchanged) and on cells the robot
    cannot be on."""
    distance = _distances(cells, moves)
    reachable = (cells == FLOOR) & np.isfinite(distance)
    farthest = np.where(reachable, distance, 0.0).max(axis=1, keepdims=True)  # (N, 1)
    return np.where(reachable, shaping * (1.0 - distance / np.maximum(farthest, 1.0)), 0.0)


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
