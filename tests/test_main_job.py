"""The main job prints the README's figures (README, The main job), character for character.

Slow (about 4-7 minutes on one core): ``python3 -m pytest -m slow tests/test_main_job.py``;
.ci/run runs it. The figures hold for the versions requirements-lock.txt pins (and one torch
thread, what ``--threads auto`` picks for the bundled model): with other versions installed
the test is skipped and says which differ, since a figure moving with a library's release is
not a defect of the project.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _readme_block() -> list[str]:
    match = re.search(r"```\n(gpt on TextGen-v0 \(seed 0\)\n.*?)```", README, re.S)
    assert match, "README: no main-job output block under The main job"
    return match.group(1).splitlines()


def _figures(lines: list[str]) -> list[str]:
    """The lines that the seed decides: steps and episodes trained, the three evaluations."""
    kept = []
    for line in lines:
        if line.startswith("trained "):
            kept.append(line.split(" in ")[0])  # the time is the machine's, not the seed's
        elif re.match(r"\s*(reference|before|after) \(", line):
            kept.append(line.strip())
    return kept


def test_the_readme_block_holds_the_four_seeded_figure_lines():
    # Guards the slow test below from passing on an empty comparison.
    figures = _figures(_readme_block())
    assert [line.split()[0] for line in figures] == ["trained", "reference", "before", "after"]


@pytest.mark.slow
def test_the_main_job_prints_the_readme_figures(tmp_path):
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "--check"],
        capture_output=True,
        text=True,
    )
    if check.returncode:
        pytest.skip(f"installed versions differ from requirements-lock.txt: {check.stdout}")
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "textgym_agents.cli",
            "train",
            "TextGen-v0",
            "--agent",
            "gpt",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert _figures(printed.splitlines()) == _figures(_readme_block())
