"""The batched TextGen core: N sequences advanced by one KV-cached forward of the reference.

`TextGenEnv` (one sequence) and the vector adapters are thin views over this class, so the
reward semantics live in exactly one place.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import pickle
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces

from textgym._checks import check_int, check_number, is_int, is_number
from textgym.constraints import Constraint, allowed_masks
from textgym.kl import KL_ESTIMATORS, AdaptiveKLController, FixedKLController, kl_estimate
from textgym.lm import CachedRow, IncrementalLM, load_causal_lm, load_tokenizer
from textgym.prompts import EncodedPrompt, Prompt, encode_prompt, load_prompts, special_affixes
from textgym.reference import sample_tokens
from textgym.rewards import (
    CallableRewardModel,
    HFRewardModel,
    RewardModel,
    VaderSentiment,
    checked_score,
    resolve_reward_model,
)

logger = logging.getLogger(__name__)

ACTION_MODES = ("vocab", "topk")
RESET_OPTIONS = ("prompt", "prompt_index")  # the keys of reset(options=...); at most one
_KL_WINDOW = 64  # finished episodes whose mean KL is checked for a negative sign

PolicyScorer = Callable[[dict[str, np.ndarray]], Any]
"""``scorer(obs) -> log_probs``: the batched observation of the rows being stepped (every key
of the observation space, ``[B, ...]``, fresh copies) in; the acting policy's log-probs over
the action space out, ``[B, A]`` (a numpy array or a tensor), finite, each row a distribution
(logsumexp 0). The env checks the output and raises `ScorerError` naming the scorer."""


class ScorerError(RuntimeError):
    """A policy scorer raised, or returned something that is not log-probs over the actions."""


class PromptStarts(NamedTuple):
    """The prompts new episodes begin from, checked and encoded: one entry per row started."""

    ids: list[list[int]]  # the token ids the policy conditions on
    texts: list[str]  # their text (see `encode_prompt`), what the RM and info["prompt"] get
    indices: np.ndarray  # (k,) int64: index in the prompt set, -1 for a prompt given as text

    def take(self, rows: np.ndarray) -> PromptStarts:
        """The entries of ``rows``."""
        return PromptStarts(
            [self.ids[r] for r in rows], [self.texts[r] for r in rows], self.indices[rows]
        )


# The info keys of every step (and the fields of `StepResult` that hold them), in the order
# the envs report them; an attached policy scorer adds `SCORER_INFO_KEYS`. Every step carries
# every key with a value of a fixed type, so libraries that store infos in preallocated
# buffers (Tianshou) take them; what only the last step knows is a neutral value before it.
INFO_KEYS = (
    "prompt",  # str: the prompt as the policy saw it (known from the reset on)
    "prompt_index",  # int: its index in the prompt set, -1 for a prompt given to reset()
    "ref_logprob",  # float: log pi_ref of the action
    "kl_coef",  # float: beta of this step
    "kl_reward",  # float: the KL part of the reward
    "rm_score",  # float: the RM part of the reward, 0.0 but on the last step
    "eos_penalty",  # float: the missing-EOS penalty paid, 0.0 but on a last step without EOS
    "text",  # str: the continuation, decoded once on the last step, "" before it
)
SCORER_INFO_KEYS = (
    "policy_logprob",  # float: log pi of the action
    "kl",  # float: the KL estimate of the step
    "episode_kl",  # float: the episode's summed KL estimate so far (all of it on the last step)
    # float: the exact KL(pi || pi_ref) at the step's state, summed over the action space from
    # the scorer's full distribution and the reference's (in "topk" mode over the candidates):
    # a metric beside the sampled estimate, never part of the reward (as a detached reward it
    # would not give the KL's gradient, which the sampled k1 reward does).
    "exact_kl",
    "episode_exact_kl",  # float: the episode's summed exact KL so far
)
# With ``group_size`` > 1 (rows in groups that share a prompt and start together):
GROUP_INFO_KEYS = (
    # int: the id of the row's group episode (consecutive from 0 in the order groups start):
    # the rows whose episodes share one id are the samples of one prompt
    "group",
    # bool: the row's text has ended (EOS or max_new_tokens) and its group still generates, so
    # its next action is ignored; False on the step that ends the whole group (terminated)
    "idle",
)


@dataclass(frozen=True)
class TextGenState:
    """One sequence's mid-episode state, taken by ``snapshot`` and given to ``restore`` (or
    ``fork``) to continue it exactly: its tokens, what the episode has earned so far, the
    reference's next-token distribution and the reference's KV cache of the sequence.

    Restoring writes it into a row at the cost of a copy, not a forward pass. The state holds
    only the sequence and the settings it was made with (``signature``): not the env's random
    generator (the prompts later resets draw), not the KL controller's current beta (a training
    quantity: the steps after a restore pay the restoring env's beta), not the attached scorer.
    `TextGenCore.restore` refuses a state whose settings or contents do not fit the env.
    """

    tokens: np.ndarray  # (P + T,) int64: the prompt's ids, then the T generated ones
    prompt_len: int  # P
    prompt_index: int  # as in info["prompt_index"]
    prompt: str  # as in info["prompt"]
    kl_rewards: np.ndarray  # (T,) float32: the KL part of each step's reward so far
    kl_sum: float  # the episode's summed KL estimate so far (with a scorer)
    exact_kl_sum: float  # the episode's summed exact KL so far (with a scorer)
    next_logprobs: torch.Tensor  # (V,) the reference's next-token log-probs
    candidate_ids: torch.Tensor  # (top_k,) "topk" mode's candidates
    candidate_logprobs: torch.Tensor  # (top_k,)
    cache: CachedRow  # the reference's keys and values of the sequence
    signature: dict[str, Any]  # the settings it was made with (see `TextGenCore.signature`)

    @property
    def generated(self) -> np.ndarray:
        """The generated token ids."""
        return self.tokens[self.prompt_len :]


@dataclass
class StepResult:
    """What one core step produced for all rows (rows that did not step hold zeros and ``""``,
    but their current ``prompt``, ``prompt_index`` and ``kl_coef``).

    Each info key is a field of one value per row. `row_info` (the single env, SB3's
    ``VecEnv``) and `batched_info` (gymnasium's ``VectorEnv``) are two forms of the same
    values, so every env reports the same keys. On every row ``rewards == kl_reward +
    rm_score - eos_penalty`` (in float32).
    """

    rewards: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    prompt: np.ndarray  # (N,) object (str)
    prompt_index: np.ndarray  # (N,) int64
    ref_logprob: np.ndarray  # (N,) float32
    kl_coef: np.ndarray  # (N,) float64
    kl_reward: np.ndarray  # (N,) float32
    rm_score: np.ndarray  # (N,) float64
    eos_penalty: np.ndarray  # (N,) float64
    text: np.ndarray  # (N,) object (str)
    policy_logprob: np.ndarray | None = None  # (N,) float32, with a policy scorer
    kl: np.ndarray | None = None  # (N,) float32, with a policy scorer
    episode_kl: np.ndarray | None = None  # (N,) float64, with a policy scorer
    exact_kl: np.ndarray | None = None  # (N,) float64, with a policy scorer
    episode_exact_kl: np.ndarray | None = None  # (N,) float64, with a policy scorer
    group: np.ndarray | None = None  # (N,) int64, with groups
    idle: np.ndarray | None = None  # (N,) bool, with groups

    @classmethod
    def empty(cls, n: int, kl_coef: float, scored: bool, grouped: bool = False) -> StepResult:
        """A result in which no row stepped (``scored``: with the policy scorer's keys;
        ``grouped``: with the group keys)."""
        result = cls(
            rewards=np.zeros(n, dtype=np.float32),
            terminated=np.zeros(n, dtype=bool),
            prompt=np.full(n, "", dtype=object),
            prompt_index=np.zeros(n, dtype=np.int64),
            ref_logprob=np.zeros(n, dtype=np.float32),
            kl_coef=np.full(n, kl_coef, dtype=np.float64),
            kl_reward=np.zeros(n, dtype=np.float32),
            rm_score=np.zeros(n, dtype=np.float64),
            eos_penalty=np.zeros(n, dtype=np.float64),
            text=np.full(n, "", dtype=object),
        )
        if scored:
            result.policy_logprob = np.zeros(n, dtype=np.float32)
            result.kl = np.zeros(n, dtype=np.float32)
            result.episode_kl = np.zeros(n, dtype=np.float64)
            result.exact_kl = np.zeros(n, dtype=np.float64)
            result.episode_exact_kl = np.zeros(n, dtype=np.float64)
        if grouped:
            result.group = np.zeros(n, dtype=np.int64)
            result.idle = np.zeros(n, dtype=bool)
        return result

    @property
    def info_keys(self) -> tuple[str, ...]:
        """The keys of every row's info: `INFO_KEYS`, plus `SCORER_INFO_KEYS` with a scorer and
        `GROUP_INFO_KEYS` with groups."""
        keys = (INFO_KEYS + SCORER_INFO_KEYS) if self.kl is not None else INFO_KEYS
        return keys + GROUP_INFO_KEYS if self.group is not None else keys

    def row_info(self, row: int) -> dict[str, Any]:
        """The info dict of one row, as the single env reports it (Python floats, ints, str)."""
        return {key: getattr(self, key).item(row) for key in self.info_keys}

    def batched_info(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Gymnasium's vector form: every key's ``(N,)`` array, and its ``_key`` mask ``rows``
        (bool, the rows that stepped)."""
        infos: dict[str, np.ndarray] = {}
        for key in self.info_keys:
            infos[key] = getattr(self, key)
            infos[f"_{key}"] = rows.copy()
        return infos

    @property
    def finished(self) -> dict[int, dict[str, Any]]:
        """The info of each row whose episode ended on this step, by row."""
        return {int(row): self.row_info(row) for row in np.flatnonzero(self.terminated)}


class TextGenCore:
    """N TextGen sequences sharing one reference model, one KV cache and one RM call per step.

    Arguments are those of `TextGenEnv` (see its docstring) plus ``num_rows`` and
    ``group_size`` (see `TextGenVectorEnv`): rows ``g*k`` to ``g*k + k - 1`` form group ``g``,
    which starts from one prompt (encoded once) and ends when all its rows have ended.
    """

    def __init__(
        self,
        num_rows: int = 1,
        *,
        group_size: int = 1,
        model: str | os.PathLike | None = None,
        reference_model: str | os.PathLike | None = None,
        reward_model: Any = None,
        prompts: str | os.PathLike | Sequence[Prompt] | None = None,
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
        constraint: Constraint | None = None,
    ) -> None:
        check_int("num_rows", num_rows, low=1)
        check_int("group_size", group_size, low=1)
        if num_rows % group_size:
            raise ValueError(
                f"group_size={group_size} does not divide the {num_rows} row(s): expected a "
                "divisor of num_envs (a group is that many rows that share a prompt; the "
                "single TextGenEnv has one row, so groups need gym.make_vec)"
            )
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
        check_number("kl_coef", kl_coef, at_least=0)
        if kl_target is not None:
            check_number("kl_target", kl_target, above=0)
        check_int("kl_horizon", kl_horizon, low=1)
        if top_k is not None:
            check_int("top_k", top_k, low=1)
        elif action_mode == "topk":
            raise ValueError(
                "top_k=None is not allowed with action_mode='topk': expected an int >= 1"
            )
        check_number("top_p", top_p, above=0, at_most=1)
        check_number("missing_eos_penalty", missing_eos_penalty)
        if constraint is not None and not callable(constraint):
            raise TypeError(
                f"constraint={constraint!r} is not callable: expected "
                "constraint(prompt_ids, generated_ids) -> allowed token ids or a bool mask"
            )
        for name, flag in (
            ("normalize_reward", normalize_reward),
            ("trust_remote_code", trust_remote_code),  # a truthy "no" must not run remote code
        ):
            if not isinstance(flag, bool | np.bool_):
                raise ValueError(f"{name}={flag!r} must be True or False")

        self.num_rows = num_rows
        self.group_size = group_size
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.kl_estimator = kl_estimator
        self.action_mode = action_mode
        self.top_k = top_k
        self.top_p = float(top_p)
        self.missing_eos_penalty = float(missing_eos_penalty)
        self.constraint = constraint
        self.kl_controller = (
            AdaptiveKLController(kl_coef, kl_target, kl_horizon)
            if kl_target is not None
            else FixedKLController(kl_coef)
        )
        # The controller as made: with kl_target its value moves, and `signature` needs the start.
        self._kl_settings = {
            "kl_coef": float(kl_coef),
            "kl_target": None if kl_target is None else float(kl_target),
            "kl_horizon": None if kl_target is None else int(kl_horizon),
        }

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
        specials = sum(map(len, special_affixes(self.tokenizer)))  # BOS: kept by every cut
        if max_prompt_tokens <= specials:
            raise ValueError(
                f"max_prompt_tokens={max_prompt_tokens} leaves no room for prompt text: the "
                f"tokenizer of model={self.tokenizer.name_or_path!r} adds {specials} special "
                f"token(s) that a cut prompt keeps; expected max_prompt_tokens > {specials}"
            )
        encoded = [
            encode_prompt(self.tokenizer, p, max_prompt_tokens, f"prompts[{i}]")
            for i, p in enumerate(self.prompts)
        ]
        self._warn_truncated(sum(e.cut for e in encoded))
        self._prompt_ids = [e.ids for e in encoded]
        self._prompt_texts = [e.text for e in encoded]  # what the policy sees, for the RM

        self.num_actions = top_k if action_mode == "topk" else self.vocab_size
        self.seq_len = max_prompt_tokens + max_new_tokens
        self.observation_space = self._make_observation_space()
        self.action_space = spaces.Discrete(self.num_actions)
        self.scorer: PolicyScorer | None = None
        # The rows being stepped while the scorer runs (None otherwise): lets a scorer bound to
        # this core (the reference policy) answer from state the env already holds.
        self.scoring_rows: np.ndarray | None = None
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
        # Groups: a row whose text ended while its group still generates is idle until the
        # group ends; `ended_eos` says whether its text ended with EOS (for the penalty then).
        self.idle = np.zeros(n, dtype=bool)
        self.ended_eos = np.zeros(n, dtype=bool)
        self.group = np.zeros(n, dtype=np.int64)  # each row's group episode id
        self.groups_started = 0
        self.started = False  # whether reset() began every row once (then every row has a state)
        self.kl_sum = np.zeros(n, dtype=np.float64)
        self.kl_rewards = np.zeros((n, max_new_tokens), dtype=np.float32)  # per generated token
        self.exact_kl_sum = np.zeros(n, dtype=np.float64)
        # The reference's KV cache over every row's tokens; None when it must be rebuilt from
        # them (after unpickling, or a forward that failed midway): see `_kv`.
        self._lm: IncrementalLM | None = None
        self._all_rows = np.arange(n)
        # The reference's next-token distribution per row, written in place every step.
        device = self.reference_model.device
        self._next_logprobs = torch.zeros(n, self.vocab_size, device=device)  # (N, V)
        self._cand_ids = torch.zeros(n, top_k or 1, dtype=torch.long, device=device)
        self._cand_logprobs = torch.zeros(n, top_k or 1, device=device)  # (N, k)
        # Ids that are not text: special tokens but EOS (pad, bos, ...) and ids beyond the
        # tokenizer. They stay legal actions; action_masks() never offers them.
        not_text = set(self.tokenizer.all_special_ids) - {self.eos_token_id, None}
        not_text.update(range(len(self.tokenizer), self.vocab_size))
        self._not_text = torch.tensor(sorted(not_text), dtype=torch.long, device=device)
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

    def encode_prompt(self, prompt: Prompt, argument: str = "prompt") -> EncodedPrompt:
        """``prompt`` (a string or a chat conversation) as the policy sees it: token ids cut
        from the left to ``max_prompt_tokens`` keeping BOS (warning once), and their text."""
        encoded = encode_prompt(self.tokenizer, prompt, self.max_prompt_tokens, argument)
        self._warn_truncated(int(encoded.cut))
        return encoded

    def _warn_truncated(self, count: int) -> None:
        if count and not self._warned_truncation:
            self._warned_truncation = True
            warnings.warn(
                f"{count} prompt(s) are longer than max_prompt_tokens={self.max_prompt_tokens} "
                "tokens and are cut from the left (their ends and the tokenizer's special "
                "tokens such as BOS are kept); shown once",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ policy scorer
    def attach_policy(self, scorer: PolicyScorer | None) -> None:
        """Use ``scorer`` for log pi in the KL reward (``None`` detaches it); see `PolicyScorer`."""
        if scorer is not None and not callable(scorer):
            raise TypeError(
                f"scorer={scorer!r} is not callable: expected scorer(obs) -> log-probs [B, A]"
            )
        self.scorer = scorer

    def _policy_logprobs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log pi over the actions ``(len(rows), A)`` from the attached scorer, its output
        checked, and pi itself (the check's exponentials, reused by `exact_kl`)."""
        self.scoring_rows = rows
        try:
            out = self.scorer(self.observe(rows))
        except Exception as err:
            raise ScorerError(f"the policy scorer {self.scorer!r} raised: {err!r}") from err
        finally:
            self.scoring_rows = None
        if isinstance(out, torch.Tensor):  # a float tensor of any precision, never ints or bools
            out = out.detach().cpu()
            out = (out.float() if out.is_floating_point() else out).numpy()
        out = np.asarray(out)
        expected = (len(rows), self.num_actions)
        if out.shape != expected or out.dtype.kind != "f":
            raise ScorerError(
                f"the policy scorer {self.scorer!r} returned {out.dtype} of shape {out.shape}: "
                f"expected floats of shape {expected}, log-probs over the action space per row"
            )
        # Every row a distribution: its probabilities sum to 1 (NaN or +inf never do). On the
        # hot path, so a sum of exponentials, not a logsumexp (6-25x slower at 2,356 actions).
        with np.errstate(over="ignore", invalid="ignore"):
            probs = np.exp(out)
            mass = probs.sum(axis=1, dtype=np.float64)
        if not (np.abs(mass - 1.0) <= 1e-3).all():
            raise ScorerError(
                f"the policy scorer {self.scorer!r} returned values that are not log-probs "
                f"(row probability mass {mass.min():.3g} to {mass.max():.3g}, or NaN): expected "
                "each row to be a distribution over the actions"
            )
        return out, probs

    # ------------------------------------------------------------------ episodes
    def prompt_starts(self, indices: Sequence[int] | np.ndarray) -> PromptStarts:
        """The prompts of the prompt set at ``indices`` (valid indices, as drawn by an env)."""
        indices = np.asarray(indices, dtype=np.int64)
        return PromptStarts(
            [self._prompt_ids[i] for i in indices],
            [self._prompt_texts[i] for i in indices],
            indices,
        )

    def given_starts(self, prompts: Sequence[Prompt], arguments: Sequence[str]) -> PromptStarts:
        """``prompts`` (strings or conversations) checked and encoded; a bad one raises naming
        its ``arguments`` entry."""
        encoded = [self.encode_prompt(p, name) for p, name in zip(prompts, arguments, strict=True)]
        return PromptStarts(
            [e.ids for e in encoded], [e.text for e in encoded], np.full(len(encoded), -1)
        )

    def reset_starts(
        self, options: Mapping[str, Any], count: int, per_row: bool
    ) -> PromptStarts | None:
        """The prompts that ``reset(options=...)`` asks for, for ``count`` rows, checked before
        anything changes; None when the options choose none (the env draws them).

        ``options`` (keys already checked against `RESET_OPTIONS`) holds at most one of
        ``"prompt_index"``, an index into the prompt set, and ``"prompt"``, a prompt (a string
        or a chat conversation). With ``per_row`` (the vector env) either may also be a list of
        ``count`` of them, one per row; a single one then applies to every row.
        """
        if "prompt" in options and "prompt_index" in options:
            raise ValueError(
                f"options={dict(options)!r} gives both 'prompt' and 'prompt_index': expected "
                "at most one of them"
            )
        if "prompt_index" in options:
            entries = _option_entries(options, "prompt_index", count, per_row, is_int)
            size = len(self.prompts)
            for name, index in entries:
                if not (is_int(index) and 0 <= index < size):
                    raise ValueError(
                        f"{name}={index!r}: expected an integer in [0, {size}), an index into "
                        f"the {size} prompts"
                    )
            return self.prompt_starts([index for _, index in entries])
        if "prompt" in options:
            entries = _option_entries(options, "prompt", count, per_row, lambda p: type(p) is str)
            return self.given_starts([p for _, p in entries], [name for name, _ in entries])
        return None

    def start_rows(
        self,
        rows: Sequence[int],
        prompt_indices: Sequence[int] | None = None,
        prompt_texts: Sequence[Prompt] | None = None,
    ) -> None:
        """Begin a new episode in each of ``rows``, from bundled prompt indices or given prompts.

        ``row_prompt`` holds the text the policy conditions on (see `encode_prompt`): the RM
        scores it, and ``info["prompt"]`` reports it.
        """
        if prompt_texts is not None:
            starts = self.given_starts(prompt_texts, ["prompt"] * len(prompt_texts))
        else:
            starts = self.prompt_starts(prompt_indices)
        self.begin(rows, starts)

    def begin(self, rows: Sequence[int] | np.ndarray, starts: PromptStarts) -> None:
        """Begin a new episode in each of ``rows`` (sorted) from ``starts``, one per row
        (with groups: whole groups, one prompt per group).

        Nothing changes when this raises: a forward that fails midway drops the KV cache (see
        `_kv`), and the rows' state is written only after it succeeded.
        """
        rows = np.asarray(rows, dtype=np.int64)
        self.check_group_starts(rows, starts, "rows")
        allowed = self._allowed([(ids, ()) for ids in starts.ids])
        logits = self._forward(IncrementalLM.start, rows.tolist(), starts.ids)
        self._commit_starts(rows, starts, logits, allowed)

    def check_groups(self, rows: np.ndarray, argument: str) -> None:
        """Raise naming ``argument`` unless the sorted ``rows`` are whole groups."""
        k = self.group_size
        if k == 1:
            return
        whole = len(rows) % k == 0 and bool(
            (rows.reshape(-1, k) == rows[::k, None] + np.arange(k)).all()
            and (rows[::k] % k == 0).all()
        )
        if not whole:
            raise ValueError(
                f"{argument} select rows {rows.tolist()}, which split a group: with "
                f"group_size={k} rows start and step in whole groups (rows g*{k} to g*{k}+{k - 1})"
            )

    def check_group_starts(self, rows: np.ndarray, starts: PromptStarts, argument: str) -> None:
        """Raise naming ``argument`` unless ``rows`` are whole groups and ``starts`` (one per
        row) give each group one prompt."""
        self.check_groups(rows, argument)
        k = self.group_size
        for i in range(0, len(rows) if k > 1 else 0, k):
            for j in range(i + 1, i + k):
                if starts.ids[j] != starts.ids[i]:
                    raise ValueError(
                        f"{argument}: rows {rows[i]} and {rows[j]} are in one group "
                        f"(group_size={k}) but were given different prompts: expected one "
                        "prompt per group"
                    )

    def draw_prompts(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Prompt-set indices for ``count`` rows (whole groups): one draw per group from
        ``rng``, repeated for each of its rows."""
        draws = rng.integers(len(self.prompts), size=count // self.group_size)
        return np.repeat(draws, self.group_size)

    def _commit_starts(
        self,
        rows: np.ndarray,
        starts: PromptStarts,
        logits: torch.Tensor,
        allowed: torch.Tensor | None,
    ) -> None:
        self._set_next(rows, logits, allowed)
        self.input_ids[rows] = self._obs_pad
        self.attention_mask[rows] = 0
        for row, ids, text in zip(rows, starts.ids, starts.texts):
            self.input_ids[row, : len(ids)] = ids
            self.attention_mask[row, : len(ids)] = 1
            self.row_prompt[row] = text
        self.prompt_len[rows] = [len(ids) for ids in starts.ids]
        self.prompt_index[rows] = starts.indices
        self.gen_len[rows] = 0
        self.kl_sum[rows] = 0.0
        self.kl_rewards[rows] = 0.0
        self.exact_kl_sum[rows] = 0.0
        self.active[rows] = True
        self.idle[rows] = False
        groups = len(rows) // self.group_size
        self.group[rows] = self.groups_started + np.repeat(np.arange(groups), self.group_size)
        self.groups_started += groups
        self.started = True

    def _forward(self, run: Callable[..., Any], *args: Any) -> Any:
        """``run(kv, *args)`` on the KV-cached reference ``kv``; if it raises, the cache (perhaps
        updated in some layers and not in others) is dropped, to be rebuilt from the unchanged
        tokens."""
        kv = self._lm if self._lm is not None else self._kv()
        try:
            return run(kv, *args)
        except BaseException:
            self._lm = None
            raise

    def _kv(self) -> IncrementalLM:
        """The KV-cached reference over every row's tokens, rebuilt by one forward over each
        row's whole sequence when it was dropped (by pickling, or by a failed forward)."""
        if self._lm is None:
            kv = IncrementalLM(self.reference_model, self.num_rows, self.pad_token_id)
            if self.started:  # ended rows too: a partial start later needs every row cached
                lengths = self.prompt_len + self.gen_len
                sequences = [ids[:length].tolist() for ids, length in zip(self.input_ids, lengths)]
                kv.start(list(range(self.num_rows)), sequences)
            self._lm = kv
        return self._lm

    def check_started(self, what: str) -> None:
        """Raise naming ``what`` unless reset() has begun every row (before it nothing that
        reads the state of an episode has an answer)."""
        if not self.started:
            raise RuntimeError(f"{what} called before reset(): call reset() first")

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

    def _reference_logprobs(self, idx: np.ndarray) -> np.ndarray:
        """The reference's log-probs over the actions of rows ``idx``, ``(len(idx), A)``."""
        name = "cand_logprobs" if self.action_mode == "topk" else "next"
        if self._views is not None:
            return self._views[name][idx]
        source = self._cand_logprobs if name == "cand_logprobs" else self._next_logprobs
        return source[torch.as_tensor(idx, device=source.device)].float().cpu().numpy()

    def _allowed(self, states: list[tuple[Any, Any]]) -> torch.Tensor | None:
        """The constraint's allowed tokens of each ``(prompt_ids, generated_ids)`` state, a
        ``(len(states), V)`` bool tensor (None without a constraint)."""
        if self.constraint is None or not states:
            return None
        device = self._next_logprobs.device
        return allowed_masks(self.constraint, states, self.vocab_size, device)

    def _set_next(
        self, rows: np.ndarray, logits: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> None:
        """Store the reference's next-token distribution for ``rows`` (one log-softmax per
        step), renormalised over the ``allowed`` tokens when there is a constraint."""
        every = len(rows) == self.num_rows  # rows are sorted, so then they are all rows in order
        target = slice(None) if every else torch.as_tensor(rows, device=logits.device)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        self._next_logprobs[target] = torch.log_softmax(logits, dim=-1)  # (k, V)
        if self.action_mode == "topk":
            top = torch.topk(logits, self.top_k, dim=-1)
            self._cand_ids[target] = top.indices
            self._cand_logprobs[target] = torch.log_softmax(top.values, dim=-1)

    # ------------------------------------------------------------------ branches
    @property
    def signature(self) -> dict[str, Any]:
        """The settings that decide what a `TextGenState` becomes after `restore` (its
        observations, masks and the rewards its steps are paid), by name; a state is restored
        only where every one equals its own:

        - ``model`` (the tokenizer, which decodes the text the RM scores), ``reference_model``
          and ``dtype`` (the reference's name or path, and dtype), ``vocab_size``;
        - ``action_mode``, ``top_k``, ``top_p``: the actions, candidates and `action_masks`;
        - ``max_prompt_tokens``, ``max_new_tokens``: the sequence's shape and when it ends;
        - ``constraint`` (equal, or the same function);
        - ``kl_estimator``; ``kl_coef``, ``kl_target``, ``kl_horizon``: the KL controller as
          constructed. With ``kl_target`` beta moves as episodes end: the current beta is not
          compared, and the steps after a restore pay the restoring env's current beta;
        - ``reward_model`` (the same function or object, VADER, or the same HF model, label and
          ``include_prompt``), ``missing_eos_penalty``, and ``normalize_reward``: the gain and
          bias applied to RM scores, ``(1.0, 0.0)`` without normalisation.

        They are fixed at construction, so they are gathered once; each call returns a copy.
        """
        return dict(self._settings)

    @functools.cached_property
    def _settings(self) -> dict[str, Any]:
        ref = self.reference_model
        return {
            "model": str(self.tokenizer.name_or_path),
            "reference_model": str(ref.config.name_or_path),
            "dtype": str(ref.dtype),
            "vocab_size": self.vocab_size,
            "action_mode": self.action_mode,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_new_tokens": self.max_new_tokens,
            "constraint": self.constraint,
            "kl_estimator": self.kl_estimator,
            **self._kl_settings,
            "reward_model": _reward_model_key(self.reward_model),
            "missing_eos_penalty": self.missing_eos_penalty,
            "normalize_reward": (self.reward_gain, self.reward_bias),
        }

    def snapshot(self, row: int) -> TextGenState:
        """A copy of ``row``'s mid-episode state (see `TextGenState`)."""
        self.check_started("snapshot()")
        if not self.active[row] or self.idle[row]:
            raise RuntimeError(
                f"snapshot() of row {row}, whose text has ended: expected a row mid-episode "
                "(take the snapshot before the last step, or reset() first)"
            )
        cache = self._forward(IncrementalLM.snapshot, row)
        length, gen = int(self.prompt_len[row] + self.gen_len[row]), int(self.gen_len[row])
        return TextGenState(
            tokens=self.input_ids[row, :length].copy(),
            prompt_len=int(self.prompt_len[row]),
            prompt_index=int(self.prompt_index[row]),
            prompt=self.row_prompt[row],
            kl_rewards=self.kl_rewards[row, :gen].copy(),
            kl_sum=float(self.kl_sum[row]),
            exact_kl_sum=float(self.exact_kl_sum[row]),
            next_logprobs=self._next_logprobs[row].clone(),
            candidate_ids=self._cand_ids[row].clone(),
            candidate_logprobs=self._cand_logprobs[row].clone(),
            cache=cache,
            signature=self.signature,
        )

    def restore(self, rows: Sequence[int] | np.ndarray, state: TextGenState) -> None:
        """Continue ``state`` in each of ``rows`` (sorted), replacing what they held.

        Everything is checked before the first write: the state's settings against this env's
        (`signature`, every one that differs named), then its contents against this env's
        shapes and vocabulary; a refused restore changes nothing.

        :param rows: the rows that take the state (valid row indices, sorted).
        :param state: a `TextGenState` from `snapshot`, of this env or of one with its settings.
        """
        if not isinstance(state, TextGenState):
            raise TypeError(
                f"state={state!r} has type {type(state).__name__}: expected a TextGenState "
                "from snapshot()"
            )
        if self.group_size > 1:
            raise ValueError(
                f"restore() and fork() with group_size={self.group_size}: a group's rows start "
                "and end together, so a row cannot take another state; expected group_size=1"
            )
        self.check_started("restore()")
        differences = _setting_differences(state.signature, self._settings)
        if differences:
            raise ValueError(
                f"state was taken from an env with other settings ({'; '.join(differences)}): "
                "expected a state of an env with the same settings (see TextGenCore.signature)"
            )
        self._check_state(state)
        rows = np.asarray(rows, dtype=np.int64)
        # Commit. The cache's splice is the one write that can fail midway; then the cache is
        # dropped and rebuilt from the tokens, which are not yet written (see `_kv`).
        self._forward(IncrementalLM.restore, rows.tolist(), state.cache)
        device = self._next_logprobs.device
        self._next_logprobs[rows] = state.next_logprobs.to(device)
        self._cand_ids[rows] = state.candidate_ids.to(device)
        self._cand_logprobs[rows] = state.candidate_logprobs.to(device)
        length, gen = len(state.tokens), len(state.kl_rewards)
        self.input_ids[rows] = self._obs_pad
        self.input_ids[rows, :length] = state.tokens
        self.attention_mask[rows] = 0
        self.attention_mask[rows, :length] = 1
        self.prompt_len[rows] = state.prompt_len
        self.gen_len[rows] = gen
        self.prompt_index[rows] = state.prompt_index
        for row in rows:
            self.row_prompt[row] = state.prompt
        self.kl_rewards[rows] = 0.0
        self.kl_rewards[rows, :gen] = state.kl_rewards
        self.kl_sum[rows] = state.kl_sum
        self.exact_kl_sum[rows] = state.exact_kl_sum
        self.active[rows] = True
        self.idle[rows] = False

    def _check_state(self, state: TextGenState) -> None:
        """Raise ``ValueError`` naming the field unless ``state`` (of an env with this env's
        settings) holds a sequence mid-episode that fits this env's shapes and vocabulary, so
        that every write of `restore` but the cache's splice is a copy that cannot fail."""
        tokens, prompt_len, vocab = state.tokens, state.prompt_len, self.vocab_size
        if not (isinstance(tokens, np.ndarray) and tokens.ndim == 1 and tokens.dtype.kind in "iu"):
            raise ValueError(f"state.tokens={tokens!r}: expected a 1-D integer numpy array")
        fits = is_int(prompt_len) and 1 <= prompt_len <= self.max_prompt_tokens
        gen = len(tokens) - prompt_len if fits else -1
        if not 0 <= gen < self.max_new_tokens:
            raise ValueError(
                f"state holds {len(tokens)} tokens with prompt_len={prompt_len!r}: expected a "
                f"prompt of 1 to {self.max_prompt_tokens} tokens followed by 0 to "
                f"{self.max_new_tokens - 1} generated ones (an episode in progress)"
            )
        if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab):
            outside = tokens[(tokens < 0) | (tokens >= vocab)]
            raise ValueError(
                f"state.tokens hold the id(s) {outside[:8].tolist()}, outside the vocabulary: "
                f"expected token ids in [0, {vocab})"
            )
        k = self._cand_ids.shape[1]
        arrays = {  # name: (value, its type, shape, dtype kind, what it is)
            "kl_rewards": (state.kl_rewards, np.ndarray, (gen,), "f", "a KL reward per token"),
            "next_logprobs": (state.next_logprobs, torch.Tensor, (vocab,), "f", "log-probs"),
            "candidate_ids": (state.candidate_ids, torch.Tensor, (k,), "i", "token ids"),
            "candidate_logprobs": (state.candidate_logprobs, torch.Tensor, (k,), "f", "log-probs"),
        }
        for name, (value, kind, shape, dtype, what) in arrays.items():
            if not (
                isinstance(value, kind)
                and tuple(value.shape) == shape
                and _dtype_kind(value.dtype) == dtype
            ):
                got = f"{type(value).__name__} {getattr(value, 'dtype', '')}".rstrip()
                raise ValueError(
                    f"state.{name} is a {got} of shape {tuple(getattr(value, 'shape', ()))}: "
                    f"expected a {kind.__name__} of {'floats' if dtype == 'f' else 'ints'} of "
                    f"shape {shape} ({what}) in this env"
                )
        if self.action_mode == "topk":  # only there are the candidates read (as actions' tokens)
            low, high = torch.aminmax(state.candidate_ids)
            if int(low) < 0 or int(high) >= vocab:
                raise ValueError(
                    f"state.candidate_ids={state.candidate_ids.tolist()}: expected token ids in "
                    f"[0, {vocab})"
                )
        for name in ("kl_sum", "exact_kl_sum"):
            if not is_number(getattr(state, name)):
                raise ValueError(f"state.{name}={getattr(state, name)!r}: expected a number")
        cache = state.cache
        if not (
            isinstance(cache, CachedRow)
            and cache.mask.dim() == 1
            and cache.length == len(tokens)
            and len(cache.keys) == len(cache.values)
            and all(
                keys.dim() == 3 and keys.shape[1] == cache.mask.shape[0] and keys.shape == v.shape
                for keys, v in zip(cache.keys, cache.values)
            )
        ):
            raise ValueError(
                f"state.cache does not hold the keys and values of the state's {len(tokens)} "
                "tokens: expected the CachedRow snapshot() took with them"
            )
        index, prompt, count = state.prompt_index, state.prompt, len(self.prompts)
        if not isinstance(prompt, str):
            raise ValueError(f"state.prompt={prompt!r}: expected the prompt's text, a str")
        if not (is_int(index) and (index == -1 or (0 <= index < count))):
            raise ValueError(
                f"state.prompt_index={index!r}: expected -1 (a prompt given to reset) or an "
                f"index into this env's {count} prompts"
            )
        if index >= 0 and self._prompt_texts[index] != prompt:
            raise ValueError(
                f"state.prompt_index={index} is the prompt {self._prompt_texts[index]!r} in "
                f"this env, but the state's prompt is {prompt!r}: expected a state of an env "
                "with the same prompts"
            )

    def reset_info(self, rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The reset info of ``rows``, one value per row: ``prompt`` and ``prompt_index`` (the
        first two of `INFO_KEYS`, which every step repeats), and with groups ``group`` and
        ``idle`` (`GROUP_INFO_KEYS`)."""
        rows = np.asarray(rows, dtype=np.int64)
        info = {
            "prompt": np.array([self.row_prompt[row] for row in rows], dtype=object),
            "prompt_index": self.prompt_index[rows].copy(),
        }
        if self.group_size > 1:
            info["group"] = self.group[rows].copy()
            info["idle"] = self.idle[rows].copy()
        return info

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
        self.check_started("reference_logprobs()")
        index = slice(None) if rows is None else torch.as_tensor(np.asarray(rows))
        source = self._cand_logprobs if self.action_mode == "topk" else self._next_logprobs
        return _fresh(source[index])

    def action_masks(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` bool: the reference's top-k / top-p tokens (plus EOS in vocab mode,
        minus the special tokens that are not EOS and the ids beyond the tokenizer), and with
        a constraint only the tokens it allows (those alone when none of the others is). An
        idle row (see `GROUP_INFO_KEYS`) ignores its action: its mask allows action 0 alone."""
        self.check_started("action_masks()")
        mask = self._reference_masks(rows)
        if self.constraint is not None:  # the allowed tokens: those the reference can still draw
            index = slice(None) if rows is None else torch.as_tensor(np.asarray(rows))
            source = self._cand_logprobs if self.action_mode == "topk" else self._next_logprobs
            allowed = torch.isfinite(source[index]).cpu().numpy()
            mask &= allowed
            empty = ~mask.any(axis=1)
            mask[empty] = allowed[empty]
        idle = self.idle if rows is None else self.idle[np.asarray(rows, dtype=np.int64)]
        if idle.any():
            mask[idle] = False
            mask[idle, 0] = True
        return mask

    def _reference_masks(self, rows: Sequence[int] | np.ndarray | None) -> np.ndarray:
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
        self,
        actions: Any,
        rows: np.ndarray | None = None,
        argument: str = "action",
        *,
        batched: bool = True,
        restart: tuple[np.ndarray, PromptStarts] | None = None,
    ) -> StepResult:
        """Apply ``actions`` to the live ``rows`` (bool mask; default: all rows; with groups,
        whole groups), and begin new episodes in the ``restart`` rows (sorted, outside
        ``rows``) from their prompts.

        ``actions`` holds one action per row, each checked (a restarting or idle row's is then
        ignored); ``batched=False``: one action for the one row, a scalar. Nothing changes
        when this raises (a bad action, a failing scorer, RM or KL controller, a failed
        forward): what can fail runs before any state is written, a changed KL controller is
        restored, and a forward that fails midway drops the KV cache (see `_kv`).
        """
        n = self.num_rows
        idx = self._all_rows if rows is None else np.flatnonzero(np.asarray(rows, dtype=bool))
        if not self.active[idx].all():
            raise RuntimeError(
                "step() called on a sequence whose episode has ended (or never started): "
                "call reset() first"
            )
        self.check_groups(idx, "the stepped rows")
        acts = self._check_actions(actions, idx, argument, batched)
        grouped = self.group_size > 1
        # The rows that generate a token; idle rows (groups only) wait for their group.
        gen, acts = (idx[~self.idle[idx]], acts[~self.idle[idx]]) if grouped else (idx, acts)
        if self.action_mode == "topk":
            tokens = self._gather("cand_ids", gen, acts)
            ref_lp = self._gather("cand_logprobs", gen, acts).astype(np.float64)
        else:
            tokens = acts
            ref_lp = self._gather("next", gen, acts).astype(np.float64)
        if self.constraint is not None and not np.isfinite(ref_lp).all():
            bad = int(np.flatnonzero(~np.isfinite(ref_lp))[0])
            raise ValueError(
                f"{argument}={int(acts[bad])} in row {int(gen[bad])} is token {int(tokens[bad])}, "
                "which the constraint does not allow here: expected an action that "
                "action_masks() allows"
            )

        beta = self.kl_controller.value
        result = StepResult.empty(n, beta, scored=self.scorer is not None, grouped=grouped)
        result.prompt[:] = self.row_prompt
        result.prompt_index[:] = self.prompt_index
        result.ref_logprob[gen] = ref_lp
        kl = None
        if self.scorer is not None:
            exact = np.zeros(len(gen))
            pol_lp = ref_lp
            if gen.size:
                pol_all, probs = self._policy_logprobs(gen)
                ref_all = self._reference_logprobs(gen)
                if self.constraint is not None:
                    pol_all, probs = self._on_support(pol_all, np.isfinite(ref_all), gen)
                pol_lp = pol_all[np.arange(len(gen)), acts].astype(np.float64)
                exact = exact_kl(pol_all, ref_all, probs)
            kl = kl_estimate(pol_lp, ref_lp, self.kl_estimator)
            rewards = -beta * kl
            result.policy_logprob[gen] = pol_lp
            result.kl[gen] = kl
            result.episode_kl[idx] = self.kl_sum[idx]
            result.episode_kl[gen] += kl
            result.exact_kl[gen] = exact
            result.episode_exact_kl[idx] = self.exact_kl_sum[idx]
            result.episode_exact_kl[gen] += exact
        else:
            if gen.size:
                self._warn_no_scorer()
            rewards = beta * ref_lp

        result.kl_reward[gen] = rewards
        gen_len = self.gen_len[gen] + 1
        hit_eos = tokens == self.eos_token_id
        ended = hit_eos | (gen_len >= self.max_new_tokens)
        going = gen[~ended]
        step_rewards = np.zeros(n)
        step_rewards[gen] = rewards
        if grouped:  # an episode ends when every text of its group has ended
            done_rows, newly_idle, last, eos = self._group_ends(gen, tokens, ended, hit_eos)
        else:  # an episode ends with its text
            done_rows, newly_idle = gen[ended], gen[:0]
            last, eos = tokens[ended], hit_eos[ended]
        if done_rows.size:
            step_rewards[done_rows] += self._finish(done_rows, last, eos, result)
        result.rewards[idx] = step_rewards[idx]
        result.terminated[done_rows] = True
        adapt = kl is not None and done_rows.size > 0
        episode_kl = result.episode_kl[done_rows] if adapt else None

        # The constraint's allowed tokens of the new states (a user function: before any write).
        going_allowed = restart_allowed = None
        if self.constraint is not None:
            states = []
            for row, token in zip(going.tolist(), tokens[~ended].tolist()):
                prompt, generated = self._sequence(row)
                states.append((prompt, [*generated.tolist(), token]))
            going_allowed = self._allowed(states)
            if restart is not None:
                restart_allowed = self._allowed([(ids, ()) for ids in restart[1].ids])

        # State changes that can fail: the KL controller (restored if anything below fails),
        # then the forwards (a failed one drops the KV cache).
        controller = vars(self.kl_controller).copy() if adapt else None
        next_logits = restart_logits = None
        try:
            if adapt:
                self.kl_controller.update(float(episode_kl.mean()), len(done_rows))
            if going.size or restart is not None:
                next_logits, restart_logits = self._forward(
                    self._step_forwards, gen, tokens, going, restart
                )
        except BaseException:
            if controller is not None:
                vars(self.kl_controller).clear()
                vars(self.kl_controller).update(controller)
            raise

        # Commit: plain writes that cannot fail.
        positions = self.prompt_len[gen] + self.gen_len[gen]
        self.input_ids[gen, positions] = tokens
        self.attention_mask[gen, positions] = 1
        self.gen_len[gen] = gen_len
        self.kl_rewards[gen, gen_len - 1] = rewards
        if kl is not None:
            self.kl_sum[gen] += kl
            self.exact_kl_sum[gen] += exact
        self.active[done_rows] = False
        self.idle[done_rows] = False
        self.idle[newly_idle] = True
        if grouped:
            self.ended_eos[gen[ended]] = hit_eos[ended]
        if self.action_mode == "topk":
            self._end_candidates(np.union1d(done_rows, newly_idle) if grouped else done_rows)
        if grouped:
            result.group[:] = self.group
            result.idle[:] = self.idle
        if adapt:
            self._check_kl_sign(episode_kl)
        if going.size:
            self._set_next(going, next_logits, going_allowed)
        if restart is not None:
            self._commit_starts(*restart, restart_logits, restart_allowed)
        return result

    def _group_ends(
        self, gen: np.ndarray, tokens: np.ndarray, ended: np.ndarray, hit_eos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """With groups, after rows ``gen`` append ``tokens`` (their texts ``ended`` now, with
        ``hit_eos``): the rows whose group ends (every text of it has), the rows that turn
        idle, and for the ending rows the token each appends now (-1 for idle ones) and
        whether its text ended with EOS."""
        text_over = self.idle.copy()
        text_over[gen[ended]] = True
        eos = self.ended_eos.copy()
        eos[gen[ended]] = hit_eos[ended]
        k = self.group_size
        done = np.repeat(text_over.reshape(-1, k).all(1), k) & self.active
        done_rows = np.flatnonzero(done)
        last = np.full(self.num_rows, -1, dtype=np.int64)
        last[gen] = tokens
        return done_rows, gen[ended & ~done[gen]], last[done_rows], eos[done_rows]

    def _sequence(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``row``'s prompt ids and generated ids."""
        start = int(self.prompt_len[row])
        return self.input_ids[row, :start], self.input_ids[row, start : start + self.gen_len[row]]

    def _on_support(
        self, pol_all: np.ndarray, support: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The policy's log-probs renormalised over the constraint's ``support`` (and their
        exponentials): the distribution a policy masked to the allowed tokens samples from."""
        with np.errstate(divide="ignore"):
            probs = np.where(support, np.exp(pol_all), 0.0)
            mass = probs.sum(axis=1, keepdims=True, dtype=np.float64)
            if not (mass > 0).all():
                row = int(rows[np.flatnonzero(mass[:, 0] <= 0)[0]])
                raise ScorerError(
                    f"the policy scorer {self.scorer!r} gives the tokens the constraint allows "
                    f"in row {row} no probability: expected some mass on them"
                )
            logprobs = np.where(support, pol_all - np.log(mass), -np.inf)
        return logprobs.astype(np.float32), (probs / mass).astype(np.float32)

    def _step_forwards(
        self,
        kv: IncrementalLM,
        gen: np.ndarray,
        tokens: np.ndarray,
        going: np.ndarray,
        restart: tuple[np.ndarray, PromptStarts] | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The forwards of a step: ``tokens`` (of rows ``gen``) fed to the rows still
        ``going``, then the prompts of the ``restart`` rows; the next logits of each."""
        logits = None
        if going.size == self.num_rows:
            logits = kv.advance(torch.from_numpy(tokens))
        elif going.size:
            feed = np.full(self.num_rows, self._obs_pad, dtype=np.int64)
            feed[gen] = tokens
            step_rows = np.zeros(self.num_rows, dtype=bool)
            step_rows[going] = True
            logits = kv.advance(torch.from_numpy(feed), step_rows)
            logits = logits[torch.as_tensor(going, device=logits.device)]
        if restart is None:
            return logits, None
        rows, starts = restart
        return logits, kv.start(rows.tolist(), starts.ids)

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

    def _finish(self, rows, last_tokens, hit_eos, result: StepResult) -> np.ndarray:
        """The RM part of the reward (and final info) of the rows whose episodes end on this
        step: their texts, plus ``last_tokens`` (-1: none, an idle row's text is complete), are
        decoded here, once per episode; ``hit_eos``: whether each ended with EOS."""
        texts = []
        for row, token in zip(rows, last_tokens):
            start = self.prompt_len[row]
            generated = self.input_ids[row, start : start + self.gen_len[row]].tolist()
            texts.append(generated + [int(token)] if token >= 0 else generated)
        texts = self.tokenizer.batch_decode(texts, skip_special_tokens=True)
        # The prompts as the policy saw them (cut, chat-rendered): the RM judges that context.
        prompts = [self.row_prompt[row] for row in rows]
        raw = checked_score(self.reward_model, prompts, texts)
        scores = self.reward_gain * raw + self.reward_bias
        penalties = self.missing_eos_penalty * (~hit_eos)
        result.rm_score[rows] = scores
        result.eos_penalty[rows] = penalties
        result.text[rows] = texts
        return scores - penalties

    def _end_candidates(self, rows: np.ndarray) -> None:
        """A terminal state has no next token: in ``"topk"`` mode its candidates are the padding
        id of ``input_ids``, with log-prob 0.0 (never the previous state's)."""
        target = torch.as_tensor(rows, device=self._cand_ids.device)
        self._cand_ids[target] = self._obs_pad
        self._cand_logprobs[target] = 0.0

    def _check_actions(
        self, actions: Any, idx: np.ndarray, argument: str, batched: bool
    ) -> np.ndarray:
        """The actions of rows ``idx`` as int64; every row's action is checked, stepped or not."""
        if type(actions) is int and not batched and 0 <= actions < self.num_actions:
            return np.array([actions], dtype=np.int64)  # the common single-env case, fast
        arr = np.asarray(actions)
        expected = f"an integer in [0, {self.num_actions})"
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(
                f"{argument}={actions!r} has type {type(actions).__name__} ({arr.dtype}): "
                f"expected {expected}"
            )
        shape = (self.num_rows,) if batched else ()
        if arr.shape != shape:
            raise ValueError(
                f"{argument}={actions!r} has shape {arr.shape}: expected "
                + (f"shape {shape} with {expected} per row" if batched else f"{expected}, a scalar")
            )
        arr = arr.reshape(self.num_rows)
        if ((arr < 0) | (arr >= self.num_actions)).any():
            raise ValueError(f"{argument}={actions!r} is out of range: expected {expected}")
        return arr[idx].astype(np.int64)

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
            token = sample_tokens(logits, generator=generator)
            token[finished] = self.pad_token_id
            generated[:, t] = token
            finished |= token == self.eos_token_id
            if finished.all() or t == self.max_new_tokens - 1:
                break
            logits = scorer.advance(token)
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        scores = checked_score(self.reward_model, [self._prompt_texts[i] for i in picks], texts)
        std = float(scores.std())
        if std < 1e-8:
            raise ValueError(
                "normalize_reward=True: the reference policy's samples all score "
                f"{scores.mean():.4g}, so no gain can make their std 1"
            )
        return 1.0 / std, -float(scores.mean()) / std

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and deepcopy) everything but the KV cache, which the copy rebuilds from the
        token ids, and the numpy views. The scorer is kept when it pickles; when it does not,
        the copy has none (so its rewards take the reference-only form), with a warning."""
        state = self.__dict__.copy()
        state["_views"] = None
        state["_lm"] = None
        if self.scorer is not None and not self._scorer_pickles():
            state["scorer"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_host_views()

    def _scorer_pickles(self) -> bool:
        """Whether the scorer pickles, or else a warning. Tried on its own, with this core
        standing in for itself (a scorer bound to the env, like `ReferencePolicy`, pickles
        it along), and written nowhere."""
        core = self

        class Probe(pickle.Pickler):
            def persistent_id(self, obj: Any) -> Any:
                return "core" if obj is core else None

        try:
            Probe(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(self.scorer)
        except Exception as err:
            warnings.warn(
                f"the policy scorer {self.scorer!r} cannot be pickled ({type(err).__name__}: "
                f"{err}), so the copy of the env has no scorer: its KL step reward takes the "
                "reference-only form r_t = kl_coef * log pi_ref(a_t|s_t) until a scorer is "
                "attached with attach_policy()",
                UserWarning,
                stacklevel=3,
            )
            return False
        return True


def core_of(env: Any) -> TextGenCore | None:
    """The `TextGenCore` behind a TextGen env (single, vector, or another library's adapter,
    wrapped or not: ``env.unwrapped`` is the innermost one), or None for any other env."""
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    return core if isinstance(core, TextGenCore) else None


class _Discard(io.RawIOBase):
    """A file that forgets what is written to it."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _option_entries(
    options: Mapping[str, Any], key: str, count: int, per_row: bool, is_one: Callable[[Any], bool]
) -> list[tuple[str, Any]]:
    """``options[key]`` as ``count`` entries ``(name, value)``, one per row: a single value
    (``is_one``) applies to every row; with ``per_row`` a list of ``count`` gives one each."""
    value, name = options[key], f"options[{key!r}]"
    if per_row and not is_one(value) and isinstance(value, list | tuple | np.ndarray):
        if len(value) != count:
            raise ValueError(
                f"{name}={value!r} has {len(value)} entries: expected one per row ({count}), "
                "or a single one for every row"
            )
        return [(f"{name}[{i}]", entry) for i, entry in enumerate(value)]
    return [(name, value)] * count


def _reward_model_key(model: RewardModel) -> Any:
    """What makes two reward models score alike, for `TextGenCore.signature`: the function a
    callable wraps, VADER (it has no settings), an HF model's path, label and
    ``include_prompt``; any other reward model is compared as itself (``==``)."""
    if isinstance(model, CallableRewardModel):
        return model.fn
    if isinstance(model, VaderSentiment):
        return "VaderSentiment"
    if isinstance(model, HFRewardModel):
        return ("HFRewardModel", model.name, model.label, model.include_prompt)
    return model


def _setting_differences(theirs: Any, ours: Mapping[str, Any]) -> list[str]:
    """``"name: the state's X, this env's Y"`` for each setting in which the signature
    ``theirs`` (a state's) differs from ``ours``."""
    if not isinstance(theirs, Mapping):
        return [f"signature={theirs!r}, expected a dict of settings like {list(ours)}"]
    if theirs == ours:  # the common case, at the cost of one comparison
        return []

    def shown(settings: Mapping[str, Any], key: str) -> str:
        return repr(settings[key]) if key in settings else "none"

    return [
        f"{key}: the state's {shown(theirs, key)}, this env's {shown(ours, key)}"
        for key in [*ours, *(key for key in theirs if key not in ours)]
        if key not in theirs or key not in ours or theirs[key] != ours[key]
    ]


def _dtype_kind(dtype: np.dtype | torch.dtype) -> str:
    """A numpy or torch dtype's kind: ``"f"`` floats, ``"i"`` integers, ``"b"`` bools, ``"c"``
    complex numbers."""
    if isinstance(dtype, torch.dtype):
        if dtype == torch.bool:
            return "b"
        return "f" if dtype.is_floating_point else "c" if dtype.is_complex else "i"
    kind = np.dtype(dtype).kind
    return "i" if kind == "u" else kind


def _fresh(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy that shares no memory with the env's state (``.numpy()`` alone would)."""
    return tensor.cpu().numpy().copy()


def _nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest prefix of descending ``sorted_probs`` whose mass reaches ``top_p``."""
    if top_p >= 1.0:  # everything, though a float32 cumsum can reach 1 before the tail
        return torch.ones_like(sorted_probs, dtype=torch.bool)
    before = sorted_probs.cumsum(-1) - sorted_probs
    return before < top_p


def exact_kl(
    policy_logprobs: np.ndarray, ref_logprobs: np.ndarray, probs: np.ndarray | None = None
) -> np.ndarray:
    """``KL(pi || pi_ref)`` per row, ``sum_a pi(a) (log pi(a) - log pi_ref(a))``, over the
    last axis (actions pi gives no mass add nothing; mass where pi_ref has none makes it inf).

    :param probs: ``exp(policy_logprobs)`` when the caller has it (saves a pass over B x A).
    """
    probs = np.exp(policy_logprobs) if probs is None else probs
    with np.errstate(invalid="ignore"):
        terms = np.where(probs > 0, probs * (policy_logprobs - ref_logprobs), 0.0)
    return terms.sum(axis=-1, dtype=np.float64)
