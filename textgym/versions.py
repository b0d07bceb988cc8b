"""The versions that decide a run's numbers, recorded with what the run writes, and the one
line that says when the installed ones differ from a record.

Results of the same seed and thread count agree to the last digit only with the same library
versions: a release of torch or transformers moves the last bits of a forward pass, and a
sampled run amplifies them. So every run records `installed_versions` (``config.json`` of a
training run, ``training.json`` of a reward model), and loading it compares (`version_drift`).
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ENV_DISTRIBUTIONS", "installed_versions", "version_drift"]

# The distributions whose versions decide the envs' numbers (agents add their libraries').
ENV_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "gymnasium", "numpy", "textgym")

# Entries of a record that are not distributions.
_NOT_DISTRIBUTIONS = ("python", "torch_cuda", "textgym_commit")


def installed_versions(distributions: Iterable[str] = ENV_DISTRIBUTIONS) -> dict[str, str | None]:
    """Python's version, each distribution's (None when it is not installed; torch's with
    its build, e.g. ``2.13.0+cpu``), the CUDA torch was built for, and textgym's git commit
    when it runs from a checkout (``+dirty`` when tracked files differ from it).

    :param distributions: distribution names, as pip knows them.
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import torch  # the CUDA build is not in the metadata

    versions["torch_cuda"] = torch.version.cuda
    versions["textgym_commit"] = _textgym_commit()
    return versions


def version_drift(recorded: dict[str, Any] | None, source: str | Path) -> str | None:
    """One line naming each version that ``recorded`` (read from ``source``) holds and the
    installed one differs from, or None when none does (or nothing was recorded)."""
    if not recorded:
        return None
    names = [name for name in recorded if name not in _NOT_DISTRIBUTIONS]
    installed = installed_versions(names)
    changed = [
        f"{name} {recorded[name]} (installed: {installed.get(name)})"
        for name in recorded
        if recorded[name] != installed.get(name)
    ]
    if not changed:
        return None
    return (
        f"{source} was made with other versions: {', '.join(changed)}; its figures can differ "
        "from what runs now (requirements-lock.txt pins the versions of the README's figures)"
    )


def _textgym_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None  # an installed wheel: its version says what it is

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")
