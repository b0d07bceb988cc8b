"""A run's checkpoints, one module for every trainer (SB3's algorithms, `SequencePPO`, RLlib's
`RLlibAgent`): `save_checkpoint` writes one, `latest_checkpoint` finds the one a resume reads,
`restore` continues an agent from it, and the newest ``keep`` are kept (``_prune``).

A checkpoint ``checkpoints/step_N`` is the agent (``.zip``: weights, optimizer, counters), an
off-policy agent's replay buffer (``.buffer.npz``, kept for the newest checkpoint only) and
last, marking it complete, ``.json``: the RNG states, the adaptive KL coefficient and what the
run did before training (evaluations, cloning).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen_core import core_of
from textgym.runfiles import atomic_path, write_json
from textgym_agents.saving import load_sb3
from textgym_agents.trainers.sequence_ppo import SequencePPO

# The newest checkpoint is what a resume reads; the one before it is there to go back to
# should the newest hold a run that went wrong just before it.
KEEP_CHECKPOINTS = 2


def save_agent(model: Any, path: Path) -> None:
    """The agent (SB3's zip, or `SequencePPO.save`'s, `RLlibAgent.save`'s) at ``path``,
    atomically."""
    if not isinstance(model, BaseAlgorithm):
        model.save(path)  # atomic itself
        return
    with atomic_path(path) as temp:
        model.save(temp)


def save_checkpoint(
    model: Any,
    folder: Path,
    step: int,
    run: dict[str, Any],
    before: dict[str, Any],
    keep: int | None,
) -> None:
    """The checkpoint ``folder/step_N`` of ``model`` at ``step``, then all but the newest
    ``keep`` complete checkpoints deleted (`_prune`).

    :param run: the run's counters (``next_checkpoint``, ``seconds``, ``episodes``) a resume
        picks up.
    :param before: what the run did before training (evaluations, cloning), for its summary.
    :param keep: checkpoints kept (None: every one).
    """
    folder.mkdir(exist_ok=True)
    base = folder / f"step_{step}"
    save_agent(model, base.with_suffix(".zip"))
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        with atomic_path(base.with_suffix(".buffer.npz")) as temp:
            np.savez(temp, **_buffer_arrays(buffer))
    state = {"step": step, **run, "rng": _rng_state(model), **before}
    kl_coef = _kl_coef(model)
    if kl_coef is not None:  # the adaptive KL coefficient moved with training
        state["kl_coef"] = kl_coef
    write_json(base.with_suffix(".json"), state)
    _prune(folder, step, keep)


def latest_checkpoint(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint of ``out``: its ``.zip`` and its ``.json``'s state."""
    steps = _complete_steps(out / "checkpoints")
    if not steps:
        return None
    path = out / "checkpoints" / f"step_{steps[-1]}.json"
    return path.with_suffix(".zip"), json.loads(path.read_text())


def restore(model: Any, checkpoint: Path, state: dict[str, Any]) -> None:
    """Continue ``model`` (built with the run's configuration) from a checkpoint."""
    if not isinstance(model, BaseAlgorithm):  # SequencePPO, RLlibAgent
        model.load_state(checkpoint)
    else:
        load_sb3(model, checkpoint)
        buffer = checkpoint.with_name(checkpoint.stem + ".buffer.npz")
        if getattr(model, "replay_buffer", None) is not None and buffer.exists():
            _restore_buffer(model.replay_buffer, buffer)
        # The env restarts: seeded anew, so it does not replay the run's first episodes.
        model.env.seed(model.seed + state["step"])
    _set_rng_state(model, state["rng"])
    if "kl_coef" in state:
        _set_kl_coef(model, float(state["kl_coef"]))


def remove_temporaries(out: Path) -> None:
    """Files a killed run was writing (`atomic_path`'s temporaries): never complete."""
    for path in out.rglob("*.tmp-*"):
        if path.is_file():
            path.unlink()


_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _buffer_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """A replay buffer as plain arrays (read back with ``allow_pickle=False``)."""
    arrays = {"pos": np.array(buffer.pos), "full": np.array(buffer.full)}
    for name in _BUFFER_FIELDS:
        value = getattr(buffer, name, None)
        if isinstance(value, dict):
            arrays.update({f"{name}/{key}": array for key, array in value.items()})
        elif value is not None:
            arrays[name] = value
    return arrays


def _restore_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """The replay buffer `_buffer_arrays` saved at ``path`` into ``buffer``: every array read
    (no pickles) and checked against the buffer's before the buffer changes."""
    arrays = _buffer_arrays(buffer)  # the buffer's own arrays, filled in place
    try:
        with np.load(path, allow_pickle=False) as archive:
            saved = {name: archive[name] for name in arrays if name in archive.files}
    except ValueError as err:  # numpy's refusal of an object array or a pickle names no file
        raise ValueError(
            f"{path} holds Python objects ({err}): expected plain arrays, as textgym saves a "
            "replay buffer; an object array loads only by unpickling, which textgym never does"
        ) from err
    for name, array in arrays.items():
        if name not in saved or saved[name].shape != array.shape:
            found = saved[name].shape if name in saved else "nothing"
            raise ValueError(
                f"{path}: {name} holds {found}: expected an array of shape {array.shape}, "
                "this run's replay buffer"
            )
    buffer.pos, buffer.full = int(saved.pop("pos")), bool(saved.pop("full"))
    for name, array in saved.items():
        arrays[name][...] = array


def _rng_state(model: Any) -> dict[str, Any]:
    """Every RNG training draws from, as JSON."""
    numpy_state = np.random.get_state()  # noqa: NPY002 (SB3 draws from the global RNG)
    state = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    space = getattr(model, "action_space", None)
    if space is not None and space._np_random is not None:  # DQN's exploration
        state["action_space"] = space.np_random.bit_generator.state
    return state


def _set_rng_state(model: Any, state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))  # noqa: NPY002
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    if "action_space" in state:
        model.action_space.np_random.bit_generator.state = state["action_space"]


