"""The README's claims that a command can check."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_quickstart_code_runs():
    quickstart = re.search(r"## Quickstart\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(quickstart, "README-quickstart", "exec"), namespace)
    assert isinstance(namespace["info"]["text"], str)
    assert namespace["info"]["prompt"] == "I saw this movie with my kids and"  # as commented
    assert -1.0 <= namespace["info"]["rm_score"] <= 1.0


def test_ci_runs_exactly_the_readme_test_command():
    setup = re.search(r"# 2\. install and pass the tests.*?\n(.*?)\n", README).group(1)
    test_command = setup.split("&&")[-1].strip()
    assert test_command == "python3 -m pytest"
    assert CI.strip().splitlines()[-1] == test_command
