"""A GPT actor-critic policy for stable-baselines3: a causal transformer trunk, two heads.

- TextGen ``"vocab"`` mode: the action logits are the LM head's logits at the last real
  position, and the trunk starts as a copy of the env's reference model, so the policy *is*
  the reference at step 0 and the KL starts at exactly zero.
- TextGen ``"topk"`` mode: the logits of action i are the LM head's logits of candidate i
  (the same start at zero KL, renormalised over the candidates like the env's reference).
- Any other discrete action space (GridWorld ``obs_mode="tokens"``): a linear head over the
  last hidden state, on a small fresh GPT.

A value head sits on the same last hidden state. Dropout is off in every mode: a dropout
mismatch between acting and the update would corrupt PPO's probability ratio.

The policy is its env's KL scorer at no extra cost: `GPTActorCriticPolicy.score` returns the
log-probs of the forward pass that chose the actions (`attach_sb3_policy` attaches it).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config

from textgym.envs.textgen_core import TextGenCore
from textgym.lm import quiet_loading

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
    # Every TextGen class (env, vector env, SB3 VecEnv: ``unwrapped`` is the innermost one)
    # keeps its state in a TextGenCore.
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    return core.reference_model if isinstance(core, TextGenCore) else None


class GPTActorCriticPolicy(ActorCriticPolicy):
    """SB3 actor-critic policy with a causal-LM trunk (any ``AutoModelForCausalLM``).

    :param observation_space: a ``Dict`` with ``input_ids`` and ``attention_mask`` (and, in
        TextGen ``"topk"`` mode, ``candidate_ids``).
    :param action_space: ``Discrete(A)``.
    :param lr_schedule: SB3's learning-rate schedule.
    :param lm_config: the trunk's HF config as a dict (saved with the model, so loading
        rebuilds the same architecture).
    :param init_from: a model name or path whose weights initialise the trunk (skipped when
        it no longer exists, e.g. when loading a saved agent elsewhere: the saved weights
        replace them anyway).
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
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (ids, log-probs) of forward
        self.scorer_misses = 0  # scorer calls that needed a forward of their own
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    # ------------------------------------------------------------------ building
    def _build(self, lr_schedule) -> None:
        self.trunk = _make_trunk(self.lm_config, self.init_from)
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

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        self.trunk.eval()  # dropout stays off in the update too (its probabilities are 0 anyway)

    # ------------------------------------------------------------------ the forward pass
    def _logits_and_values(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = obs["input_ids"].long()  # (B, L); SB3 hands Box observations over as floats
        mask = obs["attention_mask"].long()
        width = int(mask.sum(-1).max())  # right-padded: nothing real lies beyond the longest row
        ids, mask = ids[:, :width], mask[:, :width]
        hidden = self.trunk.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(ids)), mask.sum(-1) - 1]  # (B, H)
        if self.head == "linear":
            logits = self.action_head(last)
        else:
            logits = self.trunk.get_output_embeddings()(last)  # (B, V)
            if self.head == "candidates":
                logits = logits.gather(1, obs["candidate_ids"].long())  # (B, k)
        return logits.float(), self.value_head(last).float().squeeze(-1)

    def _distribution(self, obs) -> tuple[CategoricalDistribution, torch.Tensor]:
        logits, values = self._logits_and_values(obs)
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
        self._last = (
            obs["input_ids"].long().cpu().numpy(),
            torch.log_softmax(dist.distribution.logits, -1).detach().cpu().numpy(),
        )

    def evaluate_actions(self, obs, actions: torch.Tensor):
        dist, values = self._distribution(obs)
        return values.unsqueeze(-1), dist.log_prob(actions), dist.entropy()

    def get_distribution(self, obs) -> CategoricalDistribution:
        return self._distribution(obs)[0]

    def predict_values(self, obs) -> torch.Tensor:
        return self._logits_and_values(obs)[1].unsqueeze(-1)

    # ------------------------------------------------------------------ the KL scorer
    def score(self, input_ids, attention_mask, **extra) -> np.ndarray:
        """TextGen's policy scorer: ``[B, L]`` observations -> ``[B, A]`` log-probs.

        Rows seen by the last forward pass are answered from it; others (rare: only when
        something other than this policy acted) get a forward pass of their own.
        """
        ids = np.asarray(input_ids)
        if self._last is not None:
            seen_ids, seen_logprobs = self._last
            if seen_ids.shape == ids.shape and np.array_equal(seen_ids, ids):
                return seen_logprobs
            if seen_ids.shape[1] == ids.shape[1]:
                match = (seen_ids[None, :, :] == ids[:, None, :]).all(-1)  # (b, B)
                if match.any(1).all():
                    return seen_logprobs[match.argmax(1)]
        self.scorer_misses += 1
        obs = {"input_ids": ids, "attention_mask": np.asarray(attention_mask)}
        obs.update({key: np.asarray(value) for key, value in extra.items()})
        obs_t, _ = self.obs_to_tensor(obs)
        with torch.no_grad():
            logits, _ = self._logits_and_values(obs_t)
        return torch.log_softmax(logits, -1).cpu().numpy()


def _make_trunk(lm_config: dict[str, Any], init_from: str | None) -> nn.Module:
    """The causal LM: weights from ``init_from`` where it exists, else fresh; dropout 0."""
    config_dict = {
        key: (0.0 if "drop" in key and isinstance(value, float) else value)
        for key, value in lm_config.items()
    }
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    if init_from:
        try:
            with quiet_loading():
                return AutoModelForCausalLM.from_pretrained(
                    init_from,
                    config=config,
                    use_safetensors=True,
                    local_files_only=not os.path.isdir(init_from),  # a hub model: if cached
                )
        except OSError:
            pass  # gone: a loaded agent's saved weights replace these anyway
    return AutoModelForCausalLM.from_config(config)
