"""Saving and loading agents without pickles: what runs no code when it is read back.

Weights and optimizer states are written with ``torch.save`` and read with
``torch.load(weights_only=True)`` (tensors and plain containers only: `read_weights`);
everything else is JSON: gym spaces, constructor arguments, counters. A class among saved
arguments is saved by name and read back only through a registry of the exact classes textgym
saves (`SAVED_CLASSES`), checked against the base its argument needs, and its keyword
arguments against what its constructor takes, before anything is called (`kwargs_from_json`):
a file never names a function to call. `load_sb3` reads an SB3 ``model.zip`` this way: the
weights its agent saves, weights-only, and its counters as JSON values; the serialized objects
in its ``data`` entry are never decoded. Only the user's explicit opt-in (``allow_pickle=True``,
``--allow-pickle``) reaches a loader that unpickles, and `warn_pickle` warns whenever it does.

A file a loader cannot use is a ``ValueError`` that names the file and its entry (on the
command line: one line, exit status 2).

Kept whole (over 400 lines): every rule by which a saved file is read lives here, so the one
module to review for what loading can run is this one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import io
import json
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from torch import nn

from textgym.runfiles import atomic_path
from textgym_agents.policies.extractors import TokenExtractor

__all__ = [
    "POLICY_CLASS_ARGUMENTS",
    "SAVED_CLASSES",
    "ClassArgument",
    "check_keywords",
    "FORMER_NAMES",
    "class_name",
    "class_registry",
    "former_modules",
    "kwargs_from_json",
    "kwargs_to_json",
    "load_sb3",
    "open_archive",
    "pickled_weights_error",
    "read_json",
    "read_weights",
    "saved_class",
    "space_from_json",
    "space_to_json",
    "to_bytes",
    "warn_pickle",
    "write_archive",
]


# ---------------------------------------------------------------------------- weights and files
def to_bytes(state: Any) -> bytes:
    """``torch.save`` of tensors and plain containers, to bytes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def pickled_weights_error(source: str, err: pickle.UnpicklingError) -> ValueError:
    """The error of weights that ``torch.load(weights_only=True)`` refused: one line that names
    ``source``, says what it holds and the way out.

    :param source: the file (and entry).
    :param err: torch's refusal.
    """
    # torch's message is a page; its reason (the first global it refused) fits in one line.
    reason = re.search(r"WeightsUnpickler error:\s*([^.\n]+)", str(err))
    held = f" ({reason.group(1).strip()})" if reason else ""
    return ValueError(
        f"{source} holds pickled objects, not only tensors{held}: textgym reads weights only "
        "as tensors (torch.load(weights_only=True), which runs no code), --allow-pickle "
        "included; if you trust the file, load it with torch.load(weights_only=False) yourself "
        "and save its tensors again"
    )


