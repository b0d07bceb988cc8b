"""Write requirements-lock.txt: the exact versions of textgym's dependencies, as installed.

The README's figures are measured in the environment this file pins; installing from it
reproduces them (see README, Set-up)::

    python scripts/lock.py            # after measuring: pin what the figures were measured with
    python scripts/lock.py --check    # exit 1 if the installed versions differ from the lock

It walks textgym's requirements (no extras) and theirs, as `importlib.metadata` reports them,
and pins every installed distribution it reaches. torch is pinned without its local build tag
(``2.13.0``, not ``2.13.0+cpu``): the index you install from picks the build.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

LOCK = Path(__file__).resolve().parent.parent / "requirements-lock.txt"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "textgym") -> dict[str, str]:
    """Every installed distribution that ``root`` needs, directly or not, and its version
    (``root`` itself left out; local build tags such as ``+cpu`` dropped)."""
    environment = {"extra": ""}
    found: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            key = _canonical(requirement.name)
            if key in found:
                continue
            try:
                version = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                continue  # optional on this platform
            found[key] = version.split("+")[0]
            todo.append(requirement.name)
    return dict(sorted(found.items()))


def render(pins: dict[str, str]) -> str:
    header = [
        "# The exact versions the README's figures were measured with (python scripts/lock.py).",
        f"# Python {platform.python_version()}. Install: pip install torch==2.13.0 (from "
        "PyTorch's CPU index for the CPU build),",
        "# then: pip install -c requirements-lock.txt -e .",
    ]
    return "\n".join(header + [f"{name}=={version}" for name, version in pins.items()]) + "\n"


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``name -> version`` of a lock file written by `render`."""
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version
    return pins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    pins = closure()
    if not args.check:
        LOCK.write_text(render(pins))
        print(f"wrote {len(pins)} pins to {LOCK}")
        return
    locked = read_lock()
    differ = {
        name: (locked.get(name), pins.get(name))
        for name in sorted(set(locked) | set(pins))
        if locked.get(name) != pins.get(name)
    }
    for name, (want, have) in differ.items():
        print(f"{name}: locked {want}, installed {have}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
