"""``python -m textgym``: the ``textgym`` command, exactly as the console script runs it.

The command's agent commands (``train``, ``eval``, ...) live in `textgym_agents`, which this
package does not import: the console script's entry point names them, so it is looked up and
run here. Without installed metadata (a bare checkout on ``sys.path``) only the env commands
of `textgym.cli` exist, and a note says so.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points


def main() -> None:
    scripts = entry_points(group="console_scripts", name="textgym")
    if scripts:
        next(iter(scripts)).load()()
        return
    from textgym import cli

    print(
        "textgym: the package is not installed (pip install -e .), so only the env commands "
        "(rollout, train-rm) are available",
        file=sys.stderr,
    )
    cli.main()


if __name__ == "__main__":
    main()
