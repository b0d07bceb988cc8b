"""Registration: lazy entry points, no torch for gridworld users, the plugin-style id."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym

import textgym


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return result.stdout.strip()


def test_import_registers_both_envs_without_importing_torch_or_transformers():
    out = run_python(
        "import sys, gymnasium as gym, textgym;"
        "print('TextGen-v0' in gym.registry, 'GridWorld-v1' in gym.registry,"
        " 'GridWorld-v0' in gym.registry, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert out == "True True True False False"


def test_gridworld_is_made_without_importing_torch():
    out = run_python(
        "import sys, gymnasium as gym, textgym; env = gym.make('GridWorld-v1'); env.reset(seed=0);"
        "print('torch' in sys.modules)"
    )
    assert out == "False"


def test_module_prefixed_id_works_without_importing_textgym_first():
    out = run_python(
        "import gymnasium as gym;"
        "env = gym.make('textgym:GridWorld-v1'); env.reset(seed=0);"
        "env2 = gym.make('textgym:TextGen-v0', max_new_tokens=2); obs, _ = env2.reset(seed=0);"
        "print(type(env2.unwrapped).__name__, sorted(obs))"
    )
    assert out == "TextGenEnv ['attention_mask', 'input_ids']"


def test_registered_specs_use_lazy_string_entry_points():
    for env_id in ("TextGen-v0", "GridWorld-v1", "GridWorld-v0"):
        spec = gym.spec(env_id)
        assert isinstance(spec.entry_point, str) and spec.entry_point.startswith("textgym.envs.")
        assert isinstance(spec.vector_entry_point, str)
    assert gym.spec("GridWorld-v1").max_episode_steps == gym.spec("GridWorld-v0").max_episode_steps
    assert gym.spec("GridWorld-v1").max_episode_steps == 100
    assert textgym.TextGenEnv.__name__ == "TextGenEnv"
