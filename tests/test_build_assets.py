"""`scripts/build_assets.py` builds the same assets for the same seed: the default task's and
the exact task's, which is the bundled one.

A small build of the default task (3,000 documents, a 600-token vocabulary, a one-layer model
trained exactly 3 steps) is hashed file by file. The hashes were recorded with the script
before it was split into `scripts/asset_build/` (commit 8e4e0a6), with the versions of
requirements-lock.txt and one torch thread: the split moved code, not bytes. The corpus and
the prompts are pure Python (`random.Random(seed)`); the tokenizer depends on `tokenizers`, the
configs on transformers, so a version other than the lock's may change those hashes. The
weights also depend on the CPU (float32 kernels round differently on an AMD EPYC than on the
Intel Xeon that recorded them): a second build on the same machine must give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SMALL = "--n-docs 3000 --vocab-size 600 --n-embd 32 --n-layer 1 --n-head 2 --steps 3 --warmup 1"
SMALL += " --eval-prompts 4 --samples-per-prompt 1 --max-new-tokens 4 --log-every 1"
HASHES = {
    "corpus.tsv": "1fda90f44ee081d209239721be4b592717e8d2416b71ec23306d849ad05604c3",
    "prompts.txt": "9ff782bdbb094a126118100af70b2a5dbde88e71613c576305fcadba953e7690",
    "model/tokenizer.json": "c1cdce76a67ce554e4f7268c08d981d202d297fc617585dabb5e82c93a96948c",
    "model/tokenizer_config.json": (
        "bc4a3bd0d2b19eaf6fe3abf2fa0f015582d8f7912a7fe7b5ec4eaa38d8e28947"
    ),
    "model/config.json": "d43b32609b4c2ebf6132e2c0c2ec392190a674653579975189ec20065bde7052",
}


def _build(out: Path, *arguments: str) -> None:
    command = [sys.executable, str(ROOT / "scripts" / "build_assets.py"), *arguments]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.heavy
def test_a_small_build_gives_the_bytes_it_gave_before_the_split(tmp_path):
    out = tmp_path / "assets"
    _build(out, *SMALL.split(), "--dump-corpus", str(out / "corpus.tsv"))
    for name, expected in HASHES.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == expected, name
    assert (out / "REPORT.json").exists()
    again = tmp_path / "again"
    _build(again, *SMALL.split())
    weights = "model/model.safetensors"
    assert (again / weights).read_bytes() == (out / weights).read_bytes()


@pytest.mark.heavy
def test_the_exact_task_is_built_into_the_bundled_assets(tmp_path):
    """`--task exact` rebuilds textgym/assets/exact: its tokenizer and configs byte for byte,
    its weights (trained in float64, saved in float32) equal to float32 rounding."""
    _build(tmp_path, "--task", "exact")
    bundled, built = ROOT / "textgym" / "assets" / "exact", tmp_path / "exact"
    names = sorted(path.name for path in bundled.iterdir())
    assert names == sorted(path.name for path in built.iterdir())
    for name in set(names) - {"model.safetensors", "REPORT.json"}:
        assert (built / name).read_bytes() == (bundled / name).read_bytes(), name
    ours, theirs = load_file(built / "model.safetensors"), load_file(bundled / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6)
    report, recorded = (json.loads((d / "REPORT.json").read_text()) for d in (built, bundled))
    assert report["training"] == pytest.approx(recorded["training"], abs=1e-3)
