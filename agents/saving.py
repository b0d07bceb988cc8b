"""Saving and loading agents without pickles: what runs no code when it is read back.

Weights and optimizer states are written with ``torch.save`` and read with
``torch.load(weights_only=True)`` (tensors and plain containers only); everything else is
JSON: gym spaces, constructor arguments (classes by name, imported only from trusted
packages), counters. `load_sb3` reads an SB3 ``model.zip`` this way: its tensors through
SB3's ``load_from_zip_file(load_data=False)`` (weights-only), its counters as JSON values; the
serialized objects in its ``data`` entry are never decoded. Only the user's explicit opt-in
(``allow_pickle=True``, ``--allow-pickle``) reaches a loader that unpickles, and `warn_pickle`
warns whenever it does.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file

from textgym.runfiles import atomic_path

__all__ = [
    "from_bytes",
    "import_class",
    "kwargs_from_json",
    "kwargs_to_json",
    "load_sb3",
    "space_from_json",
    "space_to_json",
    "to_bytes",
    "warn_pickle",
    "write_archive",
]


# Classes among saved arguments are saved by name and imported only from these packages.
_CLASS_PACKAGES = ("torch.", "stable_baselines3.", "textgym_agents.")


def to_bytes(state: Any) -> bytes:
    """``torch.save`` of tensors and plain containers, to bytes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes, device: torch.device | str = "cpu") -> Any:
    """What `to_bytes` wrote; ``weights_only``: tensors and plain containers, no code."""
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


def write_archive(path: str | os.PathLike, entries: dict[str, bytes]) -> None:
    """A zip of ``entries`` at ``path``, written atomically."""
    with atomic_path(path) as temp, zipfile.ZipFile(temp, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def warn_pickle(path: str | os.PathLike) -> None:
    """The warning of every opted-in unpickling."""
    warnings.warn(
        f"unpickling {str(path)!r} (allow_pickle): a pickle runs any code it holds; load only "
        "files you or someone you trust made",
        UserWarning,
        stacklevel=3,
    )


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """A ``Discrete``, ``Box`` or ``Dict`` of them as JSON."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "dtype": str(space.dtype),
        }
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    raise TypeError(f"{space} cannot be saved: expected a Discrete, Box or Dict space")


def space_from_json(data: dict[str, Any]) -> gym.Space:
    kind = data["type"]
    if kind == "Discrete":
        return gym.spaces.Discrete(data["n"], start=data["start"])
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        return gym.spaces.Box(
            np.array(data["low"], dtype), np.array(data["high"], dtype), None, dtype
        )
    if kind == "Dict":
        return gym.spaces.Dict({k: space_from_json(v) for k, v in data["spaces"].items()})
    raise ValueError(f"space type {kind!r} is unknown: expected Discrete, Box or Dict")


def kwargs_to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, type):
            value = {"class": f"{value.__module__}.{value.__qualname__}"}
        try:
            json.dumps(value)
        except TypeError:
            raise TypeError(
                f"policy argument {key}={value!r} cannot be saved as JSON: expected numbers, "
                "strings, lists, dicts or classes"
            ) from None
        out[key] = value
    return out


def kwargs_from_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, dict) and set(value) == {"class"}:
            value = import_class(value["class"], _CLASS_PACKAGES, f"policy argument {key}")
        out[key] = value
    return out


def import_class(name: str, packages: tuple[str, ...], what: str) -> type:
    """The class ``name`` (``module.Class``) read from a saved file, imported only from
    ``packages``; ``what`` names the entry in the error."""
    if not name.startswith(packages):
        raise ValueError(
            f"{what} names class {name!r}: expected one from {packages} (no other code is "
            "imported when loading)"
        )
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


# The counters of an SB3 agent that its ``model.zip`` holds as plain JSON values.
_SB3_COUNTERS = (
    "num_timesteps",
    "_n_updates",
    "_n_calls",
    "_episode_num",
    "_current_progress_remaining",
    "exploration_rate",
)


def load_sb3(model: BaseAlgorithm, path: str | Path) -> None:
    """Weights, optimizer state and counters of an SB3 ``model.zip`` into ``model`` (built
    with the same configuration), without unpickling: SB3 reads the tensors with
    ``torch.load(weights_only=True)``; the pickled ``data`` entries are not read."""
    _, params, _ = load_from_zip_file(path, load_data=False, device=model.device)
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    try:
        model.set_parameters(params, exact_match=True, device=model.device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"{path} does not fit the agent its run's config.json builds ({err}): expected a "
            "model.zip of this run; an agent built with arguments config.json could not keep "
            "(classes among the overrides) loads only with --allow-pickle (allow_pickle=True), "
            "which runs any code the file holds"
        ) from err
    for key in _SB3_COUNTERS:
        if key in data and isinstance(data[key], int | float):
            setattr(model, key, data[key])
