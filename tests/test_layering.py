"""The arrows point one way: textgym (the envs) imports no agent code and no RL library, and the
installed distribution claims only its own top-level names."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RL_LIBRARIES = ("stable_baselines3", "sb3_contrib", "ray", "tianshou", "torchrl", "textgym_agents")


def test_no_module_of_textgym_imports_agents_or_an_rl_library():
    pattern = re.compile(rf"^\s*(from|import)\s+({'|'.join(RL_LIBRARIES)}|agents)\b", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "textgym").rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_making_the_envs_loads_no_rl_library(tiny_gpt2):
    code = f"""
import sys
import gymnasium as gym
import textgym
kwargs = dict(model={str(tiny_gpt2)!r}, prompts=["the movie was"], max_new_tokens=2)
gym.make("TextGen-v0", **kwargs).reset(seed=0)
gym.make_vec("TextGen-v0", num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
gym.make("GridWorld-v1").reset(seed=0)
gym.make_vec("GridWorld-v1", num_envs=2, vectorization_mode="vector_entry_point")
print(sorted(name for name in {RL_LIBRARIES!r} if name in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_wheel_installs_only_textgym_and_textgym_agents(tmp_path):
    # Built from a copy: setuptools leaves build/ behind, and would reuse a stale one.
    source = tmp_path / "src"
    skip = shutil.ignore_patterns(".git", "build", "runs", "*.egg-info", "__pycache__", ".*cache")
    shutil.copytree(ROOT, source, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("textgym-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"textgym", "textgym_agents"}  # never `agents`: openai-agents owns it
    assert (
        "textgym_agents/backends/sb3/vec_env.py" in names
        and "textgym/assets/model/config.json" in names
    )
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "textgym = textgym_agents.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
