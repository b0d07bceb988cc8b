"""A GPT actor-critic policy for stable-baselines3: a causal transformer trunk, two heads.

- TextGen ``"vocab"`` mode: the action logits are the model's next-token logits at the last
  real position, and the trunk starts as a copy of the env's reference model, so the policy *is*
  the reference at step 0 and the KL starts at exactly zero.
- TextGen ``"topk"`` mode: the logits of action i are the next-token logits of candidate i
  (the same start at zero KL, renormalised over the candidates like the env's reference).
- Any other discrete action space (GridWorld ``obs_mode="tokens"``): a linear head over the
  last hidden state, on a small fresh GPT.

A value head sits on the same last hidden state. Dropout is off in every mode: a dropout
mismatch between acting and the update would corrupt PPO's probability ratio.

The logits are the trunk's own forward's, so the logit transforms of its model family apply
(Granite's ``logits_scaling``, Gemma-2/3's ``final_logit_softcapping``, Cohere's
``logit_scale``) as in the env's reference model: every forward pass over whole observations
(SB3's acting and update, the scorer, `textgym_agents.trainers.sequence_ppo`'s update) goes through
`GPTActorCriticPolicy.action_logits_and_values` and `causal_lm_forward`; SequencePPO's
KV-cached acting runs the same forward through `textgym.kv_cache.IncrementalLM` and the same head,
`GPTActorCriticPolicy.action_logits`.

The policy is its env's KL scorer at no extra cost: `GPTActorCriticPolicy.score` returns the
log-probs of the forward pass that chose the actions (`attach_sb3_policy` attaches it).

The policy class is one concept kept whole (over 400 lines): built, saved and loaded, its
forward pass and its scorer; the forward passes over whole observations it shares with
`SequencePPO` and RLlib are in `textgym_agents.policies.gpt_forward`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import get_device
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config

from textgym.envs.textgen_core import core_of
from textgym.lm import quiet_loading
from textgym_agents.policies.gpt_forward import (
    ForwardMemory,
    causal_lm_forward,
    prefix_groups,
    shared_prompt_forward,
)
from textgym_agents.saving import (
    check_keywords,
    former_modules,
    kwargs_from_json,
    kwargs_to_json,
    open_archive,
    read_json,
    read_weights,
    space_from_json,
    space_to_json,
    to_bytes,
    warn_pickle,
    write_archive,
)

HEADS = ("lm", "candidates", "linear")


def gpt_policy_kwargs(env: gym.Env | Any, **overrides: Any) -> dict[str, Any]:
    """``policy_kwargs`` for `GPTActorCriticPolicy` on ``env`` (a gym env or SB3 VecEnv).

    TextGen: the trunk is the env's reference model (architecture and initial weights), with
    the LM head (``"vocab"`` mode) or the candidate head (``"topk"``). Other token envs: a
    small fresh GPT-2 (2 layers, 64 wide) sized to the observation, with a linear head.
    """
    reference = _reference_model(env)
    space = env.observation_space
    if reference is not None:
        head = "candidates" if "candidate_ids" in space.spaces else "lm"
        kwargs = {
            "lm_config": reference.config.to_dict(),
            "init_from": reference.name_or_path,
            "head": head,
        }
    else:
        vocab = int(space["input_ids"].high.max()) + 1
        length = space["input_ids"].shape[0]
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=length,
            n_embd=64,
            n_layer=2,
            n_head=2,
            bos_token_id=None,  # GPT-2's 50256 lies outside a small symbol vocabulary
            eos_token_id=None,
        )
        kwargs = {"lm_config": config.to_dict(), "init_from": None, "head": "linear"}
    kwargs.update(overrides)
    return kwargs


def _reference_model(env: Any) -> nn.Module | None:
    """The TextGen reference model behind ``env``, if it is a TextGen env."""
    core = core_of(env)
    return core.reference_model if core is not None else None


class GPTActorCriticPolicy(ActorCriticPolicy):
    """SB3 actor-critic policy with a causal-LM trunk (any ``AutoModelForCausalLM``).

    :param observation_space: a ``Dict`` with ``input_ids`` and ``attention_mask`` (and, in
        TextGen ``"topk"`` mode, ``candidate_ids``).
    :param action_space: ``Discrete(A)``.
    :param lr_schedule: SB3's learning-rate schedule.
    :param lm_config: the trunk's HF config as a dict (saved with the model, so loading
        rebuilds the same architecture).
    :param init_from: a model name or path whose weights initialise the trunk. A new policy
        refuses to act if it cannot be loaded. It is not saved (`without_init_from`): the saved
        weights hold the whole trunk, so a saved policy loads on any machine, with no model
        there (`load` builds the trunk from ``lm_config`` and gives it the saved weights).
    :param head: ``"lm"``, ``"candidates"`` or ``"linear"`` (see the module docstring).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        action_space: gym.spaces.Discrete,
        lr_schedule,
        lm_config: dict[str, Any],
        init_from: str | None = None,
        head: str = "linear",
        **kwargs: Any,
    ) -> None:
        if head not in HEADS:
            raise ValueError(f"head={head!r} is not known: expected one of {HEADS}")
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"action_space={action_space}: expected a Discrete action space")
        self.lm_config, self.init_from, self.head = dict(lm_config), init_from, head
        self.memory = ForwardMemory()  # what the last forward pass saw and gave, for `score`
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    # ------------------------------------------------------------------ building
    def _build(self, lr_schedule) -> None:
        self.trunk, self._init_failure = _make_trunk(self.lm_config, self.init_from)
        hidden = self.trunk.get_input_embeddings().weight.shape[1]
        n_actions = int(self.action_space.n)
        if self.head == "lm" and self.trunk.get_output_embeddings().weight.shape[0] != n_actions:
            raise ValueError(
                f"head='lm' needs one action per token: the trunk has "
                f"{self.trunk.get_output_embeddings().weight.shape[0]} tokens, the action "
                f"space {n_actions}"
            )
        self.action_head = nn.Linear(hidden, n_actions) if self.head == "linear" else None
        self.value_head = nn.Linear(hidden, 1)
        self.action_dist = CategoricalDistribution(n_actions)
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(lm_config=self.lm_config, init_from=self.init_from, head=self.head)
        return data

    def archive(self) -> dict[str, bytes]:
        """The files of a saved policy: ``policy.json`` (the constructor's arguments and
        spaces) and ``policy.pth`` (the weights, read with ``torch.load(weights_only=True)``)."""
        kwargs = without_init_from(self._get_constructor_parameters())
        spaces = {name: space_to_json(kwargs.pop(name)) for name in SPACES}
        kwargs.pop("lr_schedule")  # the trainer's business, not the policy's
        meta = {"format": POLICY_FORMAT, "spaces": spaces, "kwargs": kwargs_to_json(kwargs)}
        return {
            "policy.json": json.dumps(meta, indent=2).encode(),
            "policy.pth": to_bytes(self.state_dict()),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Save the policy without pickles (`archive`), atomically."""
        write_archive(path, self.archive())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: torch.device | str = "auto",
        allow_pickle: bool = False,
    ) -> GPTActorCriticPolicy:
        """A policy saved with `save`, rebuilt from JSON and weights alone (no code runs).

        Every argument in ``policy.json`` is checked before the policy is built: its classes
        resolve only through `textgym_agents.saving.SAVED_CLASSES`, each with the base its
        argument needs, and every class (the policy's own included) is called only with
        keywords it takes (`textgym_agents.saving.kwargs_from_json`). The trunk is built from
        the saved ``lm_config`` and takes the saved weights: no model is read from the machine
        (a file's ``init_from``, which files of earlier versions hold, is ignored).

        :param path: the file `save` (or `SequencePPO.save`) wrote.
        :param device: where the policy goes.
        :param allow_pickle: also load a policy saved in SB3's pickle format (by SB3's
            ``BasePolicy.save``, or textgym 0.1's first releases): unpickling runs whatever
            code the file holds, so only for files you trust.
        """
        device = get_device(device)
        with open_archive(path) as archive:
            if "policy.json" not in archive.namelist():
                if not allow_pickle:
                    raise ValueError(
                        f"path={str(path)!r} is not a textgym policy file (no policy.json): "
                        "expected a file written by GPTActorCriticPolicy.save; a policy pickled "
                        "by SB3 loads only with allow_pickle=True (--allow-pickle), which runs "
                        "any code the file holds: only for a file you trust"
                    )
                with former_modules():
                    warn_pickle(path)
                    return super().load(str(path), device=device)
            spaces, kwargs = cls._saved_arguments(read_json(archive, "policy.json"), path)
            state = read_weights(archive, "policy.pth", device)
        policy = cls(**spaces, lr_schedule=no_schedule, **kwargs)
        try:
            policy.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(
                f"{path}: policy.pth does not fit the policy policy.json describes ({err})"
            ) from err
        return policy.to(device)

    @classmethod
    def _saved_arguments(
        cls, meta: Any, path: str | os.PathLike
    ) -> tuple[dict[str, gym.Space], dict[str, Any]]:
        """The spaces and the other constructor arguments of a ``policy.json``, checked."""
        source = f"{path}: policy.json"
        if not isinstance(meta, dict) or meta.get("format") != POLICY_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise ValueError(f"{source} holds format {found!r}: expected {POLICY_FORMAT!r}")
        try:
            spaces = {name: space_from_json(meta["spaces"][name]) for name in SPACES}
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{source}: spaces is not a saved observation and action space ({err!r})"
            ) from err
        kwargs = without_init_from(kwargs_from_json(meta.get("kwargs"), source))
        check_keywords(cls, kwargs, (*SPACES, "lr_schedule"), source, "kwargs")
        lm_config = kwargs["lm_config"]
        if not (isinstance(lm_config, dict) and isinstance(lm_config.get("model_type"), str)):
            raise ValueError(
                f"{source}: kwargs lm_config is not a Hugging Face config: expected a JSON "
                "object with a model_type"
            )
        return spaces, kwargs

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        self.trunk.eval()  # dropout stays off in the update too (its probabilities are 0 anyway)

    def load_state_dict(
        self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False
    ):
        # SB3 loads a saved policy or agent by building it from its saved arguments, then
        # calling this: that is how a loaded policy differs from a new one.
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if not any(key.startswith("trunk.") for key in result.missing_keys):
            self._init_failure = None  # saved weights replaced the trunk built from the config
        return result

    def check_initialised(self) -> None:
        """Raise if the trunk holds random weights because ``init_from`` could not be loaded
        (and no saved weights replaced them)."""
        if self._init_failure is not None:
            raise ValueError(self._init_failure)

    # ------------------------------------------------------------------ the forward pass
    def action_logits_and_values(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        positions: torch.Tensor,
        candidate_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits ``(B, T, A)`` and values ``(B, T)`` of the states at ``positions``.

        :param input_ids: ``(B, W)`` right-padded token ids.
        :param attention_mask: ``(B, W)``.
        :param positions: ``(B, T)`` the last token of each state read.
        :param candidate_ids: ``(B, T, k)`` the candidates of each state (head
            ``"candidates"`` only).
        """
        self.check_initialised()
        token_logits, hidden = causal_lm_forward(self.trunk, input_ids, attention_mask, positions)
        return self._heads(token_logits, hidden, candidate_ids)

    def shared_prompt_logits_and_values(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        pick: torch.Tensor,
        tokens: torch.Tensor,
        candidate_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`action_logits_and_values` of the states of B generated sequences of which many
        share a prompt: each distinct prompt goes through the trunk once (see
        `shared_prompt_forward`); equal to the plain forward in value and in gradient.

        :param prompt_ids: ``(U, P)`` the distinct prompts, left-padded.
        :param prompt_mask: ``(U, P)``.
        :param pick: ``(B,)`` the prompt of each sequence.
        :param tokens: ``(B, T)`` the generated ids, right-padded; the states read are the
            T before each of them.
        :param candidate_ids: ``(B, T, k)`` (head ``"candidates"`` only).
        """
        self.check_initialised()
        token_logits, hidden = shared_prompt_forward(
            self.trunk, prompt_ids, prompt_mask, pick, tokens
        )
        return self._heads(token_logits, hidden, candidate_ids)

    def _heads(
        self, token_logits: torch.Tensor, hidden: torch.Tensor, candidate_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The action logits and the values of the trunk's outputs at the states read."""
        values = self.value_head(hidden).float().squeeze(-1)
        return self.action_logits(token_logits, hidden, candidate_ids), values

    def action_logits(
        self,
        token_logits: torch.Tensor,
        hidden: torch.Tensor | None = None,
        candidate_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The head: the trunk's next-token logits ``(..., V)`` (or, for the linear head, its
        last hidden states ``(..., H)``) -> action logits ``(..., A)``, float32."""
        if self.head == "linear":
            return self.action_head(hidden).float()
        if self.head == "candidates":
            return token_logits.gather(-1, candidate_ids.long()).float()
        return token_logits.float()

    def logits_and_values(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits ``(B, A)`` and values ``(B,)`` of a batch of observations.

        Rows that are prefixes of a longer row of the batch (the states of one episode, as
        RLlib's and SB3's per-token batches hold them) are read from that row's forward pass
        (`prefix_groups`): causal attention makes the logits at a position independent of
        what follows it, so this is the same computation, done once per sequence.
        """
        ids = obs["input_ids"].long()  # (B, L); SB3 hands Box observations over as floats
        mask = obs["attention_mask"].long()
        lengths = mask.sum(-1)
        leaders, slots = prefix_groups(ids, lengths)
        width = int(lengths.max())  # right-padded: nothing real lies beyond the longest row
        positions = (lengths - 1)[slots]  # (G, T) the rows' last positions, in their leaders
        candidates = obs["candidate_ids"][slots] if self.head == "candidates" else None
        logits, values = self.action_logits_and_values(
            ids[leaders, :width], mask[leaders, :width], positions, candidates
        )
        found = slots >= 0
        rows = slots[found]
        out_logits = logits.new_empty((len(ids), logits.shape[-1]))
        out_values = values.new_empty(len(ids))
        out_logits[rows] = logits[found]
        out_values[rows] = values[found]
        return out_logits, out_values

    def _distribution(self, obs) -> tuple[CategoricalDistribution, torch.Tensor]:
        logits, values = self.logits_and_values(obs)
        return self.action_dist.proba_distribution(action_logits=logits), values

    def forward(self, obs, deterministic: bool = False):
        dist, values = self._distribution(obs)
        actions = dist.get_actions(deterministic=deterministic)
        self._remember(obs, dist)
        return actions, values.unsqueeze(-1), dist.log_prob(actions)

    def _predict(self, observation, deterministic: bool = False) -> torch.Tensor:
        dist, _ = self._distribution(observation)
        self._remember(observation, dist)
        return dist.get_actions(deterministic=deterministic)

    def _remember(self, obs, dist: CategoricalDistribution) -> None:
        """Keep what acted, so the env's scorer call costs no second forward pass."""
        self.memory.remember(obs["input_ids"], dist.distribution.logits)

    def evaluate_actions(self, obs, actions: torch.Tensor):
        dist, values = self._distribution(obs)
        return values.unsqueeze(-1), dist.log_prob(actions), dist.entropy()

    def get_distribution(self, obs) -> CategoricalDistribution:
        return self._distribution(obs)[0]

    def predict_values(self, obs) -> torch.Tensor:
        return self.logits_and_values(obs)[1].unsqueeze(-1)

    # ------------------------------------------------------------------ the KL scorer
    def score(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """TextGen's policy scorer (`textgym.envs.textgen_core.PolicyScorer`): the batched
        observation -> ``[B, A]`` log-probs.

        Rows seen by the last forward pass are answered from it; others (rare: only when
        something other than this policy acted) get a forward pass of their own.
        """
        logprobs = self.memory.recall(obs)
        if logprobs is not None:
            return logprobs
        obs_t, _ = self.obs_to_tensor(obs)
        with torch.no_grad():
            logits, _ = self.logits_and_values(obs_t)
        return torch.log_softmax(logits, -1).cpu().numpy()

    @property
    def scorer_misses(self) -> int:
        """Scorer calls that needed a forward pass of their own."""
        return self.memory.misses


POLICY_FORMAT = "textgym-gpt-policy-1"
SPACES = ("observation_space", "action_space")


def without_init_from(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A GPT policy's arguments as saved and loaded: without ``init_from``, a model of the
    machine that trained it, which loading never needs (the saved weights hold the trunk).

    :param kwargs: `GPTActorCriticPolicy`'s constructor arguments.
    """
    return {key: value for key, value in kwargs.items() if key != "init_from"}


def no_schedule(_: float) -> float:
    """A loaded policy's learning-rate schedule: none is saved (it is the trainer's)."""
    return 0.0


def _make_trunk(lm_config: dict[str, Any], init_from: str | None) -> tuple[nn.Module, str | None]:
    """The causal LM (dropout 0), with the weights of ``init_from`` or fresh ones, and why
    ``init_from`` could not be loaded (None when it was, or when none was asked for)."""
    config_dict = {
        key: (0.0 if "drop" in key and isinstance(value, float) else value)
        for key, value in lm_config.items()
    }
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    if not init_from:
        # A saved lm_config is read from a file: its auto_map never runs code.
        return AutoModelForCausalLM.from_config(config, trust_remote_code=False), None
    try:
        with quiet_loading():
            trunk = AutoModelForCausalLM.from_pretrained(
                init_from,
                config=config,
                use_safetensors=True,
                trust_remote_code=False,
                local_files_only=not os.path.isdir(init_from),  # a hub model: if cached
            )
        return trunk, None
    except (OSError, ValueError) as err:
        # A loaded agent's saved weights replace these (`load_state_dict`); a new policy
        # refuses to act on them (`check_initialised`).
        failure = (
            f"init_from={init_from!r} could not be loaded ({err}): the policy would start from "
            "random weights; expected a local model directory with model.safetensors, or a "
            "Hugging Face model name in the local cache"
        )
        return AutoModelForCausalLM.from_config(config, trust_remote_code=False), failure
