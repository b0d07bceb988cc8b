"""Argument checks shared by the envs, reward models and agents.

``True`` is an int to Python; to an argument that wants a count or a number it is a mistake,
so these refuse bools.
"""

from __future__ import annotations

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
