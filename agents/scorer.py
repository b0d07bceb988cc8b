"""Any stable-baselines3 agent as TextGen's policy scorer, attached by a callback.

TextGen's KL step reward needs log pi(a_t|s_t) of the policy that acts. `SB3PolicyScorer`
computes it from an SB3 model's current policy, with the same distribution the model samples
from (action masks for MaskablePPO, epsilon-greedy for DQN); `AttachPolicyCallback` attaches
it to every TextGen env of the training `VecEnv` when training starts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv

from textgym_agents.sb3_env import TextGenSB3VecEnv


class SB3PolicyScorer:
    """``scorer(input_ids, attention_mask, **extra) -> log_probs [B, A]`` for an SB3 model.

    :param model: the SB3 algorithm whose policy acts.
    :param action_masks: for MaskablePPO, a function returning the ``[B, A]`` masks of the
        rows being scored (the acting distribution is the masked one).
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        action_masks: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self.model = model
        self.action_masks = action_masks

    @torch.no_grad()
    def __call__(self, input_ids, attention_mask, **extra) -> np.ndarray:
        policy = self.model.policy
        obs = {"input_ids": np.asarray(input_ids), "attention_mask": np.asarray(attention_mask)}
        obs.update({key: np.asarray(value) for key, value in extra.items()})
        obs_t, _ = policy.obs_to_tensor(obs)
        if hasattr(policy, "q_net"):  # DQN acts epsilon-greedily on its Q-values
            q_values = policy.q_net(obs_t)  # (B, A)
            # Before learning_starts DQN's learn() acts uniformly at random.
            model = self.model
            warming_up = model.num_timesteps < getattr(model, "learning_starts", 0)
            eps = 1.0 if warming_up else float(model.exploration_rate)
            probs = torch.full_like(q_values, eps / q_values.shape[-1])
            probs[torch.arange(len(q_values)), q_values.argmax(-1)] += 1.0 - eps
            return probs.log().cpu().numpy()
        if self.action_masks is not None:
            dist = policy.get_distribution(obs_t, action_masks=self.action_masks())
        else:
            dist = policy.get_distribution(obs_t)
        return torch.log_softmax(dist.distribution.logits, dim=-1).cpu().numpy()


def attach_sb3_policy(model: BaseAlgorithm | BasePolicy, venv: VecEnv | None = None) -> None:
    """Attach ``model``'s policy as the scorer of every TextGen env in ``venv`` (default: the
    model's own env). Envs without ``attach_policy`` (GridWorld) are left alone.

    ``model`` may also be a policy that scores itself (`GPTActorCriticPolicy`), e.g. a loaded
    one; ``venv`` is then required."""
    if isinstance(model, BasePolicy):
        own = getattr(model, "score", None)
        if own is None or venv is None:
            raise ValueError(
                f"model={type(model).__name__}: a bare policy can be attached only if it has "
                "a score() method (GPTActorCriticPolicy) and venv is given"
            )
    else:
        venv = venv if venv is not None else model.get_env()
        # A policy that scores itself (the GPT policy) answers from the forward that acted.
        own = getattr(model.policy, "score", None)
    masked = "Maskable" in type(model).__name__
    if isinstance(venv.unwrapped, TextGenSB3VecEnv):  # one batched core: every row at once
        masks = (lambda: np.stack(venv.env_method("action_masks"))) if masked else None
        venv.env_method("attach_policy", own or SB3PolicyScorer(model, masks), indices=[0])
        return
    if not venv.has_attr("attach_policy"):
        return
    for i in range(venv.num_envs):
        masks = _row_masks(venv, i) if masked else None
        venv.env_method("attach_policy", own or SB3PolicyScorer(model, masks), indices=[i])


def _row_masks(venv: VecEnv, index: int) -> Callable[[], np.ndarray]:
    return lambda: np.stack(venv.env_method("action_masks", indices=[index]))


class AttachPolicyCallback(BaseCallback):
    """At training start, make the model's policy the KL scorer of its TextGen envs."""

    def _on_training_start(self) -> None:
        attach_sb3_policy(self.model, self.training_env)

    def _on_step(self) -> bool:
        return True
