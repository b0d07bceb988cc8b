"""Argument checks shared by the envs, reward models and agents.

``True`` is an int to Python; to an argument that wants a count or a number it is a mistake,
so these refuse bools. A number given as a string (``"3"``) is refused too, never parsed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """A Python or NumPy integer that is not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A Python or NumPy integer or float that is not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= ``low``."""
    if not (is_int(value) and value >= low):
        raise ValueError(f"{name}={value!r}: expected an integer >= {low}")


def check_number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a float; raise ``ValueError`` naming ``name`` unless it is a finite number
    (not a bool, not a string) with ``value > above``, ``value >= at_least`` and
    ``value <= at_most``, each where given."""
    try:
        number = float(value) if is_number(value) else math.nan
    except OverflowError:  # an int too large for a float
        number = math.inf
    ok, limits = math.isfinite(number), []
    if above is not None:
        ok, limits = ok and number > above, [*limits, f"> {above:g}"]
    if at_least is not None:
        ok, limits = ok and number >= at_least, [*limits, f">= {at_least:g}"]
    if at_most is not None:
        ok, limits = ok and number <= at_most, [*limits, f"<= {at_most:g}"]
    if not ok:
        expected = " ".join(["a finite number", " and ".join(limits)]).rstrip()
        raise ValueError(f"{name}={value!r}: expected {expected}")
    return number


def check_seed(seed: Any, num_envs: int | None = None) -> int | list[int | None] | None:
    """`seed` as gymnasium's seeding takes it (Python ints), or a ValueError naming `seed`.

    A single env (``num_envs=None``) takes None or an integer >= 0; a vector env also takes a
    list of ``num_envs`` such seeds, one per row (None: the row keeps its generator).
    """
    if seed is None or (is_int(seed) and seed >= 0):
        return None if seed is None else int(seed)
    expected = "None or an integer >= 0"
    if num_envs is not None:
        expected = (
            f"None, an integer >= 0 or a list of num_envs={num_envs} seeds, one per row, each "
            "None or an integer >= 0"
        )
        if isinstance(seed, Sequence | np.ndarray) and not isinstance(seed, str | bytes):
            seeds = list(seed)
            if len(seeds) == num_envs and all(s is None or (is_int(s) and s >= 0) for s in seeds):
                return [None if s is None else int(s) for s in seeds]
            expected += f" (got {len(seeds)} entries)" if len(seeds) != num_envs else ""
    raise ValueError(f"seed must be {expected}, got seed={seed!r}")


def check_options(options: Any, allowed: tuple[str, ...], owner: str) -> Mapping[str, Any]:
    """`options` of ``owner.reset`` (None means none), or a TypeError/ValueError naming
    `options` if it is not a dict or has a key outside ``allowed``."""
    takes = f"only {', '.join(map(repr, allowed))}" if allowed else "no options"
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"options must be a dict or None ({owner}.reset takes {takes}), got options={options!r}"
        )
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise ValueError(
            f"options has unknown key(s) {unknown}: {owner}.reset takes {takes}, "
            f"got options={options!r}"
        )
    return options


def check_reset_mask(mask: Any, num_envs: int) -> np.ndarray:
    """``options["reset_mask"]`` of a vector reset, checked as gymnasium's ``SyncVectorEnv``
    checks it: a bool numpy array of shape ``(num_envs,)`` with at least one True."""
    expected = f"a numpy array of dtype bool and shape ({num_envs},) with at least one True"
    got = f"got options['reset_mask']={mask!r}"
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        kind = type(mask).__name__ + (
            f" of dtype {mask.dtype}" if isinstance(mask, np.ndarray) else ""
        )
        raise TypeError(f"options['reset_mask'] must be {expected}, {got} ({kind})")
    if mask.shape != (num_envs,) or not mask.any():
        raise ValueError(f"options['reset_mask'] must be {expected}, {got}")
    return mask.copy()
