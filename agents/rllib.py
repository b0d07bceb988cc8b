"""Ray RLlib backend: textgym's agents on RLlib's PPO, over env runners and machines.

``pip install -e ".[rllib]"``; `textgym_agents.train.train` (``textgym train ... --backend
rllib``) builds on this module. What runs where:

- Each env runner (a Ray actor, on any node of the cluster) makes one native vector env
  (`gymnasium.make_vec` in ``"vector_entry_point"`` mode): for TextGen one `TextGenVectorEnv`
  with one reference model, one batched KV cache and its RM, loaded inside the runner from
  the env arguments (paths or names: nothing large travels from the driver).
- The learner (on the driver unless RLlib is told otherwise) updates the module; RLlib sends
  the weights to the runners after every iteration.

The modules:

- `SB3PolicyModule` holds an SB3 actor-critic policy and calls its forward pass, so RLlib, SB3
  and `SequencePPO` share one implementation of logits and values: `GPTActorCriticPolicy`
  (``gpt``, which starts as the reference model: KL 0 before training) and, for ``ppo`` on
  TextGen's ``"topk"`` mode, `ReferencePriorPolicy` (the reference's candidate log-probs plus
  a learned correction that starts at 0).
- ``ppo`` on GridWorld is RLlib's own default PPO module, its ``Discrete`` cell index one-hot
  encoded by RLlib's ``FlattenObservations`` connector.

The KL step reward is exact: the env computes it, as on every other path, through its policy
scorer contract. `TextGymCallbacks` attaches each runner's own module to the runner's envs as
their scorer; the module remembers the log-probs of the forward pass that chose the actions
(`ForwardMemory`), so the env's ``log pi`` is that of the distribution that acted, at no
second forward pass, and the rewards RLlib trains on are the env's. The adaptive KL
coefficient is one controller on the driver: the runners' envs pay the coefficient they are
sent and do not step it; after every iteration the driver applies one update over the
episodes every runner finished in it and sends the result to all of them
(`synchronise_kl_coef`), so within an iteration every runner pays the same coefficient.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import json
import os
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.env_to_module import FlattenObservations
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED,
)
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen_core import core_of
from textgym.kl import FixedKLController
from textgym_agents.extractors import ReferencePriorPolicy, TokenExtractor
from textgym_agents.gpt_policy import (
    ForwardMemory,
    GPTActorCriticPolicy,
    gpt_policy_kwargs,
    without_init_from,
)
from textgym_agents.hyperparams import RLLIB_AGENTS, RLLIB_ENV_KWARGS, RLLIB_HYPERPARAMS
from textgym_agents.saving import (
    POLICY_CLASS_ARGUMENTS,
    SAVED_CLASSES,
    ClassArgument,
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
    write_archive,
)

__all__ = [
    "RLLIB_AGENTS",
    "RLLIB_HYPERPARAMS",
    "RLlibAgent",
    "RLlibPolicy",
    "SB3PolicyModule",
    "TextGymCallbacks",
    "load_module",
    "module_archive",
    "rllib_config",
]


# ---------------------------------------------------------------------------- the modules
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
            self.observation_space, self.action_space, _no_schedule, **policy_kwargs
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


def _no_schedule(_: float) -> float:
    return 0.0


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


# ---------------------------------------------------------------------------- callbacks
class RunnerScorer:
    """TextGen's policy scorer on an env runner: the runner's current module (read at every
    call: RLlib replaces its weights, not the module)."""

    def __init__(self, env_runner: Any) -> None:
        self.env_runner = env_runner

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        module = self.env_runner.module
        if not callable(getattr(module, "score", None)):
            raise TypeError(
                f"{type(module).__name__} cannot score TextGen's actions: expected a module "
                "with score(obs) -> log-probs, such as SB3PolicyModule"
            )
        return module.score(obs)

    def __repr__(self) -> str:
        return f"RunnerScorer({type(self.env_runner.module).__name__})"


class TextGymCallbacks(RLlibCallback):
    """textgym's side of an RLlib run.

    - On each env runner, its module becomes its TextGen envs' KL scorer (`RunnerScorer`).
    - Each finished episode (summed over the chunks RLlib samples it in) is kept on its
      runner as a row of ``episodes.csv`` (`take_episodes` collects them), and its summed KL
      (the ``episode_kl`` of its last step's info) goes into the runner's KL report.
    - Adaptive beta is one controller, on the driver (`synchronise_kl_coef`): each runner's
      envs pay the coefficient the driver sent last and never step it, and after each
      iteration the driver updates it once over the KL reports of every runner.
    """

    def on_environment_created(self, *, env_runner, env, **kwargs) -> None:
        core = core_of(env)
        if core is not None:
            core.attach_policy(RunnerScorer(env_runner))
            # The env's own controller (kl_coef, kl_target, kl_horizon) is the driver's to
            # step; the env pays a fixed coefficient, and a remade env the one sent last.
            env_runner.textgym_kl_controller = core.kl_controller
            value = getattr(env_runner, "textgym_kl_coef", core.kl_controller.value)
            core.kl_controller = FixedKLController(value)
        env_runner.textgym_episodes = []  # finished episodes, for `take_episodes`
        env_runner.textgym_partial = {}  # episode id -> (return, length) of earlier chunks
        env_runner.textgym_kl_report = [0.0, 0]  # finished episodes' summed KL and count

    def on_sample_end(self, *, env_runner=None, samples=(), **kwargs) -> None:
        # RLlib hands episodes over in chunks (one per sample call): an episode's return and
        # length are the sums over its chunks.
        if env_runner is None or not hasattr(env_runner, "textgym_partial"):
            return
        partial = env_runner.textgym_partial
        for chunk in samples:
            before_return, before_length = partial.pop(chunk.id_, (0.0, 0))
            episode_return = before_return + float(chunk.get_return())
            length = before_length + len(chunk)
            if not chunk.is_done:
                partial[chunk.id_] = (episode_return, length)
                continue
            info = chunk.get_infos(-1) or {}
            kl = _float_or_none(info.get("episode_kl"))
            if kl is not None:
                env_runner.textgym_kl_report[0] += kl
                env_runner.textgym_kl_report[1] += 1
            env_runner.textgym_episodes.append(
                {
                    "return": episode_return,
                    "length": length,
                    "rm_score": _float_or_none(info.get("rm_score")),
                    "kl": kl,
                    "kl_coef": _float_or_none(info.get("kl_coef")),
                }
            )

    def on_algorithm_init(self, *, algorithm: Algorithm, **kwargs) -> None:
        synchronise_kl_coef(algorithm)  # before any episode: the driver takes the controller

    def on_train_result(self, *, algorithm: Algorithm, result: dict, **kwargs) -> None:
        synchronise_kl_coef(algorithm)

    def on_env_runners_recreated(self, *, algorithm: Algorithm, **kwargs) -> None:
        # A recreated runner's envs start at the starting coefficient: send the current one.
        controller = getattr(algorithm, "textgym_kl_controller", None)
        if controller is not None:
            set_kl_coef(algorithm, controller.value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _take_kl_report(runner: Any) -> tuple[float, int]:
    kl_sum, count = getattr(runner, "textgym_kl_report", (0.0, 0))
    runner.textgym_kl_report = [0.0, 0]
    return kl_sum, count


def synchronise_kl_coef(algorithm: Algorithm) -> float | None:
    """One step of the driver's KL controller over the episodes every runner finished since
    the last call, sent to every runner; returns the coefficient (None without TextGen envs).

    With a ``kl_target`` this is Ziegler's update over the union of the runners' episodes:
    ``KL`` = their summed KL over their count ``n``, ``beta *= 1 + clip(KL / target - 1, -0.2,
    0.2) * n / horizon``. The first call takes the controller the runners' envs were built
    with as the driver's (`TextGymCallbacks`).
    """
    group = algorithm.env_runner_group
    controller = getattr(algorithm, "textgym_kl_controller", None)
    if controller is None:
        controllers = group.foreach_env_runner(
            lambda runner: getattr(runner, "textgym_kl_controller", None)
        )
        controllers = [c for c in controllers if c is not None]
        if not controllers:
            return None
        controller = algorithm.textgym_kl_controller = controllers[0]
    reports = group.foreach_env_runner(_take_kl_report)
    count = sum(n for _, n in reports)
    if count:
        controller.update(sum(kl for kl, _ in reports) / count, count)
    set_kl_coef(algorithm, controller.value)
    return controller.value


def set_kl_coef(algorithm: Algorithm, value: float) -> None:
    """Set the KL coefficient (adaptive or fixed) to ``value``: the driver's controller and
    the coefficient every runner's envs pay."""

    def assign(runner: Any) -> None:
        core = core_of(runner.env) if getattr(runner, "env", None) is not None else None
        if core is not None:
            core.kl_controller.value = value
            runner.textgym_kl_coef = value

    algorithm.env_runner_group.foreach_env_runner(assign)
    controller = getattr(algorithm, "textgym_kl_controller", None)
    if controller is not None:
        controller.value = value


def take_episodes(algorithm: Algorithm) -> list[dict[str, Any]]:
    """The episodes the runners finished since the last call (`TextGymCallbacks`)."""

    def take(runner: Any) -> list[dict[str, Any]]:
        rows = getattr(runner, "textgym_episodes", [])
        runner.textgym_episodes = []
        return rows

    return [row for rows in algorithm.env_runner_group.foreach_env_runner(take) for row in rows]


# ---------------------------------------------------------------------------- the config
def check_working_directory() -> None:
    """Refuse a working directory from which the env runners may import another textgym.

    Ray puts the driver's working directory first on its workers' import path, so a folder
    there named ``textgym`` or ``textgym_agents`` (a clone of the repository, say) can replace
    the installed package in every env runner: with an editable install even a folder without
    ``__init__.py`` does, and every runner then fails to find the envs. The working directory
    may hold the installed package itself (the repository root of an editable install).

    :raises ValueError: naming the folder, when the working directory holds another one.
    """
    cwd = os.getcwd()
    for name in ("textgym", "textgym_agents"):
        spec = importlib.machinery.PathFinder.find_spec(name, [cwd])
        if spec is None:
            continue
        # None when this process imported the folder too (`python -m` or `-c` run from there).
        installed = getattr(sys.modules[name], "__file__", None)
        if spec.origin and installed and os.path.samefile(spec.origin, installed):
            continue
        found = (spec.submodule_search_locations or [spec.origin])[0]  # a package or a module
        raise ValueError(
            f"the working directory {cwd!r} holds {found!r}, which Ray's env runners, with "
            f"the working directory first on their import path, may import as {name!r} "
            "instead of the installed package: expected a working directory without it; "
            "run from another directory"
        )


def rllib_env_kwargs(agent: str, env_id: str, env_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    return {**RLLIB_ENV_KWARGS.get(env_id, {}).get(agent, {}), **(env_kwargs or {})}


def rllib_hyperparams(agent: str, env_id: str) -> dict[str, Any]:
    if agent not in RLLIB_AGENTS:
        raise ValueError(f"agent={agent!r} has no RLlib backend: expected one of {RLLIB_AGENTS}")
    if env_id not in RLLIB_HYPERPARAMS:
        raise ValueError(
            f"env_id={env_id!r} has no RLlib entry: expected one of {tuple(RLLIB_HYPERPARAMS)}"
        )
    return RLLIB_HYPERPARAMS[env_id][agent]


def rllib_config(
    env_id: str,
    agent: str,
    *,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    num_env_runners: int = 2,
    n_envs: int | None = None,
    num_gpus_per_env_runner: float = 0,
    **overrides: Any,
) -> PPOConfig:
    """RLlib's ``PPOConfig`` for ``agent`` on ``env_id``: textgym's module, env arguments,
    callbacks and hyperparameters (`RLLIB_HYPERPARAMS`, then ``overrides``).

    :param env_kwargs: env arguments on top of the agent's (`RLLIB_ENV_KWARGS`); they reach
        each runner's env as RLlib's ``env_config``.
    :param num_env_runners: Ray actors that step envs (0: the driver steps them).
    :param n_envs: rows over all runners (default: the table's), split evenly among them.
    :param num_gpus_per_env_runner: GPUs each runner reserves; with any, its env and module
        run on its GPU (``device="cuda"``).
    """
    check_working_directory()
    hyper = dict(rllib_hyperparams(agent, env_id))
    env_kwargs = rllib_env_kwargs(agent, env_id, env_kwargs)
    if num_gpus_per_env_runner and "device" not in env_kwargs and env_id.startswith("TextGen"):
        env_kwargs["device"] = "cuda"
    rows = hyper.pop("n_envs")
    rows = rows if n_envs is None else n_envs
    hyper.pop("n_timesteps")
    hyper.update(overrides)
    model_config = hyper.pop("model_config", None)
    per_runner = max(1, rows // max(1, num_env_runners))
    spec = module_spec(env_id, agent, env_kwargs)
    config = (
        PPOConfig()
        .environment(f"textgym:{env_id}", env_config=env_kwargs)
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=per_runner,
            gym_env_vectorize_mode="vector_entry_point",  # one native vector env per runner
            num_gpus_per_env_runner=num_gpus_per_env_runner,
            env_to_module_connector=one_hot_observations if spec is None else None,
        )
        .training(**hyper)
        .callbacks(TextGymCallbacks)
        .debugging(seed=seed)
    )
    if spec is not None:
        config = config.rl_module(rl_module_spec=spec)
    elif model_config is not None:  # RLlib's default module, configured
        config = config.rl_module(model_config=DefaultModelConfig(**model_config))
    return config


# ---------------------------------------------------------------------------- saving
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
        "class": f"{cls.__module__}.{cls.__qualname__}",
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


# ---------------------------------------------------------------------------- the agent
@dataclasses.dataclass
class IterationStats:
    """What one RLlib iteration did: `RLlibAgent.learn` hands it to its callback."""

    timesteps: int  # env steps sampled so far, over the run
    episodes: list[dict[str, Any]]  # the episodes finished (`TextGymCallbacks`)
    learner: dict[str, float]  # the learner's figures (policy loss, ...)
    env_steps: int  # env steps sampled in this iteration
    seconds: float
    update_seconds: float  # of which the learner's update (RLlib's learner_update_timer)


class RLlibAgent:
    """An RLlib PPO algorithm behind the interface `textgym_agents.train` drives: ``learn``
    in iterations, ``num_timesteps``, ``save``/``load_state`` (module weights and optimizer
    state, no pickles), ``policy`` and ``predict`` (what evaluation plays), ``kl_coef``.

    The learner runs in this process (RLlib's local learner), so ``policy`` is the module
    being trained.
    """

    def __init__(self, config: PPOConfig) -> None:
        self.algo = config.build_algo()
        spaces = self.algo.env_runner_group.foreach_env_runner(
            lambda runner: None if runner.env is None else runner.env.single_observation_space
        )
        self.env_observation_space = next(space for space in spaces if space is not None)
        # The local learner (RLlib's default, num_learners=0) holds the module it trains.
        self.module = self.algo.learner_group._learner.module[DEFAULT_MODULE_ID]
        self.policy = RLlibPolicy(self.module, self.env_observation_space)
        self.num_timesteps = 0

    def predict(self, observation: Any, deterministic: bool = False) -> tuple[np.ndarray, None]:
        return self.policy.predict(observation, deterministic=deterministic)

    @property
    def kl_coef(self) -> float | None:
        """The KL coefficient every runner pays (None without TextGen envs)."""
        controller = getattr(self.algo, "textgym_kl_controller", None)
        return None if controller is None else controller.value

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        set_kl_coef(self.algo, value)

    def learn(self, total_timesteps: int, callback=None) -> RLlibAgent:
        """Train for at least ``total_timesteps`` more env steps, in RLlib iterations;
        ``callback(agent, IterationStats)`` after each."""
        target = self.num_timesteps + total_timesteps
        while self.num_timesteps < target:
            started = time.perf_counter()
            result = self.algo.train()
            env_steps = int(result[ENV_RUNNER_RESULTS].get(NUM_ENV_STEPS_SAMPLED, 0))
            self.num_timesteps += env_steps
            learner = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
            stats = IterationStats(
                timesteps=self.num_timesteps,
                episodes=take_episodes(self.algo),
                learner={k: float(v) for k, v in learner.items() if isinstance(v, int | float)},
                env_steps=env_steps,
                seconds=time.perf_counter() - started,
                update_seconds=float(result.get("timers", {}).get("learner_update_timer", 0.0)),
            )
            if callback is not None:
                callback(self, stats)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """The module (`module_archive`), the optimizer state (``optimizer.pth``,
        weights-only) and the step count, as one zip, atomically."""
        optimizers = self.algo.learner_group._learner._get_optimizer_state()
        entries = module_archive(self.module, self.env_observation_space)
        entries["optimizer.pth"] = to_bytes(_to_tensors(optimizers))
        entries["agent.json"] = json.dumps({"num_timesteps": self.num_timesteps}).encode()
        write_archive(path, entries)

    def load_state(self, path: str | os.PathLike) -> None:
        """Weights, optimizer state and step count of a `save` into this agent (built with
        the same configuration); the runners get the weights."""
        with open_archive(path) as archive:
            weights = read_weights(archive, "module.pth")
            optimizers = read_weights(archive, "optimizer.pth")
            counters = read_json(archive, "agent.json")
        learner = self.algo.learner_group._learner
        self.module.load_state_dict(weights)
        learner._set_optimizer_state(optimizers)
        self.algo.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.algo.learner_group, inference_only=True
        )
        self.num_timesteps = int(counters["num_timesteps"])

    def close(self) -> None:
        self.algo.stop()


def _to_tensors(value: Any) -> Any:
    """RLlib's state (numpy arrays and scalars in dicts and lists) in the types
    ``torch.load(weights_only=True)`` reads."""
    if isinstance(value, dict):
        return {key: _to_tensors(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_tensors(item) for item in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value
