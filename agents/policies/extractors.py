"""A stable-baselines3 features extractor for token observations (TextGen, GridWorld "tokens")."""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

__all__ = ["ReferencePriorPolicy", "TokenExtractor"]

# Candidate log-probs are bounded below by -inf in the observation space; a floor keeps an
# impossible candidate from turning the features into NaN.
_LOGPROB_FLOOR = -30.0


class TokenExtractor(BaseFeaturesExtractor):
    """Features of a right-padded token sequence, for ``MultiInputPolicy``.

    Each real token is embedded with a learned token and position embedding and passed
    through a per-position layer; the features are the masked mean and the masked max of those
    vectors and the vector of the last real token, so padded positions never influence them.
    The max keeps a single telling token (the robot on a GridWorld grid) at full strength,
    where the mean divides it by the length. In TextGen's ``"topk"`` mode the candidate tokens
    are embedded with the same token embedding and concatenated with their reference
    log-probs, so the policy can tell which token each action means. Small and fast on
    purpose: no attention (the GPT policy is the transformer agent).

    :param observation_space: a ``Dict`` with ``input_ids`` ``Box(0, V-1, (L,), int64)`` and
        ``attention_mask`` ``Box(0, 1, (L,), int64)``, optionally ``candidate_ids``
        ``Box(0, V-1, (k,), int64)`` and ``candidate_logprobs`` ``Box(-inf, 0, (k,), float32)``.
    :param features_dim: size of the output features.
    :param embed_dim: size of the token and position embeddings.
    """

    def __init__(
        self, observation_space: spaces.Dict, features_dim: int = 128, embed_dim: int = 64
    ) -> None:
        super().__init__(observation_space, features_dim)
        ids_space = observation_space["input_ids"]
        assert isinstance(ids_space, spaces.Box) and len(ids_space.shape) == 1, ids_space
        vocab_size = int(ids_space.high.max()) + 1
        seq_len = ids_space.shape[0]
        self.has_candidates = "candidate_ids" in observation_space.spaces
        n_candidates = observation_space["candidate_ids"].shape[0] if self.has_candidates else 0

        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.position_embedding = nn.Embedding(seq_len, embed_dim)
        # Without a non-linearity per position, the mean of token + position embeddings would
        # forget which token stands where (e.g. where the robot is on the grid).
        self.position_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(3 * embed_dim + n_candidates * (embed_dim + 1), features_dim), nn.ReLU()
        )
        self.register_buffer("positions", torch.arange(seq_len), persistent=False)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        # SB3 hands Box observations over as float: ids go back to integers.
        ids = observations["input_ids"].long()  # (B, L)
        mask = observations["attention_mask"].float()  # (B, L)
        x = self.token_embedding(ids) + self.position_embedding(self.positions)  # (B, L, E)
        x = self.position_mlp(x) * mask.unsqueeze(-1)  # (B, L, E), zero at padding
        mean = x.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, E)
        # x >= 0 and zero at padding, so padding never wins the max.
        peak = x.amax(dim=1)  # (B, E)
        last_index = (mask * self.positions).argmax(dim=1)  # (B,)  the last real position
        last = x[torch.arange(len(x), device=x.device), last_index]  # (B, E)
        parts = [mean, peak, last]
        if self.has_candidates:
            candidates = self.token_embedding(observations["candidate_ids"].long())  # (B, k, E)
            logprobs = observations["candidate_logprobs"].clamp(min=_LOGPROB_FLOOR)  # (B, k)
            parts.append(torch.cat([candidates, logprobs.unsqueeze(-1)], dim=-1).flatten(1))
        return self.head(torch.cat(parts, dim=1))  # (B, features_dim)


class ReferencePriorPolicy(MultiInputActorCriticPolicy):
    """SB3's ``MultiInputPolicy`` whose action logits are the reference's log-probs of the
    candidates (TextGen ``"topk"`` observations) plus what the network learns.

    The correction starts at exactly zero, so the agent starts *as the reference policy*, KL
    zero, like RLHF's policy initialised from the SFT model (and like the GPT policy). Without
    it a fresh policy is uniform over the candidates and pays a KL penalty of some 75 nats per
    sequence before it has learned anything. Everything else is SB3's: PPO and A2C use it as
    they use ``"MultiInputPolicy"``.
    """

    def _build(self, lr_schedule) -> None:
        if "candidate_logprobs" not in self.observation_space.spaces:
            raise ValueError(
                "ReferencePriorPolicy needs TextGen's action_mode='topk' observations "
                "(candidate_logprobs)"
            )
        super()._build(lr_schedule)
        nn.init.zeros_(self.action_net.weight)
        nn.init.zeros_(self.action_net.bias)

    # The three paths to the action distribution keep the observation's prior for it.
    def forward(self, obs, deterministic: bool = False):
        self._prior = obs["candidate_logprobs"].clamp(min=_LOGPROB_FLOOR)
        return super().forward(obs, deterministic)

    def evaluate_actions(self, obs, actions: torch.Tensor):
        self._prior = obs["candidate_logprobs"].clamp(min=_LOGPROB_FLOOR)
        return super().evaluate_actions(obs, actions)

    def get_distribution(self, obs) -> Distribution:
        self._prior = obs["candidate_logprobs"].clamp(min=_LOGPROB_FLOOR)
        return super().get_distribution(obs)

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Distribution:
        logits = self.action_net(latent_pi) + self._prior
        return self.action_dist.proba_distribution(action_logits=logits)
