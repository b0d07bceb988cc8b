"""The RLlib modules textgym trains and how they are saved: `SB3PolicyModule` (an SB3 actor-critic
policy as an RLlib module), RLlib's default PPO module on GridWorld, and `module_archive` /
`load_module`, which write and read either as JSON and weights (no pickles).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.connectors.env_to_module import FlattenObservations
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy

import textgym  # noqa: F401  (registers the envs)
from textgym_agents.policies.extractors import ReferencePriorPolicy, TokenExtractor
from textgym_agents.policies.gpt_policy import (
    ForwardMemory,
    GPTActorCriticPolicy,
    gpt_policy_kwargs,
    no_schedule,
    without_init_from,
)
from textgym_agents.saving import (
    POLICY_CLASS_ARGUMENTS,
    SAVED_CLASSES,
    ClassArgument,
    class_name,
    class_registry,
    kwargs_from_json,
    kwargs_to_json,
    open_archive,
    read_json,
    read_weights,
    saved_class,
    space_from_json,
    space_to_json,
    to_bytes,
)


class SB3PolicyModule(TorchRLModule, ValueFunctionAPI):
    """An SB3 actor-critic policy as an RLlib module: RLlib's PPO trains the policy's own
    forward pass (logits and values).

    ``model_config``: ``{"policy_class": {"class": name}, "policy_kwargs": {...}}`` in the
    JSON form of `textgym_agents.saving.kwargs_to_json` (classes by name, read back only
    through a registry of the exact classes textgym saves: `policy_config`), so a module is
    rebuilt from its spec anywhere.

    On TextGen the module is its env's KL scorer (`score`): each forward pass remembers its
    log-probs, which the env's scorer call for the rows that acted reads back.
    """

    def setup(self) -> None:
        policy_class, policy_kwargs = policy_config(dict(self.model_config), "the module spec")
        self.policy = policy_class(
            self.observation_space, self.action_space, no_schedule, **policy_kwargs
        )
        self.policy.optimizer = None  # RLlib's learner optimizes the module's parameters
        self.action_dist_cls = TorchCategorical
        self.memory = ForwardMemory()

    def logits_and_values(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's action logits ``(B, A)`` and values ``(B,)``."""
        if isinstance(self.policy, GPTActorCriticPolicy):
            return self.policy.logits_and_values(obs)  # one trunk forward for both
        logits = self.policy.get_distribution(obs).distribution.logits
        return logits, self.policy.predict_values(obs).squeeze(-1)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        logits, values = self.logits_and_values(obs)
        if isinstance(obs, dict) and "input_ids" in obs:
            self.memory.remember(obs["input_ids"], logits)
        return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: values}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is not None:  # the values of the train forward pass
            return embeddings
        return self.logits_and_values(batch[Columns.OBS])[1]

    @torch.no_grad()
    def score(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """TextGen's policy scorer: log-probs ``(B, A)`` of the rows of ``obs``, from the
        forward pass that acted on them (a forward of its own for rows it did not see)."""
        logprobs = self.memory.recall(obs)
        if logprobs is not None:
            return logprobs
        device = next(self.parameters()).device
        tensors = {
            key: torch.as_tensor(np.asarray(value), device=device) for key, value in obs.items()
        }
        logits, _ = self.logits_and_values(tensors)
        return torch.log_softmax(logits.float(), -1).cpu().numpy()


# What an `SB3PolicyModule`'s model_config may name: the policies textgym trains on RLlib and
# the classes among their arguments; SB3PolicyModule calls
# ``policy_class(observation_space, action_space, lr_schedule, **policy_kwargs)``.
_POLICY_CONFIG_CLASSES = {
    **SAVED_CLASSES,
    **class_registry(GPTActorCriticPolicy, ReferencePriorPolicy),
}
_POLICY_CONFIG_ARGUMENTS = {
    **POLICY_CLASS_ARGUMENTS,
    "policy_class": ClassArgument(
        ActorCriticPolicy, "policy_kwargs", ("observation_space", "action_space", "lr_schedule")
    ),
}


def policy_config(
    model_config: dict[str, Any], source: str
) -> tuple[type[ActorCriticPolicy], dict[str, Any]]:
    """The policy class and arguments of an `SB3PolicyModule`'s ``model_config``, checked
    before anything is called (`textgym_agents.saving.kwargs_from_json`).

    :param model_config: ``{"policy_class": {"class": name}, "policy_kwargs": {...}}``.
    :param source: where it comes from (a file and entry), for the errors.
    """
    config = kwargs_from_json(
        model_config,
        source,
        _POLICY_CONFIG_ARGUMENTS,
        _POLICY_CONFIG_CLASSES,
        "model_config argument",
    )
    # Other entries are RLlib's (its algorithm's model config, merged in): plain JSON, unread.
    if "policy_class" not in config:
        raise ValueError(f"{source}: model_config holds {sorted(config)}: expected a policy_class")
    return config["policy_class"], config.get("policy_kwargs") or {}


def module_spec(env_id: str, agent: str, env_kwargs: dict[str, Any]) -> RLModuleSpec | None:
    """The module of ``agent`` on ``env_id`` (None: RLlib's default PPO module).

    The GPT's architecture comes from the env's reference model (TextGen) or its observation
    (GridWorld tokens), read from a probe env on the driver; the runners and the learner
    build the module from this spec, loading ``init_from`` themselves.
    """
    if agent == "ppo" and env_id.startswith("GridWorld"):
        return None
    if agent == "ppo":
        config = {
            "policy_class": ReferencePriorPolicy,
            "policy_kwargs": kwargs_to_json({"features_extractor_class": TokenExtractor}),
        }
    else:
        # TextGen on the CPU: the driver needs the reference's config and name, not a GPU.
        cpu = {"device": "cpu"} if env_id.startswith("TextGen") else {}
        probe = gym.make(env_id, **{**env_kwargs, **cpu})
        try:
            kwargs = gpt_policy_kwargs(probe)
        finally:
            probe.close()
        config = {"policy_class": GPTActorCriticPolicy, "policy_kwargs": kwargs_to_json(kwargs)}
    return RLModuleSpec(module_class=SB3PolicyModule, model_config=kwargs_to_json(config))


def one_hot_observations(*args: Any, **kwargs: Any) -> FlattenObservations:
    """The env-to-module connector of RLlib's default module: its encoders take vectors, so a
    ``Discrete`` observation (GridWorld's cell index) is one-hot encoded."""
    return FlattenObservations()


MODULE_FORMAT = "textgym-rllib-module-1"
# The module classes a saved module may name: textgym's and RLlib's default PPO module.
_MODULE_CLASSES = class_registry(SB3PolicyModule, DefaultPPOTorchRLModule)
# The names RLlib's default module may give its activations (RLlib maps each to a class);
# textgym gives it no initializers.
_DEFAULT_ACTIVATIONS = ("linear", "relu", "tanh", "elu", "silu", "swish")


def module_archive(module: TorchRLModule, env_space: gym.Space) -> dict[str, bytes]:
    """An RLlib module as files: ``module.json`` (class by name, spaces, model config) and
    ``module.pth`` (weights, read with ``torch.load(weights_only=True)``).

    :param env_space: the env's observation space (the module's may be a connector's).
    """
    cls = type(module)
    config = module.model_config
    if not isinstance(config, dict):  # RLlib's DefaultModelConfig dataclass
        config = dataclasses.asdict(config)
    if isinstance(module, SB3PolicyModule):  # the weights hold the trunk: no model path kept
        config = {**config, "policy_kwargs": without_init_from(config.get("policy_kwargs", {}))}
    meta = {
        "format": MODULE_FORMAT,
        "class": class_name(cls),
        "observation_space": space_to_json(module.observation_space),
        "action_space": space_to_json(module.action_space),
        "env_observation_space": space_to_json(env_space),
        "model_config": config,
    }
    state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    return {"module.json": json.dumps(meta, indent=2).encode(), "module.pth": to_bytes(state)}


def load_module(path: str | os.PathLike, device: str = "cpu") -> RLlibPolicy:
    """A module saved by `RLlibAgent.save`, rebuilt from JSON and weights (no code runs), as
    the `RLlibPolicy` that evaluation plays. Before anything is built, its class resolves only
    through the registry of the module classes textgym saves, and its model config is checked
    (`policy_config`; RLlib's default module: `DefaultModelConfig` fields, plain values)."""
    with open_archive(path) as archive:
        if "module.json" not in archive.namelist():
            raise ValueError(
                f"path={str(path)!r} is not an RLlib module file (no module.json): expected "
                "a model.zip of a run trained with --backend rllib"
            )
        source = f"{path}: module.json"
        meta = read_json(archive, "module.json")
        if not isinstance(meta, dict) or meta.get("format") != MODULE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise ValueError(f"{source} holds format {found!r}: expected {MODULE_FORMAT!r}")
        module_class = saved_class(
            meta.get("class"), TorchRLModule, _MODULE_CLASSES, source, "class"
        )
        model_config = _saved_model_config(module_class, meta.get("model_config"), source)
        try:
            spaces = {
                name: space_from_json(meta[name])
                for name in ("observation_space", "action_space", "env_observation_space")
            }
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: its spaces are not saved spaces ({err!r})") from err
        state = read_weights(archive, "module.pth", device)
    module = module_class(
        observation_space=spaces["observation_space"],
        action_space=spaces["action_space"],
        model_config=model_config,
    )
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"{path}: module.pth does not fit the module module.json describes ({err})"
        ) from err
    module.eval()
    return RLlibPolicy(module.to(device), spaces["env_observation_space"])


