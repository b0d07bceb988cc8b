"""Loading an RLlib module (``module.json``) calls nothing the file names: its class, the
policy class and the classes among the policy's arguments resolve only through registries of
the exact classes textgym saves, checked against their bases and their keywords first.

RLlib pins its own gymnasium: these run in ``.ci/run``'s RLlib environment (see
tests/test_rllib.py) and are skipped where ray is not installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest
import torch

# .ci/run's RLlib environment sets TEXTGYM_RLLIB_TESTS=1: there a missing ray fails, not skips.
ray = __import__("ray") if os.environ.get("TEXTGYM_RLLIB_TESTS") else pytest.importorskip("ray")

from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog  # noqa: E402
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (  # noqa: E402
    DefaultPPOTorchRLModule,
)
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig  # noqa: E402

import textgym  # noqa: E402, F401  (registers the envs)
from textgym_agents.backends.rllib import load_module, module_archive, module_spec  # noqa: E402
from textgym_agents.policies import gpt_policy  # noqa: E402
from textgym_agents.saving import write_archive  # noqa: E402


class Payload:
    """Unpickling this creates ``marker``: the proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def save_module(env_id: str, agent: str, env_kwargs: dict, path: Path) -> Path:
    """An RLlib module of ``agent`` on ``env_id``, saved as `RLlibAgent.save` saves it."""
    env = gym.make(env_id, **env_kwargs)
    spec = module_spec(env_id, agent, env_kwargs)
    spec.observation_space, spec.action_space = env.observation_space, env.action_space
    write_archive(path, module_archive(spec.build(), env.observation_space))
    return path