def write_archive(path: str | os.PathLike, entries: dict[str, bytes]) -> None:
    """A zip of ``entries`` at ``path``, written atomically."""
    with atomic_path(path) as temp, zipfile.ZipFile(temp, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


@contextlib.contextmanager
def open_archive(path: str | os.PathLike) -> Iterator[zipfile.ZipFile]:
    """The zip at ``path``, open for reading (a file that is not a zip: ``ValueError``).

    :param path: the file.
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ValueError(
            f"{path} is not a zip archive ({err}): expected a file textgym saved"
        ) from err
    with archive:
        yield archive


def _read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    if name not in archive.namelist():
        raise ValueError(
            f"{archive.filename} has no {name} (it holds {sorted(archive.namelist())}): expected "
            "a file textgym saved"
        )
    return archive.read(name)


def read_json(archive: zipfile.ZipFile, name: str) -> Any:
    """The JSON entry ``name`` of ``archive``.

    :param archive: an open zip (`open_archive`).
    :param name: the entry.
    """
    try:
        return json.loads(_read_entry(archive, name))
    except json.JSONDecodeError as err:
        raise ValueError(f"{archive.filename}: {name} is not JSON ({err})") from err


def read_weights(archive: zipfile.ZipFile, name: str, device: torch.device | str = "cpu") -> Any:
    """The weights entry ``name`` of ``archive`` (`to_bytes`'s), read with
    ``torch.load(weights_only=True)``: tensors and plain containers, no code.

    :param archive: an open zip (`open_archive`).
    :param name: the entry (``policy.pth``, ...).
    :param device: where the tensors go.
    """
    data = io.BytesIO(_read_entry(archive, name))
    try:
        return torch.load(data, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickled_weights_error(f"{archive.filename}: {name}", err) from err


def warn_pickle(path: str | os.PathLike) -> None:
    """The warning of every opted-in unpickling."""
    warnings.warn(
        f"unpickling {str(path)!r} (allow_pickle): a pickle runs any code it holds; load only "
        "files you or someone you trust made",
        UserWarning,
        stacklevel=3,
    )


# ---------------------------------------------------------------------------- spaces
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


# ---------------------------------------------------------------------------- classes
def class_registry(*classes: type) -> dict[str, type]:
    """``classes`` by the dotted name a saved file gives each (``module.QualName``)."""
    return {class_name(cls): cls for cls in classes}


def class_name(cls: type) -> str:
    """The dotted name a saved file gives ``cls`` (``module.QualName``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


# The names files saved before textgym_agents was arranged in subpackages give the classes that
# moved, by their present names. A former name resolves only to a class the reader's registry
# holds under its present name (`saved_class`): the table renames, it never adds a class.
FORMER_NAMES: dict[str, str] = {
    "textgym_agents.extractors.TokenExtractor": "textgym_agents.policies.extractors.TokenExtractor",
    "textgym_agents.extractors.ReferencePriorPolicy": (
        "textgym_agents.policies.extractors.ReferencePriorPolicy"
    ),
    "textgym_agents.gpt_policy.GPTActorCriticPolicy": (
        "textgym_agents.policies.gpt_policy.GPTActorCriticPolicy"
    ),
    "textgym_agents.rllib.SB3PolicyModule": "textgym_agents.backends.rllib.modules.SB3PolicyModule",
}


@contextlib.contextmanager
def former_modules() -> Iterator[None]:
    """The former modules of `FORMER_NAMES`, importable while an opted-in unpickling runs
    (``allow_pickle``): SB3's pickles of earlier versions import the classes that moved by
    their former module paths. Each former name is the module that holds its classes now; the
    names are gone again after."""
    added = {}
    for former, present in FORMER_NAMES.items():
        module = former.rpartition(".")[0]
        if module not in sys.modules and module not in added:
            try:
                added[module] = importlib.import_module(present.rpartition(".")[0])
            except ModuleNotFoundError as err:  # RLlib's module, where ray is not installed
                if err.name != "ray":
                    raise
    sys.modules.update(added)
    try:
        yield
    finally:
        for module in added:
            sys.modules.pop(module, None)


# The classes textgym saves among a policy's arguments, by their saved names: a file may name
# these and no others. Nothing is imported by name: a package prefix would let a file reach any
# function of the package (torch.save among them).
SAVED_CLASSES: dict[str, type] = class_registry(
    # activations: SB3's default (Tanh) and those the RL zoo's tuned policies use
    nn.Tanh,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    # optimizers: SB3's defaults (Adam; RMSprop for A2C) and kin
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.RMSprop,
    torch.optim.SGD,
    # features extractors: SB3's default (the GPT policy's, which reads no features) and textgym's
    FlattenExtractor,
    TokenExtractor,
)


@dataclasses.dataclass(frozen=True)
class ClassArgument:
    """A class-valued constructor argument, as its owner calls the class.

    :param base: the base class the argument's class must have.
    :param kwargs: the argument that holds the keywords the class is called with (None: it is
        called with none).
    :param given: the arguments the owner passes itself (a saved file may not give them).
    """

    base: type
    kwargs: str | None = None
    given: tuple[str, ...] = ()


# The class-valued arguments of an SB3 actor-critic policy, as SB3 calls them:
# ``activation_fn()``, ``optimizer_class(params, lr=..., **optimizer_kwargs)``,
# ``features_extractor_class(observation_space, **features_extractor_kwargs)``.
POLICY_CLASS_ARGUMENTS: dict[str, ClassArgument] = {
    "activation_fn": ClassArgument(nn.Module),
    "optimizer_class": ClassArgument(torch.optim.Optimizer, "optimizer_kwargs", ("params", "lr")),
    "features_extractor_class": ClassArgument(
        BaseFeaturesExtractor, "features_extractor_kwargs", ("observation_space",)
    ),
}


def saved_class(
    name: Any, base: type, classes: Mapping[str, type], source: str, entry: str
) -> type:
    """The class a saved file names, if it is one of ``classes`` and a subclass of ``base``.

    :param name: the saved dotted name (a name of `FORMER_NAMES` reads as the class's present
        one).
    :param base: the base the class must have.
    :param classes: the registry (`SAVED_CLASSES`, `class_registry`).
    :param source: the file (and entry), for the error.
    :param entry: the field that names the class, for the error.
    """
    expected = sorted(key for key, cls in classes.items() if issubclass(cls, base))
    cls = classes.get(FORMER_NAMES.get(name, name)) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"{source}: {entry} names {name!r}, which is not a class textgym saves: expected "
            f"one of {expected}"
        )
    if not issubclass(cls, base):
        raise ValueError(
            f"{source}: {entry} names {name!r}, which is not a subclass of {base.__name__}: "
            f"expected one of {expected}"
        )
    return cls


def check_keywords(
    cls: type, kwargs: Mapping[str, Any], given: tuple[str, ...], source: str, entry: str
) -> None:
    """Refuse keywords ``cls(...)`` does not take, or lacks, before it is called.

    The keywords are its ``__init__``'s; one that declares ``**kwargs`` and forwards them to
    the next ``__init__`` up its MRO (as SB3's policies do) takes that one's too. Nothing is
    taken through ``nn.Module``'s or ``object``'s ``**kwargs``.

    :param cls: the class about to be called.
    :param kwargs: the keywords the file gives it.
    :param given: the arguments the caller passes itself.
    :param source: the file (and entry), for the error.
    :param entry: the field that holds ``kwargs``, for the error.
    """
    taken: set[str] = set()
    required: set[str] | None = None  # the class's own __init__'s: a parent's may be filled
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            break
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]
        named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        taken.update(p.name for p in named)
        if required is None:
            required = {p.name for p in named if p.default is p.empty}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    allowed = taken - set(given)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"{source}: {entry} gives {cls.__name__} {unknown}, which it does not take: "
            f"expected keywords among {sorted(allowed)}"
        )
    missing = sorted((required or set()) - set(given) - set(kwargs))
    if missing:
        raise ValueError(f"{source}: {entry} lacks {missing}, which {cls.__name__} needs")


