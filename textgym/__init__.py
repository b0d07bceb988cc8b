"""textgym: text generation as a Gymnasium environment, next to a gridworld.

Importing this package registers the environments with Gymnasium::

    import gymnasium as gym
    import textgym  # noqa: F401  (registers TextGen-v0, TextGenExact-v0 and the GridWorlds)

    env = gym.make("TextGen-v0")

Gymnasium 1.x does not auto-load plugins, so the import is needed; alternatively
``gym.make("textgym:TextGen-v0")`` imports the package itself. Registration uses lazy
string entry points: importing textgym does not import torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

__all__ = ["GridWorldEnv", "TextGenEnv", "__version__"]

if TYPE_CHECKING:
    from textgym.envs.gridworld import GridWorldEnv
    from textgym.envs.textgen import TextGenEnv


# GridWorld's versions -> (env class in textgym.envs.gridworld, vector env class in
# textgym.envs.gridworld_vector, keyword arguments). v1 is v0 on the 4x4 map with
# potential-based shaping, which stock agents learn at their libraries' defaults (see
# GridWorldEnv's Version History).
GRIDWORLD_VERSIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "v0": ("GridWorldEnv", "GridWorldVectorEnv", {}),
    "v1": ("GridWorldEnvV1", "GridWorldVectorEnvV1", {"shaping": 0.5}),
}


# TextGen's registrations -> (module in textgym.envs, env class, vector env class).
TEXTGEN_IDS: dict[str, tuple[str, str, str]] = {
    "TextGen-v0": ("textgen", "TextGenEnv", "textgen_vector:TextGenVectorEnv"),
    "TextGenExact-v0": ("textgen_exact", "TextGenExactEnv", "textgen_exact:TextGenExactVectorEnv"),
}


def _register_envs() -> None:
    for env_id, (module, env, vector_env) in TEXTGEN_IDS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=f"textgym.envs.{module}:{env}",
                vector_entry_point=f"textgym.envs.{vector_env}",
            )
    for version, (env, vector_env, kwargs) in GRIDWORLD_VERSIONS.items():
        if f"GridWorld-{version}" not in registry:
            register(
                id=f"GridWorld-{version}",
                entry_point=f"textgym.envs.gridworld:{env}",
                vector_entry_point=f"textgym.envs.gridworld_vector:{vector_env}",
                max_episode_steps=100,
                kwargs=kwargs,
            )


_register_envs()

_LAZY = {
    "TextGenEnv": "textgym.envs.textgen",
    "GridWorldEnv": "textgym.envs.gridworld",
}


def __getattr__(name: str) -> Any:
    # Lazy so that a gridworld user never pays for importing torch.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'textgym' has no attribute {name!r}")
