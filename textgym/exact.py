"""The KL-regularised optimum of a small TextGen env, by enumerating every sequence it can
generate (`TextGenExact-v0` is built for it; any vocab-mode TextGen env small enough works).

For one prompt ``x``, with the reference ``pi_ref``, the terminal reward ``R(y)`` (the RM
score, less ``missing_eos_penalty`` when ``y`` ends without EOS) and ``beta = kl_coef``, the
objective of a policy ``pi`` is

    J(pi) = E_{y~pi}[R(y)] - beta KL(pi || pi_ref)

(the expected return of an episode whose KL step rewards use the k1 estimator, summed). Its
maximiser is ``pi*(y) = pi_ref(y) exp(R(y)/beta) / Z`` with ``Z = sum_y pi_ref(y)
exp(R(y)/beta)``, and ``J(pi*) = beta log Z``. Since ``log pi* = log pi_ref + R/beta - log
Z``, every policy's gap to the optimum is ``J(pi*) - J(pi) = beta KL(pi || pi*)``. The env
draws prompts uniformly, so the figures of an env are the means over its prompts.

`ExactSolver(env)` walks the tree of sequences once (the reference's next-token log-probs
from its model, one batched forward per depth and prompt; the rewards from the env's reward
model, one batched call), then evaluates any policy given as a scorer ``scorer(obs) ->
log_probs`` (the env's `attach_policy` protocol) on every prefix. ``optimal_scorer()`` is
``pi*`` as such a scorer: ``log pi*(a|s) = log pi_ref(a|s) + W(s a) - W(s)`` with ``W(s) =
log sum_{y from s} pi_ref(y|s) exp(R(y)/beta)``, so attached to the env and sampled from, every
episode returns exactly ``beta log Z`` of its prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Scorer = Callable[[dict[str, np.ndarray]], np.ndarray]
MAX_SEQUENCES = 200_000


@dataclass
class PromptTree:
    """Every sequence from one prompt: the prefixes per depth (``prefixes[d]``: the ``(n_d,
    d)`` token ids of the live prefixes of length ``d``) with the reference's next-token
    log-probs there (``reference_next[d]``, ``(n_d, A)``), and the finished sequences in the
    order the walk finds them (depth by depth; parents, then actions, in order): ``tokens``
    ``(n, H)`` (``-1`` after the end), ``lengths``, and per sequence the reference's log-prob
    and the reward."""

    prompt: str
    prompt_ids: np.ndarray
    prefixes: list[np.ndarray]
    reference_next: list[np.ndarray]
    tokens: np.ndarray
    lengths: np.ndarray
    ref_logprob: np.ndarray
    reward: np.ndarray


class ExactSolver:
    """Every sequence of ``env``'s tree, the optimum and the exact objective of any policy.

    :param env: a TextGen env (``gym.make("TextGenExact-v0")``, or any ``TextGen-v0`` in
        ``"vocab"`` mode without a constraint or ``normalize_reward``). It is reset once per
        prompt to read the prompts' tokens; nothing else of it changes.
    :param beta: the KL coefficient of the objective (default: the env's ``kl_coef``).
    :param max_sequences: refuse a tree larger than this (sequences over all prompts).
    """

    def __init__(
        self, env: Any, beta: float | None = None, max_sequences: int = MAX_SEQUENCES
    ) -> None:
        unwrapped = env.unwrapped
        core = getattr(unwrapped, "core", None)
        if core is None or getattr(core, "num_rows", None) != 1:
            raise TypeError(
                f"env={env!r}: expected a single TextGen env (gym.make('TextGenExact-v0'))"
            )
        if core.action_mode != "vocab":
            raise ValueError(
                f"env has action_mode={core.action_mode!r}: the exact objective is defined on "
                "the whole vocabulary, expected action_mode='vocab'"
            )
        if core.constraint is not None or core.reward_gain != 1.0 or core.reward_bias != 0.0:
            raise ValueError(
                "env has a constraint or normalize_reward=True: expected neither (the exact "
                "objective uses the unconstrained reference and the raw RM score)"
            )
        self.beta = float(unwrapped.kl_coef if beta is None else beta)
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta={self.beta!r}: expected a finite number > 0")
        self.vocab_size = int(unwrapped.action_space.n)
        self.horizon = int(core.max_new_tokens)
        self.eos = int(core.eos_token_id)
        count = len(unwrapped.prompts) * _tree_size(self.vocab_size, self.horizon)
        if count > max_sequences:
            raise ValueError(
                f"env generates {count:,} sequences ({len(unwrapped.prompts)} prompts, "
                f"{self.vocab_size} actions, {self.horizon} tokens): expected at most "
                f"max_sequences={max_sequences:,}"
            )
        self._env = unwrapped
        self._model = unwrapped.reference_model
        self.trees = [self._grow(i) for i in range(len(unwrapped.prompts))]

    # ---------------------------------------------------------------- the tree
    def _grow(self, index: int) -> PromptTree:
        obs, info = self._env.reset(options={"prompt_index": index})
        mask = obs["attention_mask"].astype(bool)
        self._pad = int(obs["input_ids"][~mask][0])
        self._width = len(mask)
        prompt_ids = obs["input_ids"][mask]
        prefixes = [np.zeros((1, 0), dtype=np.int64)]
        reference_next, finished_tokens, finished_lp = [], [], []
        live_lp = np.zeros(1)
        for depth in range(self.horizon):
            logprobs = self._reference_next(prompt_ids, prefixes[depth])
            reference_next.append(logprobs)
            children, total, ends = self._expand(prefixes[depth], live_lp, logprobs, depth)
            finished_tokens.append(children[ends])
            finished_lp.append(total[ends])
            if depth + 1 < self.horizon:
                prefixes.append(children[~ends])
                live_lp = total[~ends]
        tokens = np.full((sum(map(len, finished_tokens)), self.horizon), -1, dtype=np.int64)
        row = 0
        for block in finished_tokens:
            tokens[row : row + len(block), : block.shape[1]] = block
            row += len(block)
        lengths = (tokens >= 0).sum(axis=1)
        return PromptTree(
            prompt=info["prompt"],
            prompt_ids=prompt_ids,
            prefixes=prefixes,
            reference_next=reference_next,
            tokens=tokens,
            lengths=lengths,
            ref_logprob=np.concatenate(finished_lp),
            reward=self._rewards(info["prompt"], tokens, lengths),
        )

    def _expand(
        self, prefixes: np.ndarray, prefix_lp: np.ndarray, logprobs: np.ndarray, depth: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every child of every prefix (parents in order, actions in order), its summed
        log-prob and whether it ends (EOS or the horizon)."""
        count = len(prefixes)
        actions = np.tile(np.arange(self.vocab_size), count)
        parents = np.repeat(prefixes, self.vocab_size, axis=0)
        children = np.concatenate([parents, actions[:, None]], axis=1)
        total = (prefix_lp[:, None] + logprobs).reshape(-1)
        return children, total, self._ends(count, depth)

    @torch.no_grad()
    def _reference_next(self, prompt_ids: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
        prompts = np.broadcast_to(prompt_ids, (len(prefixes), len(prompt_ids)))
        rows = np.concatenate([prompts, prefixes], axis=1)
        device = next(self._model.parameters()).device
        rows = torch.as_tensor(rows, device=device)
        logits = self._model(input_ids=rows, attention_mask=torch.ones_like(rows)).logits[:, -1]
        # In float64, so that the exact figures add up to 1e-12 (the env's are float32).
        return torch.log_softmax(logits[:, : self.vocab_size].double(), dim=-1).cpu().numpy()

    def _rewards(self, prompt: str, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        from textgym.rewards import checked_score

        sequences = [row[:length].tolist() for row, length in zip(tokens, lengths, strict=True)]
        texts = self._env.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        scores = checked_score(self._env.reward_model, [prompt] * len(texts), texts)
        hit_eos = np.array([seq[-1] == self.eos for seq in sequences])
        return scores.astype(np.float64) - self._env.core.missing_eos_penalty * (~hit_eos)

    def observations(self, tree: PromptTree, prefixes: np.ndarray) -> dict[str, np.ndarray]:
        """The env's observations of ``prefixes`` (``(n, d)`` generated token ids) of
        ``tree``'s prompt: prompt then tokens, right-padded, as `reset` and `step` return."""
        length = len(tree.prompt_ids) + prefixes.shape[1]
        input_ids = np.full((len(prefixes), self._width), self._pad, dtype=np.int64)
        input_ids[:, : len(tree.prompt_ids)] = tree.prompt_ids
        input_ids[:, len(tree.prompt_ids) : length] = prefixes
        attention_mask = np.zeros_like(input_ids)
        attention_mask[:, :length] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # ---------------------------------------------------------------- policies
    def sequence_logprobs(self, scorer: Scorer, batch_size: int = 4096) -> list[np.ndarray]:
        """Per prompt, ``log pi(y)`` of every sequence (in the trees' order) for the policy
        ``scorer`` (called on batches of at most ``batch_size`` observations)."""
        result = []
        for tree in self.trees:
            live_lp = np.zeros(1)
            finished = []
            for depth, prefixes in enumerate(tree.prefixes):
                obs = self.observations(tree, prefixes)
                batches = [
                    scorer({key: value[i : i + batch_size] for key, value in obs.items()})
                    for i in range(0, len(prefixes), batch_size)
                ]
                logprobs = _checked(np.concatenate(batches), self.vocab_size, len(prefixes))
                _, total, ends = self._expand(prefixes, live_lp, logprobs, depth)
                finished.append(total[ends])
                live_lp = total[~ends]
            result.append(np.concatenate(finished))
        return result

    def log_partition(self) -> np.ndarray:
        """``log Z`` per prompt."""
        return np.array([_logsumexp(t.ref_logprob + t.reward / self.beta) for t in self.trees])

    def optimal_value(self) -> float:
        """``J(pi*) = beta log Z``, averaged over the prompts."""
        return float(self.beta * self.log_partition().mean())

    def optimal_logprobs(self) -> list[np.ndarray]:
        """Per prompt, ``log pi*(y)`` of every sequence."""
        return [
            t.ref_logprob + t.reward / self.beta - log_z
            for t, log_z in zip(self.trees, self.log_partition(), strict=True)
        ]

    def evaluate(self, scorer: Scorer | None = None) -> dict[str, float]:
        """The exact figures of a policy (the reference when ``scorer`` is None), means over
        the prompts: ``objective`` J, ``reward`` E[R], ``kl`` KL(pi || pi_ref), ``gap``
        J(pi*) - J, ``kl_to_optimum`` KL(pi || pi*), and ``optimum`` J(pi*)."""
        if scorer is None:
            policy = [tree.ref_logprob for tree in self.trees]
        else:
            policy = self.sequence_logprobs(scorer)
        figures = []
        for tree, log_pi, log_star in zip(self.trees, policy, self.optimal_logprobs(), strict=True):
            p = np.exp(log_pi)
            kl_ref = _expect(p, log_pi - tree.ref_logprob)
            reward = float(p @ tree.reward)
            kl_star = _expect(p, log_pi - log_star)
            figures.append((reward - self.beta * kl_ref, reward, kl_ref, kl_star))
        objective, reward, kl_ref, kl_star = np.mean(figures, axis=0)
        optimum = self.optimal_value()
        return {
            "objective": float(objective),
            "reward": float(reward),
            "kl": float(kl_ref),
            "gap": float(optimum - objective),
            "kl_to_optimum": float(kl_star),
            "optimum": optimum,
        }

    def optimal_scorer(self) -> Scorer:
        """``pi*``'s next-token log-probs as a policy scorer for the env's observations (of
        the trees' prefixes; any other observation raises ``KeyError``)."""
        table: dict[tuple[int, ...], np.ndarray] = {}
        for tree in self.trees:
            for prefixes, logprobs in zip(tree.prefixes, self._optimal_next(tree), strict=True):
                for prefix, row in zip(prefixes, logprobs, strict=True):
                    table[(*tree.prompt_ids.tolist(), *prefix.tolist())] = row

        def scorer(obs: dict[str, np.ndarray]) -> np.ndarray:
            rows = zip(obs["input_ids"], obs["attention_mask"].astype(bool), strict=True)
            keys = [tuple(ids[keep].tolist()) for ids, keep in rows]
            unknown = [key for key in keys if key not in table]
            if unknown:
                raise KeyError(
                    f"token ids {list(unknown[0])} are not a state of the exact task with a next "
                    "token (a finished sequence, or another task's): pi* has no distribution there"
                )
            return np.stack([table[key] for key in keys])

        return scorer

    def _optimal_next(self, tree: PromptTree) -> list[np.ndarray]:
        """Per depth, ``log pi*(a|s)`` for every live prefix ``s``, from the soft values ``W``
        computed leaves first."""
        # W of the finished sequences, in the walk's order: depth by depth.
        finished_w = tree.reward / self.beta
        ended = [int(self._ends(len(p), d).sum()) for d, p in enumerate(tree.prefixes)]
        offsets = np.cumsum([0, *ended])
        child_w = None  # W of the live children of the depth below, in order
        result = []
        for depth in reversed(range(len(tree.prefixes))):
            ends = self._ends(len(tree.prefixes[depth]), depth)
            w = np.empty(ends.shape)
            w[ends] = finished_w[offsets[depth] : offsets[depth + 1]]
            if child_w is not None:
                w[~ends] = child_w
            q = (tree.reference_next[depth].reshape(-1) + w).reshape(-1, self.vocab_size)
            values = _logsumexp(q, axis=1)
            result.append(q - values[:, None])
            child_w = values
        return result[::-1]

    def _ends(self, count: int, depth: int) -> np.ndarray:
        actions = np.tile(np.arange(self.vocab_size), count)
        return (actions == self.eos) | (depth + 1 == self.horizon)


def _tree_size(vocab_size: int, horizon: int) -> int:
    """Sequences of at most ``horizon`` tokens that end at their first EOS or at the horizon."""
    ongoing = vocab_size - 1
    return sum(ongoing**depth for depth in range(horizon)) + ongoing**horizon


def _logsumexp(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    total = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return total.item() if axis is None else np.squeeze(total, axis=axis)


def _expect(p: np.ndarray, values: np.ndarray) -> float:
    """``sum p * values`` over ``p > 0`` (where ``p`` is 0, a value may be infinite)."""
    keep = p > 0
    return float(p[keep] @ values[keep])


def _checked(logprobs: Any, vocab_size: int, rows: int) -> np.ndarray:
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if logprobs.shape != (rows, vocab_size):
        raise ValueError(
            f"scorer returned log-probs of shape {logprobs.shape} for {rows} observations: "
            f"expected ({rows}, {vocab_size})"
        )
    return logprobs
