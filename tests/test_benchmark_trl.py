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


@pytest.fixture
def trl_compare(monkeypatch):
    spec = importlib.util.spec_from_file_location("trl_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "trl_compare", module)  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


# (options, results.json key, textgym's normalize_advantage, TRL's normalize_advantages)
RUNS = [
    ([], "trl", "token", True),
    (["--group-size", "4", "--advantage", "rloo"], "trl_rloo", "none", False),
]


@pytest.mark.parametrize(("options", "key", "ours", "theirs"), RUNS)
def test_trl_compare_runs_both_trainers(trl_compare, tmp_path, options, key, ours, theirs):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"single": {"ratio": 1.0}}))  # other figures are kept
    trl_compare.main(
        ["--updates", "2", "--episodes", "8", "--minibatch", "4", "--num_generations", "4"]
        + ["--epochs", "1", "--max_new_tokens", "4", "--eval_samples", "0", "--threads", "0"]
        + ["--out", str(out)]
        + options
    )
    results = json.loads(out.read_text())
    assert results["single"] == {"ratio": 1.0}
    trl = results[key]
    # Like for like, neither side normalises RLOO's advantages; PPO + GAE whitens (over tokens,
    # TRL over sequences), and the output says so.
    assert trl["normalize_advantage"] == {"textgym": ours, "trl": theirs}
    normalisation = [d for d in trl["differences"] if d.startswith("advantage normalisation")]
    assert len(normalisation) == (ours != "none")
    assert any(d.startswith("ratio and clipping") for d in trl["differences"])
    assert trl["ratio"] > 0
    for side in ("textgym", "trl"):
        assert len(trl[side]["per_update"]) == 2
        assert trl[side]["episodes"] >= 16
        assert 1 <= trl[side]["mean_completion_tokens"] <= 4
    assert trl["measured"]["versions"]["trl"] and trl["measured"]["torch_threads"] == 1


def test_differences_name_what_the_settings_leave_unmatched(trl_compare):
    like_for_like = trl_compare.Args(group_size=4, advantage="rloo")
    found = trl_compare.differences(like_for_like, "none")
    assert not any(d.startswith(("algorithm", "samples per prompt", "advantage")) for d in found)
    batch = trl_compare.differences(like_for_like, "batch")
    assert [d for d in batch if d not in found] == [
        "advantage normalisation: both whiten over the update's sequences; TRL adds 1e-4 to the "
        "std, textgym 1e-8"
    ]
    default = trl_compare.differences(trl_compare.Args(), "token")
    assert any(d.startswith("algorithm") for d in default)
    assert any(d.startswith("samples per prompt: textgym 1") for d in default)