@pytest.fixture(scope="module")
def gpt_module(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("modules") / "gpt.zip"
    return save_module("GridWorld-v0", "gpt", {"map": "4x4", "obs_mode": "tokens"}, out)


@pytest.fixture(scope="module")
def default_module(tmp_path_factory) -> Path:
    """RLlib's default PPO module, as textgym's ``ppo`` on GridWorld trains it."""
    config = DefaultModelConfig(fcnet_hiddens=[64, 64], vf_share_layers=False)
    module = DefaultPPOTorchRLModule(
        observation_space=gym.spaces.Box(0.0, 1.0, (16,)),
        action_space=gym.spaces.Discrete(4),
        model_config=dataclasses.asdict(config),
        catalog_class=PPOCatalog,
    )
    out = tmp_path_factory.mktemp("modules") / "default.zip"
    write_archive(out, module_archive(module, gym.spaces.Discrete(16)))
    return out


def edit_module_json(source: Path, path: Path, edit) -> Path:
    """A copy of the module file ``source`` at ``path``, its ``module.json`` edited."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(entries["module.json"])
    edit(meta)
    entries["module.json"] = json.dumps(meta).encode()
    write_archive(path, entries)
    return path


def test_saved_modules_load_back(gpt_module, default_module):
    assert type(load_module(gpt_module).module.policy).__name__ == "GPTActorCriticPolicy"
    assert isinstance(load_module(default_module).module, DefaultPPOTorchRLModule)


def test_a_saved_gpt_module_keeps_no_model_path(tiny_gpt2, tmp_path, monkeypatch):
    """The weights hold the trunk: no init_from is saved, and one an older file holds is not
    read."""
    env_kwargs = {"model": str(tiny_gpt2), "max_new_tokens": 3}
    path = save_module("TextGen-v0", "gpt", env_kwargs, tmp_path / "text.zip")
    with zipfile.ZipFile(path) as archive:
        policy_kwargs = json.loads(archive.read("module.json"))["model_config"]["policy_kwargs"]
    assert "init_from" not in policy_kwargs
    expected = load_module(path).module.state_dict()
    old = edit_module_json(
        path,
        tmp_path / "old.zip",
        lambda meta: meta["model_config"]["policy_kwargs"].update(init_from=str(tiny_gpt2)),
    )

    def no_model(*args, **kwargs):
        raise AssertionError(f"loading read a model: {args}")

    monkeypatch.setattr(gpt_policy.AutoModelForCausalLM, "from_pretrained", no_model)
    for key, value in load_module(old).module.state_dict().items():
        assert torch.equal(value, expected[key]), key


def planted(marker: str) -> dict[str, tuple[str, object, str]]:
    """Entries planted in a module.json: (module, edit of the JSON, words of the refusal)."""
    save = {"class": "torch.save"}

    def policy_kwargs(**entries):
        return lambda meta: meta["model_config"]["policy_kwargs"].update(entries)

    return {
        "module class torch.save": (
            "gpt",
            lambda meta: meta.update({"class": "torch.save"}),
            "module.json: class names 'torch.save', which is not a class textgym saves",
        ),
        "module class of another base": (
            "gpt",
            lambda meta: meta.update({"class": "ray.rllib.algorithms.ppo.ppo.PPO"}),
            "class names 'ray.rllib.algorithms.ppo.ppo.PPO', which is not a class textgym saves",
        ),
        "policy class torch.save": (
            "gpt",
            lambda meta: meta["model_config"].update(policy_class=save),
            "model_config argument policy_class names 'torch.save'",
        ),
        "policy class of another base": (
            "gpt",
            lambda meta: meta["model_config"].update(
                policy_class={"class": "textgym_agents.extractors.TokenExtractor"}
            ),
            "policy_class names 'textgym_agents.extractors.TokenExtractor', which is not a "
            "subclass of ActorCriticPolicy",
        ),
        "extractor torch.save": (
            "gpt",
            policy_kwargs(features_extractor_class=save, features_extractor_kwargs={"f": marker}),
            "model_config argument policy_kwargs.features_extractor_class names 'torch.save'",
        ),
        "optimizer kwargs it does not take": (
            "gpt",
            policy_kwargs(
                optimizer_class={"class": "torch.optim.adam.Adam"}, optimizer_kwargs={"f": marker}
            ),
            "model_config argument policy_kwargs.optimizer_kwargs gives Adam ['f']",
        ),
        "optimizer kwargs without their class": (
            "gpt",
            policy_kwargs(optimizer_kwargs={"f": marker}),
            "policy_kwargs.optimizer_kwargs is given without optimizer_class",
        ),
        "policy kwargs it does not take": (
            "gpt",
            policy_kwargs(f=marker),
            "model_config argument policy_kwargs gives GPTActorCriticPolicy ['f']",
        ),
        "class among RLlib's entries": (
            "gpt",
            lambda meta: meta["model_config"].update(vf_share_layers=save),
            "model_config argument vf_share_layers holds a class",
        ),
        "no policy class": (
            "gpt",
            lambda meta: meta["model_config"].pop("policy_class"),
            "model_config argument policy_kwargs is given without policy_class",
        ),
        "default module activation": (
            "default",
            lambda meta: meta["model_config"].update(fcnet_activation="Module"),
            "model_config fcnet_activation is 'Module': expected one of",
        ),
        "default module initializer": (
            "default",
            lambda meta: meta["model_config"].update(fcnet_kernel_initializer="zeros_"),
            "model_config fcnet_kernel_initializer is 'zeros_': expected null",
        ),
        "default module field it does not have": (
            "default",
            lambda meta: meta["model_config"].update(f=marker),
            "model_config gives ['f']: expected fields of RLlib's DefaultModelConfig",
        ),
    }


@pytest.mark.parametrize("case", list(planted("")))
def test_a_module_file_calls_nothing_it_names(
    gpt_module, default_module, tmp_path, monkeypatch, case
):
    marker = tmp_path / "pwned"
    kind, edit, words = planted(str(marker))[case]
    source = gpt_module if kind == "gpt" else default_module
    path = edit_module_json(source, tmp_path / "model.zip", edit)
    built = []
    monkeypatch.setattr(gpt_policy.GPTActorCriticPolicy, "_build", lambda *args: built.append(args))
    with pytest.raises(ValueError) as refused:
        load_module(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: module.json") and "\n" not in message
    assert words in message
    assert not marker.exists() and not built


def test_module_weights_with_a_pickle_are_refused(gpt_module, tmp_path):
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(gpt_module) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["module.pth"] = pickle.dumps(Payload(marker), protocol=2)
    path = tmp_path / "model.zip"
    write_archive(path, entries)
    with pytest.raises(ValueError, match="model.zip: module.pth holds pickled objects"):
        load_module(path)
    assert not marker.exists()
