"""`scripts/build_assets.py` builds the same bytes for the same seed: the default task's
(below) and the exact task's, which is the bundled one.

A small build (3,000 documents, a 600-token vocabulary, a one-layer model trained exactly 3
steps) is hashed file by file. The hashes were recorded with the script before it was split
into `scripts/asset_build/` (commit 8e4e0a6), with the versions of requirements-lock.txt and
one torch thread: the split moved code, not bytes. The corpus and the prompts are pure Python
(`random.Random(seed)`); the tokenizer depends on `tokenizers`, the weights and configs on
torch and transformers, so a version other than the lock's may change those hashes.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

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
    "model/model.safetensors": "b4f848d2e85e0475ef25ce0a6cda01dccb533efc84b8a9e1f0823c61f5a5b243",
}


@pytest.mark.heavy
def test_a_small_build_gives_the_bytes_it_gave_before_the_split(tmp_path):
    out = tmp_path / "assets"
    command = [sys.executable, str(ROOT / "scripts" / "build_assets.py"), *SMALL.split()]
    command += ["--out", str(out), "--dump-corpus", str(out / "corpus.tsv")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, expected in HASHES.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == expected, name
    assert (out / "REPORT.json").exists()


@pytest.mark.heavy
def test_the_exact_task_is_built_into_the_bundled_bytes(tmp_path):
    """`--task exact` rebuilds textgym/assets/exact byte for byte (seeded; one thread)."""
    command = [sys.executable, str(ROOT / "scripts" / "build_assets.py"), "--task", "exact"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    bundled = ROOT / "textgym" / "assets" / "exact"
    names = sorted(path.name for path in bundled.iterdir())
    assert names == sorted(path.name for path in (tmp_path / "exact").iterdir())
    for name in names:
        assert (tmp_path / "exact" / name).read_bytes() == (bundled / name).read_bytes(), name
