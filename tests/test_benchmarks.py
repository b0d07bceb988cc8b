"""benchmarks/: every figure of results.json says how it was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textgym_agents.training.rundir import run_versions

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_results_entry_names_its_command_machine_threads_and_versions():
    results = json.loads((BENCHMARKS / "results.json").read_text())
    assert results
    for name, entry in results.items():
        measured = entry.get("measured")
        assert measured, f"results.json[{name!r}] does not say how it was measured"
        assert measured["command"].startswith("python benchmarks/"), name
        assert {"platform", "cpus", "torch_threads", "device"} <= set(measured), name
        assert {"torch", "transformers", "numpy", "python"} <= set(measured["versions"]), name


def test_run_py_records_the_measurement_with_each_figure(tmp_path):
    out = tmp_path / "results.json"
    argv = ["--only", "grid", "--repeats", "1", "--threads", "1", "--out", str(out)]
    subprocess.run([sys.executable, str(BENCHMARKS / "run.py"), *argv], check=True)
    grid = json.loads(out.read_text())["grid"]
    assert grid["gridworld_ratio"] > 0
    measured = grid["measured"]
    assert measured["command"].endswith("run.py " + " ".join(argv))
    assert measured["torch_threads"] == 1
    assert measured["versions"] == run_versions()
