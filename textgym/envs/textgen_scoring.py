"""Log-probs over TextGen's action space: the reference's, kept per row and renormalised over a
constraint's allowed tokens; the acting policy's, from an attached scorer and checked; and the
exact KL between the two.

In ``"vocab"`` mode an action is a token id; in ``"topk"`` mode action i is the reference's
i-th most likely next token, and the reference's log-probs are renormalised over those
candidates.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from textgym._checks import check_int, check_number
from textgym.constraints import Constraint, allowed_masks

if TYPE_CHECKING:
    from textgym.envs.textgen_groups import Ends

ACTION_MODES = ("vocab", "topk")

PolicyScorer = Callable[[dict[str, np.ndarray]], Any]
"""``scorer(obs) -> log_probs``: the batched observation of the rows being stepped (every key
of the observation space, ``[B, ...]``, fresh copies) in; the acting policy's log-probs over
the action space out, ``[B, A]`` (a numpy array or a tensor), finite, each row a distribution
(logsumexp 0). The env checks the output and raises `ScorerError` naming the scorer."""


class ScorerError(RuntimeError):
    """A policy scorer raised, or returned something that is not log-probs over the actions."""


def check_action_settings(
    action_mode: str, top_k: int | None, top_p: float, constraint: Constraint | None
) -> None:
    """Raise naming the argument unless the settings of the action space are valid."""
    if action_mode not in ACTION_MODES:
        raise ValueError(
            f"action_mode={action_mode!r} is not known: expected one of {ACTION_MODES}"
        )
    if top_k is not None:
        check_int("top_k", top_k, low=1)
    elif action_mode == "topk":
        raise ValueError("top_k=None is not allowed with action_mode='topk': expected an int >= 1")
    check_number("top_p", top_p, above=0, at_most=1)
    if constraint is not None and not callable(constraint):
        raise TypeError(
            f"constraint={constraint!r} is not callable: expected "
            "constraint(prompt_ids, generated_ids) -> allowed token ids or a bool mask"
        )


class ReferenceScores:
    """The reference's next-token distribution of every row (one log-softmax per step, over a
    constraint's allowed tokens), and what is read from it: the log-probs of the actions, the
    candidates of ``"topk"`` mode and `masks`.

    :param not_text: the ids `masks` never offers (special tokens but EOS, ids beyond the
        tokenizer); they stay legal actions.
    :param pad: the id a terminal state's candidates take (the padding of ``input_ids``).
    """

    def __init__(
        self,
        num_rows: int,
        vocab_size: int,
        *,
        action_mode: str,
        top_k: int | None,
        top_p: float,
        constraint: Constraint | None,
        not_text: Sequence[int],
        eos_token_id: int,
        pad: int,
        device: torch.device,
    ) -> None:
        self.num_rows, self.vocab_size = num_rows, vocab_size
        self.action_mode, self.top_k, self.top_p = action_mode, top_k, top_p
        self.constraint = constraint
        self.eos_token_id, self.pad = eos_token_id, pad
        self.next_logprobs = torch.zeros(num_rows, vocab_size, device=device)  # (N, V)
        self.cand_ids = torch.zeros(num_rows, top_k or 1, dtype=torch.long, device=device)
        self.cand_logprobs = torch.zeros(num_rows, top_k or 1, device=device)  # (N, k)
        self.not_text = torch.tensor(sorted(not_text), dtype=torch.long, device=device)
        self._make_host_views()

    def _make_host_views(self) -> None:
        """On the CPU, numpy views of the distribution tensors: reading one entry per row
        through numpy costs far less than torch indexing, and a step reads several."""
        on_cpu = self.next_logprobs.device.type == "cpu"
        self._views = (
            {
                "next": self.next_logprobs.numpy(),
                "cand_ids": self.cand_ids.numpy(),
                "cand_logprobs": self.cand_logprobs.numpy(),
            }
            if on_cpu
            else None
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_views": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_host_views()

    def set_next(
        self, rows: np.ndarray, logits: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> None:
        """Store the reference's next-token distribution for ``rows`` (sorted) from their
        ``logits``, renormalised over the ``allowed`` tokens when there is a constraint."""
        every = len(rows) == self.num_rows  # rows are sorted, so then they are all rows in order
        target = slice(None) if every else torch.as_tensor(rows, device=logits.device)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        self.next_logprobs[target] = torch.log_softmax(logits, dim=-1)  # (k, V)
        if self.action_mode == "topk":
            top = torch.topk(logits, self.top_k, dim=-1)
            self.cand_ids[target] = top.indices
            self.cand_logprobs[target] = torch.log_softmax(top.values, dim=-1)

    def allowed(self, states: list[tuple[Any, Any]]) -> torch.Tensor | None:
        """The constraint's allowed tokens of each ``(prompt_ids, generated_ids)`` state, a
        ``(len(states), V)`` bool tensor (None without a constraint)."""
        if self.constraint is None or not states:
            return None
        return allowed_masks(self.constraint, states, self.vocab_size, self.next_logprobs.device)

    def chosen(
        self, rows: np.ndarray, acts: np.ndarray, argument: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """The tokens that ``acts`` of ``rows`` append, and their reference log-probs (float64);
        raises naming ``argument`` for an action the constraint does not allow."""
        if self.action_mode == "topk":
            tokens = self._gather("cand_ids", rows, acts)
            ref_lp = self._gather("cand_logprobs", rows, acts).astype(np.float64)
        else:
            tokens = acts
            ref_lp = self._gather("next", rows, acts).astype(np.float64)
        if self.constraint is not None and not np.isfinite(ref_lp).all():
            bad = int(np.flatnonzero(~np.isfinite(ref_lp))[0])
            raise ValueError(
                f"{argument}={int(acts[bad])} in row {int(rows[bad])} is token {int(tokens[bad])}, "
                "which the constraint does not allow here: expected an action that "
                "action_masks() allows"
            )
        return tokens, ref_lp

    def _gather(self, name: str, idx: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """``source[idx, acts]`` of a distribution tensor, as numpy."""
        if self._views is not None:
            return self._views[name][idx, acts]
        source = {
            "next": self.next_logprobs,
            "cand_ids": self.cand_ids,
            "cand_logprobs": self.cand_logprobs,
        }[name]
        device = source.device
        return (
            source[torch.as_tensor(idx, device=device), torch.as_tensor(acts, device=device)]
            .cpu()
            .numpy()
        )

    def over_actions(self, idx: np.ndarray) -> np.ndarray:
        """The reference's log-probs over the actions of rows ``idx``, ``(len(idx), A)``."""
        name = "cand_logprobs" if self.action_mode == "topk" else "next"
        if self._views is not None:
            return self._views[name][idx]
        source = self.cand_logprobs if name == "cand_logprobs" else self.next_logprobs
        return source[torch.as_tensor(idx, device=source.device)].float().cpu().numpy()

    def logprobs(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` float32, a fresh copy: the reference's log-probs over the actions."""
        index = slice(None) if rows is None else torch.as_tensor(np.asarray(rows))
        source = self.cand_logprobs if self.action_mode == "topk" else self.next_logprobs
        return fresh(source[index])

    def on_support(
        self,
        pol_all: np.ndarray,
        probs: np.ndarray,
        ref_all: np.ndarray,
        rows: np.ndarray,
        scorer: PolicyScorer,
    ) -> tuple[np.ndarray, np.ndarray]:
        """With a constraint, the policy's log-probs ``pol_all`` renormalised over its support
        (where ``ref_all`` is finite), and their exponentials: the distribution a policy masked
        to the allowed tokens samples from. Without one, ``pol_all`` and ``probs`` as given."""
        if self.constraint is None:
            return pol_all, probs
        support = np.isfinite(ref_all)
        with np.errstate(divide="ignore"):
            probs = np.where(support, np.exp(pol_all), 0.0)
            mass = probs.sum(axis=1, keepdims=True, dtype=np.float64)
            if not (mass > 0).all():
                row = int(rows[np.flatnonzero(mass[:, 0] <= 0)[0]])
                raise ScorerError(
                    f"the policy scorer {scorer!r} gives the tokens the constraint allows "
                    f"in row {row} no probability: expected some mass on them"
                )
            logprobs = np.where(support, pol_all - np.log(mass), -np.inf)
        return logprobs.astype(np.float32), (probs / mass).astype(np.float32)

    def masks(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` bool: the reference's top-k / top-p tokens (plus EOS in vocab mode,
        minus the ``not_text`` ids), and with a constraint only the tokens it allows (those
        alone when none of the others is)."""
        index = slice(None) if rows is None else torch.as_tensor(np.asarray(rows))
        if self.action_mode == "topk":
            probs = self.cand_logprobs[index].exp()  # sorted, renormalised over the k candidates
            mask = _nucleus(probs, self.top_p).cpu().numpy()
        else:
            logprobs = self.next_logprobs[index]
            k = self.vocab_size if self.top_k is None else min(self.top_k, self.vocab_size)
            top = torch.topk(logprobs, k, dim=-1)
            keep = _nucleus(top.values.exp(), self.top_p)
            vocab_mask = torch.zeros_like(logprobs, dtype=torch.bool)
            vocab_mask.scatter_(1, top.indices, keep)
            vocab_mask[:, self.not_text] = False
            vocab_mask[:, self.eos_token_id] = True
            mask = vocab_mask.cpu().numpy()
        if self.constraint is not None:  # the allowed tokens: those the reference can still draw
            source = self.cand_logprobs if self.action_mode == "topk" else self.next_logprobs
            allowed = torch.isfinite(source[index]).cpu().numpy()
            mask &= allowed
            empty = ~mask.any(axis=1)
            mask[empty] = allowed[empty]
        return mask

    def end_candidates(self, ends: Ends) -> None:
        """A terminal state has no next token: in ``"topk"`` mode the candidates of the rows
        that a step's `Ends` stop are the padding id ``pad``, with log-prob 0.0 (never the
        previous state's)."""
        if self.action_mode != "topk":
            return
        target = torch.as_tensor(ends.stopped(), device=self.cand_ids.device)
        self.cand_ids[target] = self.pad
        self.cand_logprobs[target] = 0.0

    def observe(self, index: Any) -> dict[str, np.ndarray]:
        """The observation's entries of the rows at ``index`` (fresh copies): in ``"topk"``
        mode the candidates and their log-probs, else none."""
        if self.action_mode != "topk":
            return {}
        return {
            "candidate_ids": fresh(self.cand_ids[index]),
            "candidate_logprobs": fresh(self.cand_logprobs[index]),
        }

    def snapshot(self, row: int) -> dict[str, torch.Tensor]:
        """Copies of ``row``'s distribution, by the names of `TextGenState`'s fields."""
        return {
            "next_logprobs": self.next_logprobs[row].clone(),
            "candidate_ids": self.cand_ids[row].clone(),
            "candidate_logprobs": self.cand_logprobs[row].clone(),
        }

    def restore(
        self,
        rows: np.ndarray,
        next_logprobs: torch.Tensor,
        candidate_ids: torch.Tensor,
        candidate_logprobs: torch.Tensor,
    ) -> None:
        """Write one state's distribution (see `snapshot`) into each of ``rows``."""
        device = self.next_logprobs.device
        self.next_logprobs[rows] = next_logprobs.to(device)
        self.cand_ids[rows] = candidate_ids.to(device)
        self.cand_logprobs[rows] = candidate_logprobs.to(device)


