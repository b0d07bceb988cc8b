"""The batched TextGen core: N sequences advanced by one KV-cached forward of the reference.

`TextGenEnv` (one sequence) and the vector adapters are thin views over this class, so the
reward semantics live in exactly one place.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from textgym._checks import check_int, is_number
from textgym.kl import KL_ESTIMATORS, AdaptiveKLController, FixedKLController, kl_estimate
from textgym.lm import IncrementalLM, load_causal_lm, load_tokenizer
from textgym.prompts import load_prompts
from textgym.rewards import RewardModel, checked_score, resolve_reward_model

logger = logging.getLogger(__name__)

ACTION_MODES = ("vocab", "topk")
_KL_WINDOW = 64  # finished episodes whose mean KL is checked for a negative sign

PolicyScorer = Callable[..., Any]
"""``scorer(input_ids, attention_mask) -> log_probs``: ``[B, L]`` observations in, the acting
policy's log-probs over the action space at the last real position out, ``[B, A]``. In
``"topk"`` mode a scorer that accepts keyword arguments ``candidate_ids`` and
``candidate_logprobs`` (or ``**kwargs``) also gets those observation entries, ``[B, k]``."""


@dataclass
class StepResult:
    """What one core step produced for all rows (rows that did not step hold zeros)."""

    rewards: np.ndarray  # (N,) float32: KL part plus, on the last step, the RM part
    kl_reward: np.ndarray  # (N,) float32: the KL part alone
    terminated: np.ndarray  # (N,) bool
    ref_logprob: np.ndarray  # (N,) float32
    kl_coef: float
    policy_logprob: np.ndarray | None = None  # (N,), when a policy scorer is attached
    kl: np.ndarray | None = None  # (N,), when a policy scorer is attached
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)  # row -> final-step info

    @classmethod
    def empty(cls, n: int, kl_coef: float) -> StepResult:
        """A result in which no row stepped."""
        return cls(
            rewards=np.zeros(n, dtype=np.float32),
            kl_reward=np.zeros(n, dtype=np.float32),
            terminated=np.zeros(n, dtype=bool),
            ref_logprob=np.zeros(n, dtype=np.float32),
            kl_coef=kl_coef,
        )

    def row_info(self, row: int) -> dict[str, Any]:
        """The info dict of one row, as the single-sequence env reports it."""
        info: dict[str, Any] = {
            "ref_logprob": float(self.ref_logprob[row]),
            "kl_coef": self.kl_coef,
            "kl_reward": float(self.kl_reward[row]),
        }
        if self.policy_logprob is not None:
            info["policy_logprob"] = float(self.policy_logprob[row])
            info["kl"] = float(self.kl[row])
        info.update(self.finished.get(row, {}))
        return info


class TextGenCore:
    """N TextGen sequences sharing one reference model, one KV cache and one RM call per step.

    Arguments are those of `TextGenEnv` (see its docstring) plus ``num_rows``.
    """

    def __init__(
        self,
        num_rows: int = 1,
        *,
        model: str | os.PathLike | None = None,
        reference_model: str | os.PathLike | None = None,
        reward_model: Any = None,
        prompts: str | os.PathLike | Sequence[str] | None = None,
        max_new_tokens: int = 24,
        max_prompt_tokens: int = 24,
        kl_coef: float = 0.05,
        kl_estimator: str = "k1",
        kl_target: float | None = None,
        kl_horizon: int = 10_000,
        action_mode: str = "vocab",
        top_k: int | None = 10,
        top_p: float = 1.0,
        missing_eos_penalty: float = 0.0,
        normalize_reward: bool = False,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        check_int("num_rows", num_rows, low=1)
        check_int("max_new_tokens", max_new_tokens, low=1)
        check_int("max_prompt_tokens", max_prompt_tokens, low=1)
        if action_mode not in ACTION_MODES:
            raise ValueError(
                f"action_mode={action_mode!r} is not known: expected one of {ACTION_MODES}"
            )
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"kl_estimator={kl_estimator!r} is not known: expected one of {KL_ESTIMATORS}"
            )
        if not (is_number(kl_coef) and kl_coef >= 0 and np.isfinite(kl_coef)):
            raise ValueError(f"kl_coef={kl_coef!r} must be a finite number >= 0")
        if top_k is not None:
            check_int("top_k", top_k, low=1)
        elif action_mode == "topk":
            raise ValueError(
                "top_k=None is not allowed with action_mode='topk': expected an int >= 1"
            )
        if not (is_number(top_p) and 0 < top_p <= 1):
            raise ValueError(f"top_p={top_p!r} must be a number in (0, 1]")
        if not (is_number(missing_eos_penalty) and np.isfinite(missing_eos_penalty)):
            raise ValueError(f"missing_eos_penalty={missing_eos_penalty!r} must be a finite number")
        if not isinstance(normalize_reward, bool | np.bool_):
            raise ValueError(f"normalize_reward={normalize_reward!r} must be True or False")

        self.num_rows = num_rows
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.kl_estimator = kl_estimator
        self.action_mode = action_mode
        self.top_k = top_k
        self.top_p = float(top_p)
        self.missing_eos_penalty = float(missing_eos_penalty)
        self.kl_controller = (
            AdaptiveKLController(kl_coef, kl_target, kl_horizon)
            if kl_target is not None
            else FixedKLController(kl_coef)
        )

        self.tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
        self.reference_model = load_causal_lm(
            reference_model if reference_model is not None else model,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            argument="reference_model" if reference_model is not None else "model",
        )
        self.vocab_size = int(self.reference_model.get_output_embeddings().weight.shape[0])
        if len(self.tokenizer) > self.vocab_size:
            raise ValueError(
                f"the tokenizer of model has {len(self.tokenizer)} tokens but the reference "
                f"model scores only {self.vocab_size}: expected a reference with the same "
                "vocabulary"
            )
        if top_k is not None and top_k > self.vocab_size:
            raise ValueError(
                f"top_k={top_k} exceeds the vocabulary of {self.vocab_size} tokens: expected "
                f"1 <= top_k <= {self.vocab_size}"
            )
        config = self.reference_model.config
        positions = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        if positions is not None and max_prompt_tokens + max_new_tokens > positions:
            raise ValueError(
                f"max_prompt_tokens + max_new_tokens = {max_prompt_tokens + max_new_tokens} "
                f"exceeds the {positions} positions of the reference model: expected at most "
                f"{positions} tokens per episode"
            )
        self.eos_token_id = int(self.tokenizer.eos_token_id)
        self.pad_token_id = int(self.tokenizer.pad_token_id)
        self.reward_model: RewardModel = resolve_reward_model(reward_model)
        self.prompts = load_prompts(prompts)
        self._warned_truncation = False
        encoded = [self._encode(p, f"prompts[{i}]") for i, p in enumerate(self.prompts)]
        self._warn_truncated(sum(len(ids) > max_prompt_tokens for ids in encoded))
        self._prompt_ids = [ids[-max_prompt_tokens:] for ids in encoded]

        self.num_actions = top_k if action_mode == "topk" else self.vocab_size
        self.seq_len = max_prompt_tokens + max_new_tokens
        self.observation_space = self._make_observation_space()
        self.action_space = spaces.Discrete(self.num_actions)
        self.scorer: PolicyScorer | None = None
        self._scorer_extras = False
        self._recent_kl: deque[float] = deque(maxlen=_KL_WINDOW)
        self._since_kl_check = 0
        self._warned_no_scorer = False
        self.reward_gain, self.reward_bias = 1.0, 0.0

        n, length = num_rows, self.seq_len
        self.input_ids = np.full((n, length), self._obs_pad, dtype=np.int64)
        self.attention_mask = np.zeros((n, length), dtype=np.int64)
        self.prompt_len = np.zeros(n, dtype=np.int64)
        self.gen_len = np.zeros(n, dtype=np.int64)
        self.prompt_index = np.zeros(n, dtype=np.int64)
        self.row_prompt: list[str] = [""] * n
        self.active = np.zeros(n, dtype=bool)
        self.kl_sum = np.zeros(n, dtype=np.float64)
        self._lm = IncrementalLM(self.reference_model, n, self.pad_token_id)
        self._all_rows = np.arange(n)
        # The reference's next-token distribution per row, written in place every step.
        self._next_logprobs = torch.zeros(n, self.vocab_size, device=self._lm.device)  # (N, V)
        self._cand_ids = torch.zeros(n, top_k or 1, dtype=torch.long, device=self._lm.device)
        self._cand_logprobs = torch.zeros(n, top_k or 1, device=self._lm.device)  # (N, k)
        # Ids that are not text: special tokens but EOS (pad, bos, ...) and ids beyond the
        # tokenizer. They stay legal actions; action_masks() never offers them.
        not_text = set(self.tokenizer.all_special_ids) - {self.eos_token_id, None}
        not_text.update(range(len(self.tokenizer), self.vocab_size))
        self._not_text = torch.tensor(sorted(not_text), dtype=torch.long, device=self._lm.device)
        self._make_host_views()
        if normalize_reward:
            self.reward_gain, self.reward_bias = self._reference_reward_stats()

    # ------------------------------------------------------------------ spaces and prompts
    @property
    def _obs_pad(self) -> int:
        return self.pad_token_id if self.pad_token_id < self.vocab_size else self.eos_token_id

    def _make_observation_space(self) -> spaces.Dict:
        length, high = self.seq_len, self.vocab_size - 1
        entries = {
            "input_ids": spaces.Box(0, high, (length,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, (length,), dtype=np.int64),
        }
        if self.action_mode == "topk":
            entries["candidate_ids"] = spaces.Box(0, high, (self.top_k,), dtype=np.int64)
            entries["candidate_logprobs"] = spaces.Box(
                -np.inf, 0.0, (self.top_k,), dtype=np.float32
            )
        return spaces.Dict(entries)

    def encode_prompt(self, prompt: str, argument: str = "prompt") -> list[int]:
        """Token ids of ``prompt``, cut from the left to ``max_prompt_tokens`` (warning once)."""
        ids = self._encode(prompt, argument)
        self._warn_truncated(int(len(ids) > self.max_prompt_tokens))
        return ids[-self.max_prompt_tokens :]

    def _encode(self, prompt: str, argument: str) -> list[int]:
        if not isinstance(prompt, str):
            raise TypeError(f"{argument}={prompt!r} has type {type(prompt).__name__}: expected str")
        ids = self.tokenizer(prompt)["input_ids"]
        if not ids:
            raise ValueError(
                f"{argument}={prompt!r} encodes to no tokens: expected a non-empty prompt"
            )
        return ids

    def _warn_truncated(self, count: int) -> None:
        if count and not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(
                f"{count} prompt(s) are longer than max_prompt_tokens={self.max_prompt_tokens} "
                "tokens and are cut from the left (their ends are kept); shown once",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ policy scorer
    def attach_policy(self, scorer: PolicyScorer | None) -> None:
        """Use ``scorer`` for log pi in the KL reward (``None`` detaches it)."""
        if scorer is not None and not callable(scorer):
            raise TypeError(
                f"scorer={scorer!r} is not callable: expected scorer(input_ids, attention_mask)"
            )
        self.scorer = scorer
        self._scorer_extras = (
            scorer is not None and self.action_mode == "topk" and _takes_extras(scorer)
        )

    def _policy_logprobs(self, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        extras = {}
        if self._scorer_extras:
            extras = {
                "candidate_ids": _fresh(self._cand_ids[torch.as_tensor(rows)]),
                "candidate_logprobs": _fresh(self._cand_logprobs[torch.as_tensor(rows)]),
            }
        out = self.scorer(self.input_ids[rows].copy(), self.attention_mask[rows].copy(), **extras)
        if isinstance(out, torch.Tensor):
            out = out.detach().float().cpu().numpy()
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (len(rows), self.num_actions):
            raise ValueError(
                f"the attached policy scorer returned shape {out.shape}: expected "
                f"({len(rows)}, {self.num_actions}), log-probs over the action space per row"
            )
        return out[np.arange(len(rows)), actions]

    # ------------------------------------------------------------------ episodes
    def start_rows(
        self,
        rows: Sequence[int],
        prompt_indices: Sequence[int] | None = None,
        prompt_texts: Sequence[str] | None = None,
    ) -> None:
        """Begin a new episode in each of ``rows``, from bundled prompt indices or given texts."""
        rows = np.asarray(rows, dtype=np.int64)
        if prompt_texts is not None:
            encoded = [self.encode_prompt(text) for text in prompt_texts]
            texts = list(prompt_texts)
            indices = np.full(len(rows), -1)
        else:
            indices = np.asarray(prompt_indices, dtype=np.int64)
            encoded = [self._prompt_ids[i] for i in indices]
            texts = [self.prompts[i] for i in indices]
        logits = self._lm.start(rows.tolist(), encoded)
        self._set_next(rows, logits)
        self.input_ids[rows] = self._obs_pad
        self.attention_mask[rows] = 0
        for row, ids, text in zip(rows, encoded, texts):
            self.input_ids[row, : len(ids)] = ids
            self.attention_mask[row, : len(ids)] = 1
            self.row_prompt[row] = text
        self.prompt_len[rows] = [len(ids) for ids in encoded]
        self.prompt_index[rows] = indices
        self.gen_len[rows] = 0
        self.kl_sum[rows] = 0.0
        self.active[rows] = True

    def _make_host_views(self) -> None:
        """On the CPU, numpy views of the distribution tensors: reading one entry per row
        through numpy costs far less than torch indexing, and a step reads several."""
        on_cpu = self._next_logprobs.device.type == "cpu"
        self._views = (
            {
                "next": self._next_logprobs.numpy(),
                "cand_ids": self._cand_ids.numpy(),
                "cand_logprobs": self._cand_logprobs.numpy(),
            }
            if on_cpu
            else None
        )

    def _gather(self, name: str, idx: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """``source[idx, acts]`` of a distribution tensor, as numpy."""
        if self._views is not None:
            return self._views[name][idx, acts]
        source = {
            "next": self._next_logprobs,
            "cand_ids": self._cand_ids,
            "cand_logprobs": self._cand_logprobs,
        }[name]
        device = source.device
        return (
            source[torch.as_tensor(idx, device=device), torch.as_tensor(acts, device=device)]
            .cpu()
            .numpy()
        )

    def _set_next(self, rows: np.ndarray, logits: torch.Tensor) -> None:
        """Store the reference's next-token distribution for ``rows`` (one log-softmax per step)."""
        every = len(rows) == self.num_rows  # rows are sorted, so then they are all rows in order
        target = slice(None) if every else torch.as_tensor(rows, device=logits.device)
        self._next_logprobs[target] = torch.log_softmax(logits, dim=-1)  # (k, V)
        if self.action_mode == "topk":
            top = torch.topk(logits, self.top_k, dim=-1)
            self._cand_ids[target] = top.indices
            self._cand_logprobs[target] = torch.log_softmax(top.values, dim=-1)

    def observe(
        self, rows: int | Sequence[int] | np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Fresh copies of the observations of ``rows`` (all rows by default), batched; an int
        ``rows`` gives one row's observation, unbatched."""
        index = slice(None) if rows is None else rows if isinstance(rows, int) else np.asarray(rows)
        obs = {
            "input_ids": self.input_ids[index].copy(),
            "attention_mask": self.attention_mask[index].copy(),
        }
        if self.action_mode == "topk":
            obs["candidate_ids"] = _fresh(self._cand_ids[index])
            obs["candidate_logprobs"] = _fresh(self._cand_logprobs[index])
        return obs

    def reference_logprobs(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` float32: the reference policy's log-probs over the action space now.

        In ``"topk"`` mode they are renormalised over the candidates. Sampling from them acts
        as the reference policy; as a policy scorer they make every KL step reward 0.
        """
        index = slice(None) if rows is None else torch.as_tensor(np.asarray(rows))
        source = self._cand_logprobs if self.action_mode == "topk" else self._next_logprobs
        return _fresh(source[index])

    def action_masks(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` bool: the reference's top-k / top-p tokens (plus EOS in vocab mode,
        minus the special tokens that are not EOS and the ids beyond the tokenizer)."""
        index = slice(None) if rows is None else torch.as_tensor(np.asarray(rows))
        if self.action_mode == "topk":
            probs = self._cand_logprobs[index].exp()  # sorted, renormalised over the k candidates
            return _nucleus(probs, self.top_p).cpu().numpy()
        logprobs = self._next_logprobs[index]
        k = self.vocab_size if self.top_k is None else min(self.top_k, self.vocab_size)
        top = torch.topk(logprobs, k, dim=-1)
        keep = _nucleus(top.values.exp(), self.top_p)
        mask = torch.zeros_like(logprobs, dtype=torch.bool)
        mask.scatter_(1, top.indices, keep)
        mask[:, self._not_text] = False
        mask[:, self.eos_token_id] = True
        return mask.cpu().numpy()

    def step(
        self, actions: np.ndarray, rows: np.ndarray | None = None, argument: str = "action"
    ) -> StepResult:
        """Apply ``actions`` (one per row) to the live ``rows`` (bool mask; default: all rows).

        Nothing is changed when this raises (bad action, failing RM or scorer).
        """
        n = self.num_rows
        idx = self._all_rows if rows is None else np.flatnonzero(np.asarray(rows, dtype=bool))
        if not self.active[idx].all():
            raise RuntimeError(
                "step() called on a sequence whose episode has ended (or never started): "
                "call reset() first"
            )
        acts = self._check_actions(actions, idx, argument)
        if self.action_mode == "topk":
            tokens = self._gather("cand_ids", idx, acts)
            ref_lp = self._gather("cand_logprobs", idx, acts).astype(np.float64)
        else:
            tokens = acts
            ref_lp = self._gather("next", idx, acts).astype(np.float64)

        beta = self.kl_controller.value
        result = StepResult.empty(n, beta)
        result.ref_logprob[idx] = ref_lp
        if self.scorer is not None:
            pol_lp = self._policy_logprobs(idx, acts)
            kl = kl_estimate(pol_lp, ref_lp, self.kl_estimator)
            rewards = -beta * kl
            result.policy_logprob = np.zeros(n, dtype=np.float32)
            result.kl = np.zeros(n, dtype=np.float32)
            result.policy_logprob[idx] = pol_lp
            result.kl[idx] = kl
        else:
            self._warn_no_scorer()
            kl = None
            rewards = beta * ref_lp

        result.kl_reward[idx] = rewards
        gen_len = self.gen_len[idx] + 1
        hit_eos = tokens == self.eos_token_id
        done = hit_eos | (gen_len >= self.max_new_tokens)
        done_rows = idx[done]
        if done_rows.size:
            rewards = rewards.copy()
            rm = self._finish(done_rows, tokens[done], kl, done, hit_eos[done], result)
            rewards[done] += rm
        result.rewards[idx] = rewards
        result.terminated[done_rows] = True

        # Commit: nothing above changed the state.
        positions = self.prompt_len[idx] + self.gen_len[idx]
        self.input_ids[idx, positions] = tokens
        self.attention_mask[idx, positions] = 1
        self.gen_len[idx] = gen_len
        if kl is not None:
            self.kl_sum[idx] += kl
        self.active[done_rows] = False
        if done_rows.size and kl is not None:
            episode_kl = self.kl_sum[done_rows]
            self.kl_controller.update(float(episode_kl.mean()), len(done_rows))
            self._check_kl_sign(episode_kl)

        going = idx[~done]
        if going.size == n:
            self._set_next(going, self._lm.advance(torch.from_numpy(tokens)))
        elif going.size:
            feed = np.full(n, self._obs_pad, dtype=np.int64)
            feed[idx] = tokens
            step_rows = np.zeros(n, dtype=bool)
            step_rows[going] = True
            logits = self._lm.advance(torch.from_numpy(feed), step_rows)
            self._set_next(going, logits[torch.as_tensor(going, device=logits.device)])
        return result

    def _check_kl_sign(self, episode_kl: np.ndarray) -> None:
        """Log when the mean KL over the last `_KL_WINDOW` episodes is negative: a bug symptom.

        One episode's k1 sum can be negative by chance, and so can a window's mean when the
        policy is within noise of the reference: only a mean more than 3 standard errors
        below zero is a symptom.
        """
        self._recent_kl.extend(episode_kl.tolist())
        self._since_kl_check += len(episode_kl)
        if len(self._recent_kl) < _KL_WINDOW or self._since_kl_check < _KL_WINDOW:
            return
        self._since_kl_check = 0
        mean = float(np.mean(self._recent_kl))
        standard_error = float(np.std(self._recent_kl)) / np.sqrt(_KL_WINDOW)
        if mean < -max(1e-3, 3 * standard_error):
            logger.warning(
                "mean KL per sequence over the last %d episodes is negative (%.4f): the "
                "attached scorer's log-probs do not match the acting policy (temperature, "
                "filtering or dropout?)",
                _KL_WINDOW,
                mean,
            )

    def _finish(self, rows, last_tokens, kl, done, hit_eos, result: StepResult) -> np.ndarray:
        """The RM score (and final info) of the rows that finish on this step."""
        texts = []
        for row, token in zip(rows, last_tokens):
            start = self.prompt_len[row]
            generated = [*self.input_ids[row, start : start + self.gen_len[row]], token]
            texts.append(generated)
        texts = self.tokenizer.batch_decode(texts, skip_special_tokens=True)
        prompts = [self.row_prompt[row] for row in rows]
        raw = checked_score(self.reward_model, prompts, texts)
        scores = self.reward_gain * raw + self.reward_bias
        penalties = self.missing_eos_penalty * (~hit_eos)
        for i, row in enumerate(rows):
            info = {
                "rm_score": float(scores[i]),
                "eos_penalty": float(penalties[i]),
                "prompt": prompts[i],
                "text": texts[i],
            }
            if kl is not None:
                info["episode_kl"] = float(self.kl_sum[row] + kl[done][i])
            result.finished[int(row)] = info
        return scores - penalties

    def _check_actions(self, actions: Any, idx: np.ndarray, argument: str) -> np.ndarray:
        if type(actions) is int and self.num_rows == 1 and 0 <= actions < self.num_actions:
            return np.array([actions], dtype=np.int64)  # the common single-env case, fast
        arr = np.asarray(actions)
        expected = f"an integer in [0, {self.num_actions})"
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(
                f"{argument}={actions!r} has type {type(actions).__name__} ({arr.dtype}): "
                f"expected {expected}"
            )
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
        if arr.shape != (self.num_rows,):
            per_row = "" if self.num_rows == 1 else f" shape ({self.num_rows},) with"
            raise ValueError(
                f"{argument}={actions!r} has shape {arr.shape}: expected{per_row} {expected}"
            )
        chosen = arr[idx]
        bad = (chosen < 0) | (chosen >= self.num_actions)
        if bad.any():
            raise ValueError(f"{argument}={actions!r} is out of range: expected {expected}")
        return chosen.astype(np.int64)

    def _warn_no_scorer(self) -> None:
        if not self._warned_no_scorer:
            self._warned_no_scorer = True
            warnings.warn(
                "no policy scorer is attached, so TextGen uses the reference-only reward "
                "r_t = kl_coef * log pi_ref(a_t|s_t); with an entropy bonus of kl_coef in the "
                "agent this is the KL-regularised objective. Attach the acting policy with "
                "env.unwrapped.attach_policy(scorer) for the KL step reward. Shown once.",
                UserWarning,
                stacklevel=4,
            )

    # ------------------------------------------------------------------ reward normalisation
    @torch.inference_mode()
    def _reference_reward_stats(self, samples: int = 64, seed: int = 0) -> tuple[float, float]:
        """Gain and bias that give the reference policy's samples RM mean 0 and std 1."""
        generator = torch.Generator(device="cpu").manual_seed(seed)
        rng = np.random.default_rng(seed)
        picks = rng.integers(len(self.prompts), size=samples)
        scorer = IncrementalLM(self.reference_model, samples, self.pad_token_id)
        logits = scorer.start(list(range(samples)), [self._prompt_ids[i] for i in picks])
        generated = torch.zeros(samples, self.max_new_tokens, dtype=torch.long)
        finished = torch.zeros(samples, dtype=torch.bool)
        for t in range(self.max_new_tokens):
            probs = torch.softmax(logits.cpu(), dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            token[finished] = self.pad_token_id
            generated[:, t] = token
            finished |= token == self.eos_token_id
            if finished.all() or t == self.max_new_tokens - 1:
                break
            logits = scorer.advance(token)
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        scores = checked_score(self.reward_model, [self.prompts[i] for i in picks], texts)
        std = float(scores.std())
        if std < 1e-8:
            raise ValueError(
                "normalize_reward=True: the reference policy's samples all score "
                f"{scores.mean():.4g}, so no gain can make their std 1"
            )
        return 1.0 / std, -float(scores.mean()) / std

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_views"] = None
        state["_lm"] = None  # the KV cache is rebuilt from the token ids on unpickling
        state["scorer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_host_views()
        self._lm = IncrementalLM(self.reference_model, self.num_rows, self.pad_token_id)
        rows = np.flatnonzero(self.active)
        if rows.size == 0:
            return
        if rows.size < self.num_rows:  # the first start must begin every row
            sequences = [[self.eos_token_id]] * self.num_rows
        else:
            sequences = [None] * self.num_rows
        for row in rows:
            sequences[row] = self.input_ids[
                row, : self.prompt_len[row] + self.gen_len[row]
            ].tolist()
        logits = self._lm.start(list(range(self.num_rows)), sequences)
        self._set_next(rows, logits[torch.as_tensor(rows)])


def _takes_extras(scorer: PolicyScorer) -> bool:
    """Whether ``scorer`` accepts the candidate entries of a ``"topk"`` observation."""
    import inspect

    try:
        parameters = inspect.signature(scorer).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    names = {p.name for p in parameters}
    return (
        any(p.kind is p.VAR_KEYWORD for p in parameters)
        or {
            "candidate_ids",
            "candidate_logprobs",
        }
        <= names
    )


def _fresh(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy that shares no memory with the env's state (``.numpy()`` alone would)."""
    return tensor.cpu().numpy().copy()


def _nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest prefix of descending ``sorted_probs`` whose mass reaches ``top_p``."""
    if top_p >= 1.0:  # everything, though a float32 cumsum can reach 1 before the tail
        return torch.ones_like(sorted_probs, dtype=torch.bool)
    before = sorted_probs.cumsum(-1) - sorted_probs
    return before < top_p
