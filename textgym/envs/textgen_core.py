"""The batched TextGen core: N sequences advanced by one KV-cached forward of the reference.

`TextGenEnv` (one sequence) and the vector adapters are thin views over this class, so the
reward semantics live in exactly one place. The core composes parts with one job each:

- `textgen_rows`: the rows' sequences, what their episodes earned so far, their texts;
- `textgen_forwards`: the reference's KV cache over the rows and the forwards run on it;
- `textgen_prompts`: the prompt set, encoded once, and the prompts episodes start from;
- `textgen_groups`: rows in groups that share a prompt, idle rows, when episodes end;
- `textgen_scoring`: the reference's and the policy's log-probs over the action space, a
  constraint's support, action masks and the exact KL;
- `textgen_reward`: the KL penalty and the reward model's score;
- `textgen_branches`: `TextGenState` (snapshot, restore, fork) and its signature;
- `textgen_spaces`: the observation space and the check of actions;
- `textgen_infos`: the info keys and `StepResult`.

``step`` walks an action through the parts: check, score, decide ends, advance the cache,
commit. What stays here (about 600 lines) is that composition, one concept that reads better
whole: the constructor (20 arguments checked, then the models loaded, then the parts built),
the methods the envs call, each a line or two into a part, ``restore``'s checks around the
parts' writes, and ``step``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from textgym._checks import check_int, check_number
from textgym.constraints import Constraint
from textgym.envs.textgen_branches import TextGenState, check_state, signature_of
from textgym.envs.textgen_forwards import ReferenceForwards, check_reference_fits
from textgym.envs.textgen_groups import Ends, Groups
from textgym.envs.textgen_infos import GROUP_INFO_KEYS, INFO_KEYS, SCORER_INFO_KEYS, StepResult
from textgym.envs.textgen_prompts import RESET_OPTIONS, PromptSet, PromptStarts
from textgym.envs.textgen_reward import KLPenalty, KLStep, normalisation, terminal_rewards
from textgym.envs.textgen_rows import Rows
from textgym.envs.textgen_scoring import (
    ACTION_MODES,
    PolicyScorer,
    ReferenceScores,
    ScorerError,
    check_action_settings,
    checked_logprobs,
    exact_kl,
    scorer_pickles,
)
from textgym.envs.textgen_spaces import check_actions, observation_space
from textgym.kv_cache import IncrementalLM
from textgym.lm import load_causal_lm, load_tokenizer
from textgym.prompts import Prompt
from textgym.reference import sample_tokens
from textgym.rewards import RewardModel, resolve_reward_model

__all__ = [  # the names other modules import from here
    "ACTION_MODES",
    "GROUP_INFO_KEYS",
    "INFO_KEYS",
    "RESET_OPTIONS",
    "SCORER_INFO_KEYS",
    "PolicyScorer",
    "PromptStarts",
    "ScorerError",
    "StepResult",
    "TextGenCore",
    "TextGenState",
    "core_of",
    "exact_kl",
]


def _part(part: str, name: str, doc: str | None = None) -> property:
    """A core attribute held by one of its parts: ``core.<attribute>`` is ``core.<part>.<name>``,
    read and written through."""
    return property(
        lambda core: getattr(getattr(core, part), name),
        lambda core, value: setattr(getattr(core, part), name, value),
        doc=doc,
    )


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
        # The settings, checked before a model loads.
        self.groups = Groups(num_rows, group_size)
        check_int("max_new_tokens", max_new_tokens, low=1)
        check_int("max_prompt_tokens", max_prompt_tokens, low=1)
        check_action_settings(action_mode, top_k, top_p, constraint)
        self.kl_penalty = KLPenalty(kl_coef, kl_estimator, kl_target, kl_horizon)
        check_number("missing_eos_penalty", missing_eos_penalty)
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
        self.action_mode = action_mode
        self.top_k = top_k
        self.top_p = float(top_p)
        self.missing_eos_penalty = float(missing_eos_penalty)
        self.constraint = constraint
        self.kl_controller = self.kl_penalty.controller()

        # The models, the reward model and the prompts.
        self.tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
        self.reference_model = load_causal_lm(
            reference_model if reference_model is not None else model,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            argument="reference_model" if reference_model is not None else "model",
        )
        self.vocab_size = check_reference_fits(
            self.reference_model, self.tokenizer, top_k, max_prompt_tokens, max_new_tokens
        )
        self.eos_token_id = int(self.tokenizer.eos_token_id)
        self.pad_token_id = int(self.tokenizer.pad_token_id)
        self.reward_model: RewardModel = resolve_reward_model(reward_model)
        self.prompt_set = PromptSet(prompts, self.tokenizer, max_prompt_tokens)

        # The spaces, the policy scorer and the rows' state.
        self.num_actions = top_k if action_mode == "topk" else self.vocab_size
        self.seq_len = max_prompt_tokens + max_new_tokens
        self.observation_space = observation_space(
            self.seq_len, self.vocab_size, action_mode, top_k
        )
        self.action_space = spaces.Discrete(self.num_actions)
        self.scorer: PolicyScorer | None = None
        # The rows being stepped while the scorer runs (None otherwise): lets a scorer bound to
        # this core (the reference policy) answer from state the env already holds.
        self.scoring_rows: np.ndarray | None = None
        self.reward_gain, self.reward_bias = 1.0, 0.0
        self.rows = Rows(num_rows, self.seq_len, max_new_tokens, self._obs_pad)
        self.forwards = ReferenceForwards(self.reference_model, self.rows, self.pad_token_id)
        self._all_rows = np.arange(num_rows)
        # Ids that are not text: special tokens but EOS (pad, bos, ...) and ids beyond the
        # tokenizer. They stay legal actions; action_masks() never offers them.
        not_text = set(self.tokenizer.all_special_ids) - {self.eos_token_id, None}
        not_text.update(range(len(self.tokenizer), self.vocab_size))
        self.scores = ReferenceScores(
            num_rows,
            self.vocab_size,
            action_mode=action_mode,
            top_k=top_k,
            top_p=self.top_p,
            constraint=constraint,
            not_text=not_text,
            eos_token_id=self.eos_token_id,
            pad=self._obs_pad,
            device=self.reference_model.device,
        )
        if normalize_reward:
            samples = self._reference_samples()
            self.reward_gain, self.reward_bias = normalisation(self.reward_model, *samples)

    # ------------------------------------------------------------------ the parts' state
    # Read (and written) through the core by the envs, agents, tests and benchmarks/.
    prompts = _part("prompt_set", "prompts", "The prompt set.")
    _prompt_ids = _part("prompt_set", "ids")
    input_ids = _part("rows", "input_ids", "``(N, L)`` int64: each row's prompt and tokens.")
    attention_mask = _part("rows", "attention_mask", "``(N, L)`` int64: 1 on each row's tokens.")
    prompt_len = _part("rows", "prompt_len", "``(N,)`` int64: each row's prompt length.")
    gen_len = _part("rows", "gen_len", "``(N,)`` int64: each row's generated tokens so far.")
    prompt_index = _part("rows", "prompt_index", "``(N,)`` int64: as in ``info['prompt_index']``.")
    row_prompt = _part("rows", "row_prompt", "Each row's prompt, as in ``info['prompt']``.")
    active = _part("rows", "active", "``(N,)`` bool: the rows whose episode is live.")
    started = _part("rows", "started", "Whether reset() began every row once.")
    kl_sum = _part("rows", "kl_sum", "``(N,)`` float64: each episode's summed KL so far.")
    kl_rewards = _part("rows", "kl_rewards", "``(N, T)`` float32: the KL reward of each token.")
    exact_kl_sum = _part("rows", "exact_kl_sum", "``(N,)`` float64: the summed exact KL so far.")
    idle = _part("groups", "idle", "``(N,)`` bool: rows whose text ended, their group's not.")
    ended_eos = _part("groups", "ended_eos", "``(N,)`` bool: whether an idle row's text hit EOS.")
    group = _part("groups", "group", "``(N,)`` int64: each row's group episode id.")
    groups_started = _part("groups", "started", "The group episodes begun so far.")
    _next_logprobs = _part("scores", "next_logprobs")
    _cand_ids = _part("scores", "cand_ids")
    _cand_logprobs = _part("scores", "cand_logprobs")
    _recent_kl = _part("kl_penalty", "recent")
    _lm = _part("forwards", "lm")
    _forward = _part("forwards", "run")

    def _set_next(self, rows: np.ndarray, logits: torch.Tensor) -> None:
        self.scores.set_next(rows, logits)

    def _check_kl_sign(self, episode_kl: np.ndarray) -> None:
        self.kl_penalty.check_sign(episode_kl)

    # ------------------------------------------------------------------ spaces and scorer
    @property
    def _obs_pad(self) -> int:
        return self.pad_token_id if self.pad_token_id < self.vocab_size else self.eos_token_id

    def attach_policy(self, scorer: PolicyScorer | None) -> None:
        """Use ``scorer`` for log pi in the KL reward (``None`` detaches it); see `PolicyScorer`."""
        if scorer is not None and not callable(scorer):
            raise TypeError(
                f"scorer={scorer!r} is not callable: expected scorer(obs) -> log-probs [B, A]"
            )
        self.scorer = scorer

    def _policy_scores(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log pi over the actions ``(len(rows), A)`` from the attached scorer (checked, and on
        a constraint's support), pi itself, and log pi_ref over the actions."""
        self.scoring_rows = rows
        try:
            out = self.scorer(self.observe(rows))
        except Exception as err:
            raise ScorerError(f"the policy scorer {self.scorer!r} raised: {err!r}") from err
        finally:
            self.scoring_rows = None
        pol_all, probs = checked_logprobs(self.scorer, out, (len(rows), self.num_actions))
        ref_all = self.scores.over_actions(rows)
        pol_all, probs = self.scores.on_support(pol_all, probs, ref_all, rows, self.scorer)
        return pol_all, probs, ref_all

    # ------------------------------------------------------------------ episodes
    def prompt_starts(self, indices: Sequence[int] | np.ndarray) -> PromptStarts:
        """The prompts of the prompt set at ``indices`` (valid indices, as drawn by an env)."""
        return self.prompt_set.starts(indices)

    def reset_starts(
        self, options: Mapping[str, Any], count: int, per_row: bool
    ) -> PromptStarts | None:
        """The prompts ``reset(options=...)`` asks for (see `PromptSet.from_options`)."""
        return self.prompt_set.from_options(options, count, per_row)

    def draw_prompts(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Prompt-set indices for ``count`` rows (whole groups): one draw per group from
        ``rng``, repeated for each of its rows."""
        return self.prompt_set.draw(rng, count, self.group_size)

    def check_groups(self, rows: np.ndarray, argument: str) -> None:
        """Raise naming ``argument`` unless the sorted ``rows`` are whole groups."""
        self.groups.check(rows, argument)

    def check_group_starts(self, rows: np.ndarray, starts: PromptStarts, argument: str) -> None:
        """Raise naming ``argument`` unless ``rows`` are whole groups and ``starts`` (one per
        row) give each group one prompt."""
        self.groups.check_starts(rows, starts, argument)

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
            starts = self.prompt_set.given(prompt_texts, ["prompt"] * len(prompt_texts))
        else:
            starts = self.prompt_starts(prompt_indices)
        self.begin(rows, starts)

    def begin(self, rows: Sequence[int] | np.ndarray, starts: PromptStarts) -> None:
        """Begin a new episode in each of ``rows`` (sorted) from ``starts``, one per row
        (with groups: whole groups, one prompt per group).

        Nothing changes when this raises: a forward that fails midway drops the KV cache (see
        `textgen_forwards`), and the rows' state is written only after it succeeded.
        """
        rows = np.asarray(rows, dtype=np.int64)
        self.groups.check_starts(rows, starts, "rows")
        allowed = self.scores.allowed([(ids, ()) for ids in starts.ids])
        logits = self.forwards.run(IncrementalLM.start, rows.tolist(), starts.ids)
        self._commit_starts(rows, starts, logits, allowed)

    def _commit_starts(
        self,
        rows: np.ndarray,
        starts: PromptStarts,
        logits: torch.Tensor,
        allowed: torch.Tensor | None,
    ) -> None:
        self.scores.set_next(rows, logits, allowed)
        self.rows.start(rows, starts)
        self.groups.begin(rows)

    def check_started(self, what: str) -> None:
        """Raise naming ``what`` unless reset() has begun every row (before it nothing that
        reads the state of an episode has an answer)."""
        if not self.started:
            raise RuntimeError(f"{what} called before reset(): call reset() first")

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
        return signature_of(self)

    def snapshot(self, row: int) -> TextGenState:
        """A copy of ``row``'s mid-episode state (see `TextGenState`)."""
        self.check_started("snapshot()")
        if not self.active[row] or self.idle[row]:
            raise RuntimeError(
                f"snapshot() of row {row}, whose text has ended: expected a row mid-episode "
                "(take the snapshot before the last step, or reset() first)"
            )
        cache = self.forwards.run(IncrementalLM.snapshot, row)
        return TextGenState(
            **self.rows.snapshot(row),
            **self.scores.snapshot(row),
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
        check_state(
            state,
            self._settings,
            vocab_size=self.vocab_size,
            max_prompt_tokens=self.max_prompt_tokens,
            max_new_tokens=self.max_new_tokens,
            candidates=self.scores.cand_ids.shape[1],
            topk=self.action_mode == "topk",
            prompt_texts=self.prompt_set.texts,
        )
        rows = np.asarray(rows, dtype=np.int64)
        # Commit. The cache's splice is the one write that can fail midway; then the cache is
        # dropped and rebuilt from the tokens, which are not yet written (see `textgen_forwards`).
        self.forwards.run(IncrementalLM.restore, rows.tolist(), state.cache)
        self.scores.restore(
            rows, state.next_logprobs, state.candidate_ids, state.candidate_logprobs
        )
        self.rows.restore(rows, state)

    # ------------------------------------------------------------------ what the envs read
    def reset_info(self, rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The reset info of ``rows``, one value per row: ``prompt`` and ``prompt_index`` (the
        first two of `INFO_KEYS`, which every step repeats), and with groups ``group`` and
        ``idle`` (`GROUP_INFO_KEYS`)."""
        rows = np.asarray(rows, dtype=np.int64)
        return {**self.rows.info(rows), **self.groups.info(rows)}

    def observe(
        self, rows: int | Sequence[int] | np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Fresh copies of the observations of ``rows`` (all rows by default), batched; an int
        ``rows`` gives one row's observation, unbatched."""
        index = slice(None) if rows is None else rows if isinstance(rows, int) else np.asarray(rows)
        return {**self.rows.observe(index), **self.scores.observe(index)}

    def reference_logprobs(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` float32: the reference policy's log-probs over the action space now.

        In ``"topk"`` mode they are renormalised over the candidates. Sampling from them acts
        as the reference policy; as a policy scorer they make every KL step reward 0.
        """
        self.check_started("reference_logprobs()")
        return self.scores.logprobs(rows)

    def action_masks(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` bool: the reference's top-k / top-p tokens (plus EOS in vocab mode,
        minus the special tokens that are not EOS and the ids beyond the tokenizer), and with
        a constraint only the tokens it allows (those alone when none of the others is). An
        idle row (see `GROUP_INFO_KEYS`) ignores its action: its mask allows action 0 alone."""
        self.check_started("action_masks()")
        mask = self.scores.masks(rows)
        self.groups.mask_idle(mask, rows)
        return mask

    # ------------------------------------------------------------------ step
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
        restored, and a forward that fails midway drops the KV cache (see `textgen_forwards`).
        """
        # Check: the rows are live (whole groups), the actions valid; the tokens they append.
        idx = self._all_rows if rows is None else np.flatnonzero(np.asarray(rows, dtype=bool))
        self._check_live(idx)
        acts = check_actions(actions, idx, self.num_rows, self.num_actions, argument, batched)
        gen, acts = self.groups.generating(idx, acts)  # idle rows wait for their group
        tokens, ref_lp = self.scores.chosen(gen, acts, argument)

        # Score: the KL part of the reward, from log pi_ref and the scorer's log pi.
        beta = self.kl_controller.value
        result = StepResult.empty(
            self.num_rows, beta, scored=self.scorer is not None, grouped=self.groups.grouped
        )
        self.rows.report(result)
        result.ref_logprob[gen] = ref_lp
        policy = self._policy_scores if self.scorer is not None else None
        kl = self.kl_penalty.score(beta, gen, acts, ref_lp, policy)
        self.kl_penalty.report(kl, result, idx, gen, self.rows.kl_sum, self.rows.exact_kl_sum)

        # Decide ends: a text ends with EOS or at max_new_tokens, an episode with its group's
        # texts; the RM scores the episodes that end, and the next states' allowed tokens.
        gen_len = self.rows.gen_len[gen] + 1
        hit_eos = tokens == self.eos_token_id
        ended = hit_eos | (gen_len >= self.max_new_tokens)
        going = gen[~ended]
        ends = self.groups.ends(self.rows.active, gen, tokens, ended, hit_eos)
        self._reward(idx, gen, kl, ends, result)
        going_allowed, restart_allowed = self._next_allowed(going, tokens, ended, restart)

        # Advance the cache (and the KL controller, put back if a forward fails).
        episode_kl = self.kl_penalty.finished(result, ends.done)
        next_logits, restart_logits = self._advance(gen, tokens, going, restart, episode_kl)

        # Commit: plain writes that cannot fail.
        self.rows.append(gen, tokens, gen_len, kl.rewards)
        self.kl_penalty.add(kl, gen, self.rows.kl_sum, self.rows.exact_kl_sum)
        self.rows.end(ends.done)
        self.groups.commit(ends, gen, ended, hit_eos)
        self.scores.end_candidates(ends)
        self.groups.report(result)
        self.kl_penalty.check_sign(episode_kl)
        if going.size:
            self.scores.set_next(going, next_logits, going_allowed)
        if restart is not None:
            self._commit_starts(*restart, restart_logits, restart_allowed)
        return result

    def _check_live(self, idx: np.ndarray) -> None:
        if not self.rows.active[idx].all():
            raise RuntimeError(
                "step() called on a sequence whose episode has ended (or never started): "
                "call reset() first"
            )
        self.groups.check(idx, "the stepped rows")

    def _reward(
        self, idx: np.ndarray, gen: np.ndarray, kl: KLStep, ends: Ends, result: StepResult
    ) -> None:
        """The step's reward of the stepped rows ``idx`` into ``result``: the KL part of the
        generating rows ``gen``, plus the RM part of the episodes that end (and their final
        info): their texts, with the token each appends now, are decoded here, once per
        episode."""
        step_rewards = np.zeros(self.num_rows)
        step_rewards[gen] = kl.rewards
        rows = ends.done
        if rows.size:
            prompts, texts = self.rows.finished(rows, ends.last, self.tokenizer)
            normalised = (self.reward_gain, self.reward_bias)
            scores, penalties = terminal_rewards(
                self.reward_model, prompts, texts, ends.eos, normalised, self.missing_eos_penalty
            )
            result.rm_score[rows] = scores
            result.eos_penalty[rows] = penalties
            result.text[rows] = texts
            step_rewards[rows] += scores - penalties
        result.rewards[idx] = step_rewards[idx]
        result.terminated[rows] = True

    def _next_allowed(
        self,
        going: np.ndarray,
        tokens: np.ndarray,
        ended: np.ndarray,
        restart: tuple[np.ndarray, PromptStarts] | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The constraint's allowed tokens of the next states (None without a constraint): of
        the rows still ``going`` after appending their ``tokens`` (those of the texts not
        ``ended``), and of the ``restart`` prompts.
        A user function, so it runs before any write."""
        if self.constraint is None:
            return None, None
        states = self.rows.next_states(going, tokens[~ended])
        if restart is None:
            return self.scores.allowed(states), None
        return self.scores.allowed(states), self.scores.allowed(
            [(ids, ()) for ids in restart[1].ids]
        )

    def _advance(
        self,
        gen: np.ndarray,
        tokens: np.ndarray,
        going: np.ndarray,
        restart: tuple[np.ndarray, PromptStarts] | None,
        episode_kl: np.ndarray | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The state changes that can fail: the KL controller's update with the ``episode_kl``
        of the episodes that end (put back if anything here fails), then the forwards (a
        failed one drops the KV cache); the next logits of ``going`` and ``restart``."""
        before = self.kl_penalty.adapt(self.kl_controller, episode_kl)
        try:
            return self.forwards.step(gen, tokens, going, restart)
        except BaseException:
            self.kl_penalty.undo(self.kl_controller, before)
            raise

    # ------------------------------------------------------------------ reward normalisation
    @torch.inference_mode()
    def _reference_samples(self, samples: int = 64, seed: int = 0) -> tuple[list[str], list[str]]:
        """The prompts and texts of ``samples`` episodes of the reference policy (for
        `normalize_reward`), seeded by ``seed``."""
        generator = torch.Generator(device="cpu").manual_seed(seed)
        rng = np.random.default_rng(seed)
        picks = rng.integers(len(self.prompts), size=samples)
        scorer = IncrementalLM(self.reference_model, samples, self.pad_token_id)
        logits = scorer.start(list(range(samples)), [self.prompt_set.ids[i] for i in picks])
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
        return [self.prompt_set.texts[i] for i in picks], texts

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Pickle (and deepcopy) everything but the KV cache (see `ReferenceForwards`). The
        scorer is kept when it pickles; when it does not, the copy has none (so its rewards take
        the reference-only form), with a warning."""
        state = self.__dict__.copy()
        if self.scorer is not None and not scorer_pickles(self.scorer, self):
            state["scorer"] = None
        return state


def core_of(env: Any) -> TextGenCore | None:
    """The `TextGenCore` behind a TextGen env (single, vector, or another library's adapter,
    wrapped or not: ``env.unwrapped`` is the innermost one), or None for any other env."""
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    return core if isinstance(core, TextGenCore) else None
