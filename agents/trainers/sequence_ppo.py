"""Sequence-level PPO for the GPT policy on TextGen (the zoo's ``gpt`` agent).

Under stable-baselines3 every token is an independent observation: acting recomputes the
whole prefix at every step, and the update runs one forward pass per *token*, O(T^2) per
episode. This trainer keeps the same policy (`GPTActorCriticPolicy`), the same env and the
same rewards, and changes only how the work is done:

- **Acting** runs the policy's trunk with its own KV cache (`textgym.kv_cache.IncrementalLM`), one
  incremental forward per step for all rows, next to the env's batched reference forward.
  The policy's log-probs of that forward are the env's KL scorer, so the env's step rewards
  are exactly the rewards of the acting policy.
- **The update** gets all of an episode's log-probs and values from one forward pass over
  the finished sequence (prompt + generated tokens), then runs clipped PPO over whole
  episodes, with GAE (``gamma=1``: every token shapes the finished text equally) or RLOO's
  leave-one-out baseline (``advantage="rloo"``, see `rloo_advantages`), normalised as
  ``normalize_advantage`` says (`advantages` returns what the loss uses).

**Groups** (``group_size=k``, the env's argument): rows ``g*k`` to ``g*k + k - 1`` sample k
texts of one prompt and end together (see `TextGenVectorEnv`). A row whose text has ended
waits *idle* for the rest of its group: it records nothing and its policy cache stays as it
is; the RM score its group's last step pays it is added to the reward of its last token, so an
episode's rewards still sum to its return. Groups finish on one step, so `collect` returns
whole groups, the samples RLOO compares.

Both run the trunk's own forward (logit transforms such as Granite's scaling or Gemma-2's
softcapping included) and the policy's own head (`GPTActorCriticPolicy.action_logits`), so the
first update's probability ratio is 1 up to float rounding, for every model family.

Everything goes through the public API of `TextGenVectorEnv` (``reset``, ``step``,
``attach_policy``, observations and infos); the env keeps running across updates (an episode
in flight when an update happens is finished by the new policy, its earlier tokens keep the
behaviour log-probs they were sampled with).

The module is one class, kept whole (over 400 lines): acting, the update and saving share the
trainer's state (the policy and its KV cache, the env, the optimizer) and read best together.
The advantages' formulas are in `textgym_agents.trainers.advantages`, the episodes in
`textgym_agents.trainers.episodes`.

```python
from textgym_agents.trainers.sequence_ppo import SequencePPO

agent = SequencePPO(env_kwargs={"max_new_tokens": 24}, seed=0)
agent.learn(total_timesteps=50_000)
agent.save("gpt_policy.zip")

# RLOO: 4 samples per prompt, the mean return of the other 3 as the baseline, no value head;
# its advantages are used as they are (normalize_advantage="none", the default with "rloo").
rloo = SequencePPO(seed=0, group_size=4, advantage="rloo", vf_coef=0.0)
```
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from textgym._checks import check_int
from textgym.envs.textgen_vector import TextGenVectorEnv
from textgym.kv_cache import IncrementalLM
from textgym.reference import sample_tokens
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy, gpt_policy_kwargs
from textgym_agents.saving import read_weights, to_bytes, write_archive
from textgym_agents.trainers.advantages import (
    ADVANTAGES,
    NORMALIZATIONS,
    STD_EPS,
    gae_advantages,
    group_return_std,
    rloo_advantages,
    whiten,
)
from textgym_agents.trainers.episodes import Episode, UpdateStats, pad

__all__ = ["SequencePPO"]

# What a trainer saved before a setting existed was trained with (`SequencePPO.load_state`).
_SETTINGS_BEFORE = {"group_size": 1, "advantage": "gae", "normalize_advantage": "token"}


class SequencePPO:
    """PPO over whole sequences for `GPTActorCriticPolicy` on ``TextGen-v0``.

    :param env_kwargs: arguments of the TextGen env (``kl_coef``, ``action_mode``, ...).
    :param seed: seeds torch (the policy's sampling) and the env's prompt draws.
    :param num_envs: rows of the batched env, acting together.
    :param episodes_per_update: finished episodes collected before each update.
    :param n_epochs: passes over the collected episodes per update.
    :param minibatch_episodes: episodes per gradient step.
    :param learning_rate: Adam learning rate (constant, or a function of the remaining
        progress 1 -> 0, as in SB3).
    :param clip_range: PPO's ratio clip.
    :param vf_coef: weight of the value loss (the value head shares the trunk).
    :param ent_coef: weight of the entropy bonus (0: the KL penalty already regularises).
    :param gae_lambda: GAE's lambda (``gamma`` is 1).
    :param max_grad_norm: gradient clipping.
    :param target_kl: stop an update's epochs early once the approximate KL between the old
        and new policy exceeds this (None: never).
    :param group_size: the env's ``group_size``: rows sampling one prompt together, a divisor
        of ``num_envs`` (1: no groups). Updates use whole groups.
    :param advantage: ``"gae"`` (GAE on the value head's estimates) or ``"rloo"`` (the same
        advantage on every token of an episode: its return minus the mean return of the
        other episodes of its group; needs ``group_size >= 2``). With ``"rloo"`` the value
        head only learns the returns, with weight ``vf_coef``; ``vf_coef=0`` leaves it out
        (no value loss, no forward pass for old values).
    :param normalize_advantage: how the advantages are scaled before the policy loss uses
        them (`advantages` returns the result). ``"token"``: minus their mean over every
        generated token of the update's episodes, over their standard deviation (once per
        update, not per minibatch). ``"none"``: as computed. ``"batch"`` (``"rloo"`` only):
        each episode's advantage minus the mean over the update's episodes, each counted
        once, over their standard deviation (TRL's ``RLOOTrainer(normalize_advantages=True)``).
        ``"group"`` (``"rloo"`` only): each episode's advantage over the standard deviation
        of its group's returns (GRPO's scale; RLOO's ``A = k/(k-1) (R - mean R)`` makes it
        GRPO's advantage times ``k/(k-1)``). Standard deviations are Bessel-corrected, plus
        1e-8. Default: ``"token"`` with ``"gae"``, ``"none"`` with ``"rloo"`` (the plain
        leave-one-out estimator).
    :param policy: a policy to continue training (default: a new one from the env's
        reference, so the KL starts at zero).

    The policy runs where the env's models are: the env argument ``device`` (``"cpu"``,
    ``"cuda"``, ...; TextGen's default is CUDA where available).
    """

    def __init__(
        self,
        env_kwargs: dict[str, Any] | None = None,
        *,
        seed: int = 0,
        num_envs: int = 64,
        episodes_per_update: int = 64,
        n_epochs: int = 4,
        minibatch_episodes: int = 16,
        learning_rate: float | Callable[[float], float] = 3e-5,
        clip_range: float = 0.2,
        vf_coef: float = 0.1,
        ent_coef: float = 0.0,
        gae_lambda: float = 0.95,
        max_grad_norm: float = 1.0,
        target_kl: float | None = None,
        group_size: int = 1,
        advantage: str = "gae",
        normalize_advantage: str | None = None,
        policy: GPTActorCriticPolicy | None = None,
    ) -> None:
        for name, value in (
            ("num_envs", num_envs),
            ("episodes_per_update", episodes_per_update),
            ("n_epochs", n_epochs),
            ("minibatch_episodes", minibatch_episodes),
            ("group_size", group_size),
        ):
            check_int(name, value, 1)
        if num_envs % group_size:
            raise ValueError(
                f"group_size={group_size} does not divide num_envs={num_envs}: expected a "
                "divisor (a group is group_size rows that sample one prompt)"
            )
        if advantage not in ADVANTAGES:
            raise ValueError(f"advantage={advantage!r} is not known: expected one of {ADVANTAGES}")
        if advantage == "rloo" and group_size < 2:
            raise ValueError(
                f"advantage='rloo' with group_size={group_size}: RLOO's baseline is the mean "
                "return of the other samples of a prompt, so expected group_size >= 2"
            )
        if normalize_advantage is None:
            normalize_advantage = "none" if advantage == "rloo" else "token"
        if normalize_advantage not in NORMALIZATIONS:
            raise ValueError(
                f"normalize_advantage={normalize_advantage!r} is not known: expected one of "
                f"{NORMALIZATIONS} or None (the default of the advantage)"
            )
        if advantage != "rloo" and normalize_advantage in ("batch", "group"):
            raise ValueError(
                f"normalize_advantage={normalize_advantage!r} with advantage={advantage!r}: "
                "it scales one advantage per episode, which only 'rloo' gives; expected "
                "'token' or 'none'"
            )
        if "group_size" in (env_kwargs or {}):
            raise ValueError(
                f"env_kwargs={env_kwargs!r} sets group_size: pass group_size to SequencePPO, "
                "which passes it to the env (its updates depend on it too)"
            )
        if (env_kwargs or {}).get("constraint") is not None:
            raise ValueError(
                "env_kwargs sets a constraint: SequencePPO samples from the policy's whole "
                "distribution and does not apply action_masks(), so it would draw tokens the "
                "constraint refuses; expected no constraint (MaskablePPO honours the masks)"
            )
        if not clip_range > 0:
            raise ValueError(f"clip_range={clip_range!r} must be > 0")
        if not 0 <= gae_lambda <= 1:
            raise ValueError(f"gae_lambda={gae_lambda!r} must be in [0, 1]")
        self.env_kwargs = dict(env_kwargs or {})
        self.seed = seed
        self.num_envs = num_envs
        self.episodes_per_update = episodes_per_update
        self.n_epochs = n_epochs
        self.minibatch_episodes = minibatch_episodes
        self.learning_rate = learning_rate
        self.clip_range = clip_range
        self.vf_coef = vf_coef
        self.ent_coef = ent_coef
        self.gae_lambda = gae_lambda
        self.max_grad_norm = max_grad_norm
        self.target_kl = target_kl
        self.group_size = group_size
        self.advantage = advantage
        self.normalize_advantage = normalize_advantage

        torch.manual_seed(seed)
        self.env = gym.make_vec(
            "TextGen-v0",
            num_envs=num_envs,
            vectorization_mode="vector_entry_point",
            group_size=group_size,
            **self.env_kwargs,
        )
        if not isinstance(self.env.unwrapped, TextGenVectorEnv):
            raise TypeError(f"expected TextGen's batched env, got {type(self.env).__name__}")
        self.topk = "candidate_ids" in self.env.single_observation_space.spaces
        self.eos_token_id = int(self.env.unwrapped.tokenizer.eos_token_id)
        self.pad_token_id = int(self.env.unwrapped.core.pad_token_id)
        if policy is None:
            policy = GPTActorCriticPolicy(
                self.env.single_observation_space,
                self.env.single_action_space,
                lambda _: self._lr(1.0),
                **gpt_policy_kwargs(self.env),
            )
        policy.check_initialised()  # acting reads the trunk directly, through its KV cache
        self.policy = policy.to(self.env.unwrapped.reference_model.device)
        self.policy.set_training_mode(False)
        self.device = self.policy.device
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self._lr(1.0), eps=1e-5)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

        self.num_timesteps = 0
        self._total = 1
        self._obs: dict[str, np.ndarray] | None = None
        self._restart = np.zeros(num_envs, dtype=bool)  # rows whose next step is a reset
        self._idle = np.zeros(num_envs, dtype=bool)  # rows waiting for their group to end
        self._rows: list[dict[str, list]] = []
        self._step_logprobs: np.ndarray | None = None  # (N, A) of the acting forward
        self.env.unwrapped.attach_policy(self._score)

    # ------------------------------------------------------------------ helpers
    def _lr(self, progress_remaining: float) -> float:
        rate = self.learning_rate
        return float(rate(progress_remaining) if callable(rate) else rate)

    def _acting(self) -> np.ndarray:
        """``(N,)`` bool: the rows that generate a token on the next step (not restarting, not
        idle), the rows the env asks the scorer about."""
        return ~self._restart & ~self._idle

    def _score(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The env's KL scorer: the log-probs of the forward pass that chose the actions."""
        acting = np.flatnonzero(self._acting())
        if self._step_logprobs is None or len(obs["input_ids"]) != len(acting):
            raise RuntimeError(
                "SequencePPO's scorer was called outside its own rollout: the env is driven "
                "by SequencePPO.learn only"
            )
        return self._step_logprobs[acting]

    def _to(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def _new_row(self, obs: dict[str, np.ndarray], row: int) -> dict[str, list]:
        length = int(obs["attention_mask"][row].sum())
        return {
            "prompt": obs["input_ids"][row, :length].copy(),
            "tokens": [],
            "actions": [],
            "logprobs": [],
            "rewards": [],
            "candidates": [],
        }

    def _prefixes(self) -> list[np.ndarray]:
        """Each row's tokens so far, for the policy's cache; a row that restarts on the next
        step or waits idle reads no logits from it, so it gets a one-token stand-in."""
        obs = self._obs
        return [
            np.array([self.pad_token_id])
            if self._restart[row] or self._idle[row]
            else obs["input_ids"][row, : int(obs["attention_mask"][row].sum())]
            for row in range(self.num_envs)
        ]

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def collect(self) -> list[Episode]:
        """Step the env with the current policy until ``episodes_per_update`` episodes finish.

        A group's episodes finish on one step, so the episodes come in whole groups (and may
        be a few more than ``episodes_per_update``); rows still generating carry on at the
        next call.
        """
        if self._obs is None:
            # A resumed trainer (`load_state`) does not replay the prompts it started with.
            self._obs, _ = self.env.reset(seed=self.seed + self.num_timesteps)
            self._rows = [self._new_row(self._obs, row) for row in range(self.num_envs)]
            self._restart[:] = False
            self._idle[:] = False
        # The weights changed since the last rollout: rebuild the policy's cache from the
        # current prefixes (one forward over at most prompt + generated tokens per row).
        lm = IncrementalLM(self.policy.trunk, self.num_envs, self.pad_token_id)
        logits = lm.start(range(self.num_envs), self._prefixes()).clone()
        finished: list[Episode] = []
        while len(finished) < self.episodes_per_update:
            obs = self._obs
            candidates = (
                torch.as_tensor(obs["candidate_ids"], device=self.device) if self.topk else None
            )
            action_logits = self.policy.action_logits(logits, candidate_ids=candidates)
            logprobs = torch.log_softmax(action_logits, dim=-1)
            actions = sample_tokens(logprobs, generator=self.generator)
            logprobs_np = logprobs.cpu().numpy()
            actions_np = actions.cpu().numpy()
            live, acting = ~self._restart, self._acting()
            actions_np[self._idle] = 0  # ignored, as the env's action mask for idle rows says
            self._step_logprobs = logprobs_np
            next_obs, rewards, terminated, _, infos = self.env.step(actions_np)
            self._step_logprobs = None

            tokens = (
                obs["candidate_ids"][np.arange(self.num_envs), actions_np]
                if self.topk
                else actions_np
            )
            for row in np.flatnonzero(live):
                record = self._rows[row]
                if acting[row]:
                    record["tokens"].append(int(tokens[row]))
                    record["actions"].append(int(actions_np[row]))
                    record["logprobs"].append(float(logprobs_np[row, actions_np[row]]))
                    record["rewards"].append(float(rewards[row]))
                    if self.topk:
                        record["candidates"].append(obs["candidate_ids"][row].copy())
                else:  # idle: paid 0, or its RM score alone on the step its group ends
                    record["rewards"][-1] += float(rewards[row])
                if terminated[row]:
                    finished.append(self._episode(record, row, infos))
            self.num_timesteps += int(acting.sum())
            if self.group_size > 1:
                self._idle = infos["idle"].copy()

            # Advance the policy's cache: rows that go on are fed their token (idle rows, like
            # ended ones, append nothing); rows that restart on this step get their new prompt
            # spliced in.
            going = acting & ~terminated & ~self._idle
            feed = np.where(going, tokens, self.pad_token_id)
            logits = lm.advance(torch.as_tensor(feed, device=self.device), going).clone()
            restarted = np.flatnonzero(self._restart)
            if restarted.size:
                prompts = [
                    next_obs["input_ids"][row, : int(next_obs["attention_mask"][row].sum())]
                    for row in restarted
                ]
                logits[torch.as_tensor(restarted, device=self.device)] = lm.start(
                    restarted.tolist(), prompts
                )
                for row in restarted:
                    self._rows[row] = self._new_row(next_obs, row)
            self._restart = terminated.copy()
            self._obs = next_obs
        return finished

    def _episode(self, record: dict[str, list], row: int, infos: dict) -> Episode:
        return Episode(
            prompt=record["prompt"],
            tokens=np.asarray(record["tokens"], dtype=np.int64),
            actions=np.asarray(record["actions"], dtype=np.int64),
            logprobs=np.asarray(record["logprobs"], dtype=np.float32),
            rewards=np.asarray(record["rewards"], dtype=np.float32),
            candidates=np.stack(record["candidates"]) if self.topk else None,
            rm_score=float(infos["rm_score"][row]),
            kl=float(infos["episode_kl"][row]),
            kl_coef=float(infos["kl_coef"][row]),
            text=str(infos["text"][row]),
            prompt_text=str(infos["prompt"][row]),
            group=int(infos["group"][row]) if self.group_size > 1 else -1,
        )

    # ------------------------------------------------------------------ the update
    def _forward(self, episodes: list[Episode]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass per sequence: ``(logits [B, T, A], values [B, T], valid [B, T])``
        at every generated position (the state before each action). With groups, episodes
        that share a prompt share its encoding: each distinct prompt goes through the trunk
        once (`shared_prompt_forward`, the same values and gradients)."""
        batch, steps = len(episodes), max(len(e.tokens) for e in episodes)
        valid = pad([np.ones(len(e.tokens), dtype=bool) for e in episodes])
        # The candidates of each state ("topk" mode; in "vocab" mode the head needs none).
        cands = None
        if self.topk:
            cands = np.zeros((batch, steps, self.env.single_action_space.n), np.int64)
            for i, e in enumerate(episodes):
                cands[i, : len(e.tokens)] = e.candidates
            cands = self._to(cands)
        distinct: dict[tuple[int, ...], int] = {}
        pick = [distinct.setdefault(tuple(e.prompt.tolist()), len(distinct)) for e in episodes]
        if self.group_size > 1 and len(distinct) < batch:
            width = max(map(len, distinct))
            prompts = np.full((len(distinct), width), self.pad_token_id, dtype=np.int64)
            prompt_mask = np.zeros((len(distinct), width), dtype=np.int64)
            for u, prompt in enumerate(distinct):
                prompts[u, width - len(prompt) :] = prompt
                prompt_mask[u, width - len(prompt) :] = 1
            tokens = pad([e.tokens for e in episodes], self.pad_token_id)
            logits, values = self.policy.shared_prompt_logits_and_values(
                self._to(prompts), self._to(prompt_mask), self._to(np.array(pick)),
                self._to(tokens), cands,
            )  # fmt: skip
            return logits, values, self._to(valid)
        width = max(len(e.prompt) + len(e.tokens) for e in episodes)
        ids = np.full((batch, width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        where = np.zeros((batch, steps), dtype=np.int64)  # position of the state before step t
        for i, e in enumerate(episodes):
            p, t = len(e.prompt), len(e.tokens)
            ids[i, :p], ids[i, p : p + t] = e.prompt, e.tokens
            mask[i, : p + t] = 1
            where[i, :t] = np.arange(p - 1, p - 1 + t)
        logits, values = self.policy.action_logits_and_values(
            self._to(ids), self._to(mask), self._to(where), cands
        )
        return logits, values, self._to(valid)

    def _advantages(self, episodes: list[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantages, normalised as the loss uses them, and value targets ``(B, T)`` at every
        generated position (padding: anything).

        ``"gae"``: GAE (gamma = 1) per episode on the values of one no-grad forward pass; the
        episode's end is terminal. ``"rloo"``: each episode's `rloo_advantages` entry on all its
        tokens, and the return from each token on as the value target (no forward pass).
        """
        valid = self._to(pad([np.ones(len(e.tokens), dtype=bool) for e in episodes]))
        if self.advantage == "rloo":
            # (B,) float64 on the CPU; the device gets float32, as from GAE
            per_episode = torch.as_tensor(rloo_advantages(episodes, self.group_size))
            if self.normalize_advantage == "batch":
                per_episode = whiten(per_episode)
            elif self.normalize_advantage == "group":
                std = torch.as_tensor(group_return_std(episodes, self.group_size))
                per_episode = per_episode / (std + STD_EPS)
            adv = torch.where(valid, self._to(per_episode.float())[:, None], 0.0)
            returns = self._to(pad([np.cumsum(e.rewards[::-1])[::-1] for e in episodes]))
        else:
            with torch.no_grad():
                _, values, _ = self._forward(episodes)
            adv = self._to(gae_advantages(episodes, values.cpu().numpy(), self.gae_lambda))
            returns = adv + values
        if self.normalize_advantage == "token":
            adv = whiten(adv, valid)
        return adv, returns

    def advantages(self, episodes: Sequence[Episode]) -> list[np.ndarray]:
        """The advantage of each generated token, exactly as the update's policy loss uses it
        (``advantage`` and ``normalize_advantage`` applied; with ``"gae"``, on the current value
        head).

        :param episodes: finished episodes (from `collect`); with ``"rloo"``, whole groups.
        :return: one ``(T,)`` float32 array per episode, in the order given.
        """
        episodes = list(episodes)
        if not episodes:
            raise ValueError("episodes=[]: expected at least one finished Episode")
        adv = self._advantages(episodes)[0].cpu().numpy()
        return [adv[i, : len(e.tokens)].copy() for i, e in enumerate(episodes)]

    def update(self, episodes: list[Episode]) -> dict[str, float]:
        """Clipped PPO over whole episodes; returns the mean losses and diagnostics."""
        progress = 1.0 - min(1.0, self.num_timesteps / self._total)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(progress)
        advantages, returns = self._advantages(episodes)
        actions = self._to(pad([e.actions for e in episodes]))
        old_logprobs = self._to(pad([e.logprobs for e in episodes]))

        stats = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [], "clip": []}
        self.policy.set_training_mode(True)
        rng = np.random.default_rng(self.seed + self.num_timesteps)
        stop = False
        for _ in range(self.n_epochs):
            order = self._shuffled(episodes, rng)
            for start in range(0, len(order), self.minibatch_episodes):
                idx = order[start : start + self.minibatch_episodes]
                logits, values, mb_valid = self._forward([episodes[i] for i in idx])
                width = logits.shape[1]
                idx_t = torch.as_tensor(idx, device=self.device)
                mb_actions = actions[idx_t, :width]
                all_logprobs = torch.log_softmax(logits, dim=-1)
                logprobs = all_logprobs.gather(-1, mb_actions[..., None]).squeeze(-1)
                log_ratio = logprobs - old_logprobs[idx_t, :width]
                ratio = log_ratio.exp()
                adv = advantages[idx_t, :width]
                clipped = ratio.clamp(1 - self.clip_range, 1 + self.clip_range)
                pg = -torch.min(ratio * adv, clipped * adv)
                value_loss = (values - returns[idx_t, :width]) ** 2
                entropy = -(all_logprobs.exp() * all_logprobs).sum(-1)
                loss = (
                    _masked_mean(pg, mb_valid)
                    + self.vf_coef * _masked_mean(value_loss, mb_valid)
                    - self.ent_coef * _masked_mean(entropy, mb_valid)
                )
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    approx_kl = _masked_mean((ratio - 1) - log_ratio, mb_valid).item()
                    stats["policy_loss"].append(_masked_mean(pg, mb_valid).item())
                    stats["value_loss"].append(_masked_mean(value_loss, mb_valid).item())
                    stats["entropy"].append(_masked_mean(entropy, mb_valid).item())
                    stats["approx_kl"].append(approx_kl)
                    clip = ((ratio - 1).abs() > self.clip_range).float()
                    stats["clip"].append(_masked_mean(clip, mb_valid).item())
                if self.target_kl is not None and approx_kl > 1.5 * self.target_kl:
                    stop = True
                    break
            if stop:
                break
        self.policy.set_training_mode(False)
        return {key: float(np.mean(values)) for key, values in stats.items()}

    def _shuffled(self, episodes: list[Episode], rng: np.random.Generator) -> np.ndarray:
        """The episodes' indices in a random order; with groups, whole groups in a random
        order, so a minibatch of a multiple of ``group_size`` episodes holds whole groups and
        encodes each prompt once (see `_forward`)."""
        if self.group_size == 1 or self.minibatch_episodes % self.group_size:
            return rng.permutation(len(episodes))
        groups: dict[int, list[int]] = {}
        for i, e in enumerate(episodes):
            groups.setdefault(e.group, []).append(i)
        members = list(groups.values())
        return np.array([i for g in rng.permutation(len(members)) for i in members[g]])

    # ------------------------------------------------------------------ the loop
    def learn(
        self,
        total_timesteps: int,
        callback: Callable[[SequencePPO, UpdateStats], bool | None] | None = None,
    ) -> SequencePPO:
        """Collect and update until ``total_timesteps`` tokens have been generated.

        :param callback: called after every update with the trainer and its `UpdateStats`;
            returning ``False`` stops training.
        """
        check_int("total_timesteps", total_timesteps, 1)
        self._total = self.num_timesteps + total_timesteps
        while self.num_timesteps < self._total:
            start = time.perf_counter()
            episodes = self.collect()
            collected = time.perf_counter()
            losses = self.update(episodes)
            stats = UpdateStats(
                timesteps=self.num_timesteps,
                episodes=episodes,
                collect_seconds=collected - start,
                update_seconds=time.perf_counter() - collected,
                policy_loss=losses["policy_loss"],
                value_loss=losses["value_loss"],
                entropy=losses["entropy"],
                approx_kl=losses["approx_kl"],
                clip_fraction=losses["clip"],
            )
            if callback is not None and callback(self, stats) is False:
                break
        return self

    def predict(self, observation, deterministic: bool = False):
        """SB3's ``predict`` of the policy (for `textgym_agents.training.evaluation.evaluate`,
        Gym loops)."""
        return self.policy.predict(observation, deterministic=deterministic)

    def save(self, path: str | os.PathLike) -> None:
        """Save the policy and the trainer's state (optimizer, step counter, sampling RNG),
        without pickles and atomically: ``GPTActorCriticPolicy.load(path)`` reads the policy
        back, `load_state` all of it."""
        trainer = {
            "num_timesteps": self.num_timesteps,
            "generator": self.generator.get_state().tolist(),
            **self._settings(),
        }
        write_archive(
            path,
            {
                **self.policy.archive(),
                "optimizer.pth": to_bytes(self.optimizer.state_dict()),
                "trainer.json": json.dumps(trainer).encode(),
            },
        )

    def load_state(self, path: str | os.PathLike) -> None:
        """Continue from a file `save` wrote: weights, optimizer, step counter and sampling
        RNG. The env starts afresh: its next reset is seeded with ``seed + num_timesteps``.

        The file's ``group_size``, ``advantage`` and ``normalize_advantage`` must be this
        trainer's (a file from before they existed: 1, ``"gae"`` and ``"token"``, what it was
        trained with, RLOO included); nothing changes when they are not.
        """
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"policy.pth", "optimizer.pth", "trainer.json"} <= names:
                raise ValueError(
                    f"path={str(path)!r} holds {sorted(names)}: expected a file written by "
                    "SequencePPO.save (policy.pth, optimizer.pth, trainer.json)"
                )
            trainer = json.loads(archive.read("trainer.json"))
            saved = _SETTINGS_BEFORE | {
                key: trainer[key] for key in self._settings() if key in trainer
            }
            if saved != self._settings():
                raise ValueError(
                    f"path={str(path)!r} was saved by a trainer with {saved}, this one has "
                    f"{self._settings()}: expected a trainer built with the same settings"
                )
            # Both read (weights-only) before either is applied: a refused file changes nothing.
            weights = read_weights(archive, "policy.pth", self.device)
            optimizer = read_weights(archive, "optimizer.pth", self.device)
        self.policy.load_state_dict(weights)
        self.optimizer.load_state_dict(optimizer)
        self.num_timesteps = int(trainer["num_timesteps"])
        self.generator.set_state(torch.tensor(trainer["generator"], dtype=torch.uint8))
        self._obs = None

    def _settings(self) -> dict[str, Any]:
        """The settings a saved trainer must be continued with (its episodes depend on them)."""
        return {
            "group_size": self.group_size,
            "advantage": self.advantage,
            "normalize_advantage": self.normalize_advantage,
        }


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)
