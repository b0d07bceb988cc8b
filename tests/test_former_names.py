"""Files saved before textgym_agents was arranged in subpackages name the classes that moved by
their former module paths (``textgym_agents.extractors.TokenExtractor``,
``textgym_agents.gpt_policy.GPTActorCriticPolicy``, ...): they still load, through the
registries' table of former names (`textgym_agents.saving.FORMER_NAMES`), which renames and
never adds a class.

The RLlib test runs in ``.ci/run``'s RLlib environment (``TEXTGYM_RLLIB_TESTS=1``) and is
skipped where ray is not installed.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from stable_baselines3.common.policies import ActorCriticPolicy

import textgym  # noqa: F401  (registers the envs)
from textgym_agents.policies import extractors
from textgym_agents.policies.extractors import ReferencePriorPolicy, TokenExtractor
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy, gpt_policy_kwargs
from textgym_agents.saving import (
    FORMER_NAMES,
    SAVED_CLASSES,
    class_name,
    class_registry,
    saved_class,
    write_archive,
)


def rewrite_json(source: Path, path: Path, entry: str, renames: dict[str, str]) -> Path:
    """A copy of the zip ``source`` at ``path`` whose JSON ``entry`` names classes as
    ``renames`` says (present name -> the name a file of an earlier version gives)."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    text = entries[entry].decode()
    for present, former in renames.items():
        assert json.dumps(present) in text, present  # the file names the class today's way
        text = text.replace(json.dumps(present), json.dumps(former))
    entries[entry] = text.encode()
    write_archive(path, entries)
    return path


def test_every_former_name_is_the_present_name_of_a_class_that_moved():
    for former, present in FORMER_NAMES.items():
        module, _, name = present.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as err:  # an RLlib class, where ray is not installed
            if err.name != "ray":
                raise
            continue
        assert class_name(cls) == present and former != present


def test_a_former_name_resolves_to_the_class_the_registry_holds():
    registry = {**SAVED_CLASSES, **class_registry(GPTActorCriticPolicy, ReferencePriorPolicy)}
    for former, cls in [
        ("textgym_agents.extractors.TokenExtractor", TokenExtractor),
        ("textgym_agents.extractors.ReferencePriorPolicy", ReferencePriorPolicy),
        ("textgym_agents.gpt_policy.GPTActorCriticPolicy", GPTActorCriticPolicy),
    ]:
        assert saved_class(former, object, registry, "a file", "class") is cls


def test_a_former_name_adds_no_class_to_a_registry():
    """The GPT policy is not among the classes a policy's arguments may name: neither by its
    present name nor by its former one."""
    for name in FORMER_NAMES:
        if name.endswith("GPTActorCriticPolicy"):
            with pytest.raises(ValueError, match="which is not a class textgym saves"):
                saved_class(name, object, SAVED_CLASSES, "a file", "class")


def test_a_policy_file_of_former_names_loads(tmp_path):
    """A GPT policy saved with textgym's token extractor, its ``policy.json`` naming it as
    files of earlier versions do, loads with the same weights."""
    env = gym.make("GridWorld-v0", map="4x4", obs_mode="tokens")
    kwargs = {**gpt_policy_kwargs(env), "features_extractor_class": TokenExtractor}
    policy = GPTActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, **kwargs)
    policy.save(tmp_path / "policy.zip")
    old = rewrite_json(
        tmp_path / "policy.zip",
        tmp_path / "old.zip",
        "policy.json",
        {
            "textgym_agents.policies.extractors.TokenExtractor": (
                "textgym_agents.extractors.TokenExtractor"
            )
        },
    )
    loaded = GPTActorCriticPolicy.load(old, device="cpu")
    assert loaded.features_extractor_class is TokenExtractor
    expected = policy.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_a_policy_pickled_with_former_names_loads_with_allow_pickle(tmp_path, monkeypatch):
    """SB3's pickle of a GPT policy (``BasePolicy.save``, textgym 0.1's first format) imports
    the classes among its arguments by module path: a file of an earlier version, whose token
    extractor lived in ``textgym_agents.extractors``, loads with ``allow_pickle``."""
    env = gym.make("GridWorld-v0", map="4x4", obs_mode="tokens")
    kwargs = {**gpt_policy_kwargs(env), "features_extractor_class": TokenExtractor}
    policy = GPTActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, **kwargs)
    with monkeypatch.context() as earlier:  # pickled as an earlier version pickled it
        earlier.setitem(sys.modules, "textgym_agents.extractors", extractors)
        earlier.setattr(TokenExtractor, "__module__", "textgym_agents.extractors")
        ActorCriticPolicy.save(policy, str(tmp_path / "pickled.zip"))
    assert b"textgym_agents.extractors" in (tmp_path / "pickled.zip").read_bytes()
    assert "textgym_agents.extractors" not in sys.modules
    with pytest.warns(UserWarning, match="unpickling"):
        loaded = GPTActorCriticPolicy.load(tmp_path / "pickled.zip", allow_pickle=True)
    assert loaded.features_extractor_class is TokenExtractor
    assert "textgym_agents.extractors" not in sys.modules  # importable only while unpickling
    expected = policy.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_an_rllib_module_file_of_former_names_loads(tmp_path):
    """An RLlib ``model.zip`` names its module class and the policy class it holds; a file of an
    earlier version names both by their former paths."""
    if not os.environ.get("TEXTGYM_RLLIB_TESTS"):
        pytest.importorskip("ray")
    from textgym_agents.backends.rllib import load_module, module_archive, module_spec

    env_kwargs = {"map": "4x4", "obs_mode": "tokens"}
    env = gym.make("GridWorld-v0", **env_kwargs)
    spec = module_spec("GridWorld-v0", "gpt", env_kwargs)
    spec.observation_space, spec.action_space = env.observation_space, env.action_space
    module = spec.build()
    write_archive(tmp_path / "model.zip", module_archive(module, env.observation_space))
    old = rewrite_json(
        tmp_path / "model.zip",
        tmp_path / "old.zip",
        "module.json",
        {
            "textgym_agents.backends.rllib.modules.SB3PolicyModule": (
                "textgym_agents.rllib.SB3PolicyModule"
            ),
            "textgym_agents.policies.gpt_policy.GPTActorCriticPolicy": (
                "textgym_agents.gpt_policy.GPTActorCriticPolicy"
            ),
        },
    )
    loaded = load_module(old).module
    assert isinstance(loaded.policy, GPTActorCriticPolicy)
    expected = module.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key].cpu()), key
