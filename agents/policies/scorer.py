"""Any stable-baselines3 agent as TextGen's policy scorer, attached by a callback.

TextGen's KL step reward needs log pi(a_t|s_t) of the policy that acts. `sb3_scorer` makes the
env's scorer (``scorer(obs) -> log_probs [B, A]``) of an SB3 model, one adapter per algorithm
family, chosen by type: the distribution DQN really samples from (epsilon-greedy on its
Q-values), MaskablePPO's masked distribution, any other actor-critic policy's distribution,
and a policy that scores itself from the forward pass that acted (`GPTActorCriticPolicy`).
`AttachPolicyCallback` attaches it to every TextGen env of the training `VecEnv` when
training starts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv

from textgym.envs.textgen_core import PolicyScorer
from textgym_agents.backends.sb3.vec_env import TextGenSB3VecEnv


class ActorCriticScorer:
    """The scorer of an SB3 policy with a categorical action distribution (PPO, A2C, ...).

    :param model: the SB3 algorithm whose policy acts (read at every call, so it follows
        the training).
    """

    def __init__(self, model: BaseAlgorithm) -> None:
        self.model = model

    @torch.no_grad()
    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        policy = self.model.policy
        dist = policy.get_distribution(policy.obs_to_tensor(obs)[0], **self._extra())
        return torch.log_softmax(dist.distribution.logits, dim=-1).cpu().numpy()

    def _extra(self) -> dict:
        return {}


class MaskableScorer(ActorCriticScorer):
    """MaskablePPO's scorer: the distribution masked as in acting.

    :param action_masks: returns the ``[B, A]`` masks of the rows being scored.
    """

    def __init__(self, model: MaskablePPO, action_masks: Callable[[], np.ndarray]) -> None:
        super().__init__(model)
        self.action_masks = action_masks

    def _extra(self) -> dict:
        return {"action_masks": self.action_masks()}


class DQNScorer:
    """DQN's scorer: epsilon-greedy on its Q-values, uniform before ``learning_starts`` (as
    DQN's ``learn`` acts)."""

    def __init__(self, model: DQN) -> None:
        self.model = model

    @torch.no_grad()
    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        model = self.model
        q_values = model.policy.q_net(model.policy.obs_to_tensor(obs)[0])  # (B, A)
        warming_up = model.num_timesteps < model.learning_starts
        eps = 1.0 if warming_up else float(model.exploration_rate)
        probs = torch.full_like(q_values, eps / q_values.shape[-1])
        probs[torch.arange(len(q_values)), q_values.argmax(-1)] += 1.0 - eps
        return probs.log().cpu().numpy()


def sb3_scorer(
    model: BaseAlgorithm | BasePolicy, action_masks: Callable[[], np.ndarray] | None = None
) -> PolicyScorer:
    """The env scorer of ``model``, by its type: a `GPTActorCriticPolicy` (or an algorithm
    using one) scores itself; DQN, MaskablePPO (``action_masks`` required) and other
    actor-critic algorithms get their adapter."""
    policy = model if isinstance(model, BasePolicy) else model.policy
    if callable(getattr(policy, "score", None)):
        return policy.score
    if isinstance(model, BasePolicy):
        raise TypeError(
            f"model={type(model).__name__}: a bare policy scores only if it has a score method "
            "(GPTActorCriticPolicy, textgym_agents.backends.rllib.RLlibPolicy); pass the algorithm "
            "(PPO, DQN, ...) instead"
        )
    if isinstance(model, DQN):
        return DQNScorer(model)
    if isinstance(model, MaskablePPO):
        if action_masks is None:
            raise ValueError("a MaskablePPO scorer needs action_masks (the rows' masks)")
        return MaskableScorer(model, action_masks)
    return ActorCriticScorer(model)


def attach_sb3_policy(model: BaseAlgorithm | BasePolicy, venv: VecEnv | None = None) -> None:
    """Attach ``model``'s scorer (`sb3_scorer`) to every TextGen env in ``venv`` (default: the
    model's own env). Envs without ``attach_policy`` (GridWorld) are left alone.

    ``model`` may also be a policy that scores itself (`GPTActorCriticPolicy`), e.g. a loaded
    one; ``venv`` is then required."""
    if venv is None:
        if isinstance(model, BasePolicy):
            raise ValueError(f"model={type(model).__name__}: a bare policy needs venv")
        venv = model.get_env()
    masked = isinstance(model, MaskablePPO)
    if isinstance(venv.unwrapped, TextGenSB3VecEnv):  # one batched core: every row at once
        masks = (lambda: np.stack(venv.env_method("action_masks"))) if masked else None
        venv.env_method("attach_policy", sb3_scorer(model, masks), indices=[0])
        return
    if not venv.has_attr("attach_policy"):
        return
    for i in range(venv.num_envs):
        masks = _row_masks(venv, i) if masked else None
        venv.env_method("attach_policy", sb3_scorer(model, masks), indices=[i])


def _row_masks(venv: VecEnv, index: int) -> Callable[[], np.ndarray]:
    return lambda: np.stack(venv.env_method("action_masks", indices=[index]))


class AttachPolicyCallback(BaseCallback):
    """At training start, make the model's policy the KL scorer of its TextGen envs."""

    def _on_training_start(self) -> None:
        attach_sb3_policy(self.model, self.training_env)

    def _on_step(self) -> bool:
        return True
