"""Smoke test of benchmarks/trl_compare.py: both trainers run and the figures come out.

Skipped where TRL is not installed (it is not a dependency: ``pip install -e '.[bench]'`` in a
separate environment, see benchmarks/README.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "trl_compare.py"


def test_trl_compare_runs_both_trainers(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("trl_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "trl_compare", module)  # dataclasses look the module up
    spec.loader.exec_module(module)
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"single": {"ratio": 1.0}}))  # other figures are kept
    module.main(
        ["--updates", "2", "--episodes", "8", "--minibatch", "4", "--num_generations", "4"]
        + ["--epochs", "1", "--max_new_tokens", "4", "--eval_samples", "0", "--threads", "0"]
        + ["--out", str(out)]
    )
    results = json.loads(out.read_text())
    assert results["single"] == {"ratio": 1.0}
    trl = results["trl"]
    assert trl["ratio"] > 0
    for side in ("textgym", "trl"):
        assert len(trl[side]["per_update"]) == 2
        assert trl[side]["episodes"] >= 16
        assert 1 <= trl[side]["mean_completion_tokens"] <= 4
    assert trl["versions"]["trl"]