def _checkpoint_files(folder: Path) -> dict[int, list[Path]]:
    """The files of the checkpoints in ``folder`` by step (`atomic_path`'s temporaries aside)."""
    files: dict[int, list[Path]] = {}
    for path in folder.glob("step_*"):
        step = path.name.split(".")[0].removeprefix("step_")
        if step.isdigit() and ".tmp-" not in path.name:
            files.setdefault(int(step), []).append(path)
    return files


def _complete_steps(folder: Path) -> list[int]:
    """The steps of the complete checkpoints in ``folder`` (a ``.zip`` and, written last, its
    ``.json``), in order."""
    return sorted(
        step
        for step, paths in _checkpoint_files(folder).items()
        if {f"step_{step}.zip", f"step_{step}.json"} <= {path.name for path in paths}
    )


def _prune(folder: Path, newest: int, keep: int | None) -> None:
    """Delete the checkpoints before the newest ``keep`` complete ones (None: none), and the
    replay buffers of all but the ``newest`` (only a resume reads one: tens of MB each).

    Called once the checkpoint at ``newest`` is complete, so the one a resume reads is never
    deleted. A checkpoint's ``.json`` goes first, so one killed half-deleted is not complete.
    Files past ``newest`` (a killed run's, which this run writes over) are left alone.
    """
    kept = set(_complete_steps(folder)[-keep:]) if keep is not None else None
    for step, paths in _checkpoint_files(folder).items():
        if step >= newest:
            continue
        if kept is not None and step not in kept:
            doomed = sorted(paths, key=lambda path: path.suffix != ".json")
        else:
            doomed = [path for path in paths if path.name.endswith(".buffer.npz")]
        for path in doomed:
            path.unlink()


def _kl_coef(model: Any) -> float | None:
    """The training env's KL coefficient (it moves when adaptive), None off TextGen."""
    if not isinstance(model, BaseAlgorithm | SequencePPO):
        return model.kl_coef  # RLlibAgent: its runners'
    core = _training_core(model)
    return None if core is None else core.kl_controller.value


def _set_kl_coef(model: Any, value: float) -> None:
    if not isinstance(model, BaseAlgorithm | SequencePPO):
        model.kl_coef = value
    else:
        _training_core(model).kl_controller.value = value


def _training_core(model: BaseAlgorithm | SequencePPO) -> Any:
    return core_of(model.env if isinstance(model, SequencePPO) else model.get_env())