def _saved_model_config(module_class: type, config: Any, source: str) -> dict[str, Any]:
    """A saved module's model config, checked for ``module_class`` before it is built."""
    if module_class is SB3PolicyModule:
        policy_config(config, source)
        # Files of earlier versions keep the GPT's init_from: the weights make it unneeded.
        return {**config, "policy_kwargs": without_init_from(config.get("policy_kwargs") or {})}
    fields = {field.name for field in dataclasses.fields(DefaultModelConfig)}
    if not isinstance(config, dict) or set(config) - fields:
        extra = sorted(set(config) - fields) if isinstance(config, dict) else config
        raise ValueError(
            f"{source}: model_config gives {extra!r}: expected fields of RLlib's DefaultModelConfig"
        )
    for key, value in config.items():
        if key.endswith("_activation") and value not in _DEFAULT_ACTIVATIONS:
            raise ValueError(
                f"{source}: model_config {key} is {value!r}: expected one of {_DEFAULT_ACTIVATIONS}"
            )
        if "_initializer" in key and value is not None:
            raise ValueError(
                f"{source}: model_config {key} is {value!r}: expected null (textgym saves "
                "no initializers)"
            )
    return config


class RLlibPolicy(BasePolicy):
    """An RLlib module as an SB3 policy, for textgym's evaluation (`predict`) and as TextGen's
    KL scorer (`score`).

    :param module: the module (it follows the training when it is the learner's).
    :param observation_space: the env's observation space; when the module reads another one
        (RLlib's default module: a flattened vector), observations are flattened as RLlib's
        ``FlattenObservations`` does.
    """

    def __init__(self, module: TorchRLModule, observation_space: gym.Space) -> None:
        super().__init__(observation_space, module.action_space)
        self.module = module
        self.flatten = module.observation_space != observation_space

    def forward(self, obs: Any, deterministic: bool = False) -> torch.Tensor:
        return self._predict(obs, deterministic)

    @torch.no_grad()
    def _predict(self, observation: Any, deterministic: bool = False) -> torch.Tensor:
        if self.flatten:
            observation = _flatten(observation, self.observation_space)
        logits = self.module.forward_inference({Columns.OBS: observation})[
            Columns.ACTION_DIST_INPUTS
        ]
        if deterministic:
            return logits.argmax(-1)
        return torch.distributions.Categorical(logits=logits).sample()

    def score(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.module.score(obs)


def _flatten(obs: torch.Tensor, space: gym.Space) -> torch.Tensor:
    if isinstance(space, gym.spaces.Discrete):
        return torch.nn.functional.one_hot((obs - space.start).long(), int(space.n)).float()
    return obs.float().flatten(1)