def checked_logprobs(
    scorer: PolicyScorer, out: Any, expected: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """A scorer's output ``out`` as log-probs of the ``expected`` shape ``(B, A)``, checked
    (raising `ScorerError` naming the scorer), and their exponentials (reused by `exact_kl`)."""
    if isinstance(out, torch.Tensor):  # a float tensor of any precision, never ints or bools
        out = out.detach().cpu()
        out = (out.float() if out.is_floating_point() else out).numpy()
    out = np.asarray(out)
    if out.shape != expected or out.dtype.kind != "f":
        raise ScorerError(
            f"the policy scorer {scorer!r} returned {out.dtype} of shape {out.shape}: "
            f"expected floats of shape {expected}, log-probs over the action space per row"
        )
    # Every row a distribution: its probabilities sum to 1 (NaN or +inf never do). On the
    # hot path, so a sum of exponentials, not a logsumexp (6-25x slower at 2,356 actions).
    with np.errstate(over="ignore", invalid="ignore"):
        probs = np.exp(out)
        mass = probs.sum(axis=1, dtype=np.float64)
    if not (np.abs(mass - 1.0) <= 1e-3).all():
        raise ScorerError(
            f"the policy scorer {scorer!r} returned values that are not log-probs "
            f"(row probability mass {mass.min():.3g} to {mass.max():.3g}, or NaN): expected "
            "each row to be a distribution over the actions"
        )
    return out, probs


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


def scorer_pickles(scorer: PolicyScorer, owner: Any) -> bool:
    """Whether ``scorer`` pickles, or else a warning. Tried on its own, with ``owner`` (the
    core it is attached to) standing in for itself (a scorer bound to the env, like
    `ReferencePolicy`, pickles it along), and written nowhere."""

    class Probe(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return "core" if obj is owner else None

    try:
        Probe(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(scorer)
    except Exception as err:
        warnings.warn(
            f"the policy scorer {scorer!r} cannot be pickled ({type(err).__name__}: "
            f"{err}), so the copy of the env has no scorer: its KL step reward takes the "
            "reference-only form r_t = kl_coef * log pi_ref(a_t|s_t) until a scorer is "
            "attached with attach_policy()",
            UserWarning,
            stacklevel=3,
        )
        return False
    return True


class _Discard(io.RawIOBase):
    """A file that forgets what is written to it."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def fresh(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy that shares no memory with the env's state (``.numpy()`` alone would)."""
    return tensor.cpu().numpy().copy()


def _nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest prefix of descending ``sorted_probs`` whose mass reaches ``top_p``."""
    if top_p >= 1.0:  # everything, though a float32 cumsum can reach 1 before the tail
        return torch.ones_like(sorted_probs, dtype=torch.bool)
    before = sorted_probs.cumsum(-1) - sorted_probs
    return before < top_p