def kwargs_to_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments as JSON: a class as ``{"class": its dotted name}`` (read back only
    if the reader's registry holds it: `kwargs_from_json`), everything else as JSON values.

    :param kwargs: the arguments.
    """
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, type):
            value = {"class": class_name(value)}
        try:
            json.dumps(value)
        except TypeError:
            raise TypeError(
                f"policy argument {key}={value!r} cannot be saved as JSON: expected numbers, "
                "strings, lists, dicts or classes"
            ) from None
        out[key] = value
    return out


def kwargs_from_json(
    kwargs: Any,
    source: str,
    arguments: Mapping[str, ClassArgument] = POLICY_CLASS_ARGUMENTS,
    classes: Mapping[str, type] = SAVED_CLASSES,
    what: str = "policy argument",
) -> dict[str, Any]:
    """Constructor arguments written by `kwargs_to_json`, read back from a file and checked
    before anything is called: each class-valued argument (``arguments``) names a class of
    ``classes`` with its argument's base (`saved_class`), the keywords it will be called with
    (decoded the same way) are ones it takes (`check_keywords`), and no other argument holds a
    class.

    :param kwargs: the saved arguments (a JSON object).
    :param source: the file (and entry) they come from, for the errors.
    :param arguments: the class-valued arguments and how their classes are called.
    :param classes: the registry the classes resolve through.
    :param what: what the errors call an argument.
    :return: the arguments, classes resolved.
    """
    return _decode(kwargs, source, arguments, classes, what, "")


def _decode(
    kwargs: Any,
    source: str,
    arguments: Mapping[str, ClassArgument],
    classes: Mapping[str, type],
    what: str,
    prefix: str,
) -> dict[str, Any]:
    """`kwargs_from_json` of the arguments at ``prefix`` (``"policy_kwargs."``: nested ones)."""
    if not isinstance(kwargs, dict):
        held = f"{what} {prefix.removesuffix('.')}" if prefix else f"the {what}s"
        raise ValueError(f"{source}: {held} is {kwargs!r}: expected a JSON object")
    # The keywords of a class-valued argument are decoded with it, below.
    called_with = {argument.kwargs: key for key, argument in arguments.items() if argument.kwargs}
    for key, value in kwargs.items():
        if key not in arguments and key not in called_with and _holds_class(value):
            raise ValueError(
                f"{source}: {what} {prefix}{key} holds a class ({value!r}): expected plain JSON "
                f"values (classes are saved only as {sorted(arguments)})"
            )
        if key in called_with and called_with[key] not in kwargs:
            raise ValueError(
                f"{source}: {what} {prefix}{key} is given without {called_with[key]}: expected "
                "both (the keywords are checked against the class they are called with)"
            )
    out = dict(kwargs)
    for key, argument in arguments.items():
        if key not in kwargs:
            continue
        entry = f"{what} {prefix}{key}"
        value = kwargs[key]
        name = value.get("class") if isinstance(value, dict) and set(value) == {"class"} else None
        if name is None:
            raise ValueError(f'{source}: {entry} is {value!r}: expected {{"class": NAME}}')
        cls = out[key] = saved_class(name, argument.base, classes, source, entry)
        called, field = {}, argument.kwargs
        if field is not None and kwargs.get(field) is not None:
            nested = f"{prefix}{field}"
            called = _decode(kwargs[field], source, arguments, classes, what, f"{nested}.")
            out[field], entry = called, f"{what} {nested}"
        check_keywords(cls, called, argument.given, source, entry)
    return out


def _holds_class(value: Any) -> bool:
    """Whether a JSON value holds a saved class (``{"class": ...}``) at any depth."""
    if isinstance(value, dict):
        return set(value) == {"class"} or any(_holds_class(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_class(v) for v in value)
    return False


# ---------------------------------------------------------------------------- SB3 agents
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
    with the same configuration), without unpickling: the weights entries ``model`` saves
    (no others: an entry's name picks what it is loaded into), read with
    ``torch.load(weights_only=True)``; the pickled ``data`` entries are not read. Everything is
    read and checked before ``model`` changes.

    :param model: the agent, built as the one that saved ``path``.
    :param path: its ``model.zip``.
    """
    wanted = set(model._get_torch_save_params()[0])
    with open_archive(path) as archive:
        # pytorch_variables.pth: variables outside the state dicts (SAC's entropy coefficient);
        # none of the zoo's agents has any.
        found = {
            name.removesuffix(".pth")
            for name in archive.namelist()
            if name.endswith(".pth") and name != "pytorch_variables.pth"
        }
        if found != wanted:
            raise ValueError(
                f"{path} holds the weights {sorted(found)}: expected {sorted(wanted)}, those of "
                "the agent its run's config.json builds"
            )
        data = read_json(archive, "data")
        params = {name: read_weights(archive, f"{name}.pth", model.device) for name in wanted}
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
