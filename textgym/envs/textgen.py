"""TextGen-v0: generating one text, token by token, as a Gymnasium episode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from textgym._checks import check_options, check_seed
from textgym.envs.textgen_core import RESET_OPTIONS, PolicyScorer, TextGenCore, TextGenState
from textgym.render import render_ansi, render_rgb


class TextGenEnv(gym.Env):
    """
    ## Description

    Text generation as reinforcement learning, the way RLHF frames it (Ziegler et al., 2019;
    Ouyang et al., 2022). An episode starts from a prompt; each step the agent appends one
    token; the episode ends with an end-of-sequence token or after ``max_new_tokens``. Each
    token earns a KL-penalty step reward against a frozen reference (SFT) model, and the
    finished text earns a reward-model score.

    The default task (no arguments) uses the bundled tiny GPT-2 trained on synthetic movie
    reviews, the bundled review openings as prompts and VADER sentiment of the continuation
    as the reward model: steer the model towards positive reviews while staying close to it.

    ## Action Space

    ``action_mode="vocab"``: ``Discrete(V)``, the id of the next token.
    ``action_mode="topk"``: ``Discrete(top_k)``, action ``i`` is the reference model's
    ``i``-th most likely next token (the candidates are part of the observation).

    In vocab mode every id is a legal action, special tokens included. EOS ends the
    episode; any other special token (pad, bos, ...) is appended as an ordinary token:
    attended to (``attention_mask`` 1) by the models, left out of the decoded ``text``.
    A trained reference gives such tokens near-zero probability, so the KL penalty prices
    them, and `action_masks` never offers them (nor ids beyond the tokenizer).

    ## Observation Space

    ``Dict(input_ids=Box(0, V-1, (L,), int64), attention_mask=Box(0, 1, (L,), int64))``: the
    prompt followed by the generated tokens, right-padded, ``L = max_prompt_tokens +
    max_new_tokens``. ``"topk"`` mode adds ``candidate_ids`` ``(top_k,)`` int64 and
    ``candidate_logprobs`` ``(top_k,)`` float32 (the reference's log-probs renormalised over
    the candidates). A terminal state (the observation returned with ``terminated=True``) has
    no next token, so no candidates: ``candidate_ids`` are the padding id of ``input_ids`` and
    ``candidate_logprobs`` 0.0. Every returned array is a fresh copy.

    ## Starting State

    A prompt drawn uniformly from the prompt set with ``self.np_random``, or the one given
    by ``reset(options={"prompt": text})`` (a string or a chat conversation) /
    ``options={"prompt_index": i}`` (an int in ``[0, len(env.prompts))``); no other options,
    and at most one of these. Options are checked before anything changes, so a refused reset
    leaves the env as it was (the episode in progress, if any, goes on). One caveat comes from
    gymnasium 1.4 (not 1.2.2), not from the env: when the *first* ``reset()`` of an env made by
    ``gym.make`` raises, its passive env checker fails every later ``step()`` with
    ``TypeError: cannot unpack non-iterable NoneType object`` (after the env stepped). Make the
    first reset a plain ``env.reset(seed=...)``, pass ``disable_env_checker=True`` to
    ``gym.make``, or make a new env after such a failure.

    ## Rewards

    With ``log r = log pi_ref(a_t|s_t) - log pi(a_t|s_t)``::

        r_t = -kl_coef * k(log r)                 every step (k1 = -log r, k2, k3)
            + RM(prompt, text) [- missing_eos_penalty]   on the last step

    ``pi`` comes from a policy scorer attached with `attach_policy` (``scorer(obs) ->
    log_probs [B, A]``). With none attached the reference-only form
    ``r_t = kl_coef * log pi_ref(a_t|s_t)`` is used (a warning is shown once). Its expected
    return plus an entropy bonus of ``kl_coef`` equals the KL-regularised objective in value,
    since ``-KL(pi||pi_ref) = E_pi[log pi_ref] + H(pi)``, but not in gradient: an entropy bonus
    in the loss ignores how earlier tokens change the entropies of later states. In ``"topk"``
    mode ``log pi_ref`` is renormalised over the candidates.

    ## Episode End

    ``terminated=True`` on EOS or when ``max_new_tokens`` tokens were generated (the RM score
    is the true end). ``truncated`` only comes from an outer ``TimeLimit``.

    ## Information

    ``reset`` returns ``prompt`` (str, the prompt as the policy sees it) and ``prompt_index``
    (int, its index in the prompt set; -1 for ``options={"prompt": ...}``). Every step returns
    the same keys with values of fixed types, so libraries that store infos in preallocated
    buffers (Tianshou) take them; what only the last step knows has a neutral value before it:

    - ``prompt``, ``prompt_index``: as at reset.
    - ``ref_logprob``, ``kl_coef`` (beta), ``kl_reward`` (the KL part of the reward): floats.
    - ``rm_score``: the RM part of the reward, float: the (normalised) RM score of the text on
      the last step, 0.0 before it.
    - ``eos_penalty``: the ``missing_eos_penalty`` paid, float: on a last step without EOS,
      0.0 otherwise.
    - ``text``: the continuation, str: decoded once per episode, on the last step; ``""``
      before it.
    - With a policy scorer attached: ``policy_logprob`` and ``kl`` (the KL estimate of the
      step), floats, and ``episode_kl``, the episode's summed KL estimate so far (the whole
      episode's on the last step); ``exact_kl``, the exact ``KL(pi || pi_ref)`` of the step's
      state summed over the action space from the scorer's and the reference's full
      distributions, and ``episode_exact_kl``, its sum so far. The exact KL is a metric beside
      the sampled estimate, never part of the reward: as a reward it would be a detached
      number that gives no gradient of the KL, which the sampled k1 reward does.
    - With groups (the vector envs' ``group_size``): ``group`` and ``idle``; see
      `TextGenVectorEnv`.

    So ``reward == kl_reward + rm_score - eos_penalty`` on every step, and ``terminated``
    marks the step whose ``rm_score`` and ``text`` are final. The vector envs report the same
    keys and values.

    ## Constraints

    ``constraint=fn`` restricts which tokens may come next: ``fn(prompt_ids, generated_ids)``
    returns the allowed token ids (or a ``(V,)`` mask of bool dtype: ``V`` integers all 0 or
    1 could be either, and raise `textgym.constraints.ConstraintError`) for each new state; see
    `textgym.constraints` (``TokenSet``, a fixed vocabulary; ``Regex``, the text must match a
    pattern). With S the allowed set, the reference's distribution is renormalised over S
    (``log pi_ref(a) - log sum_{b in S} pi_ref(b)``, ``-inf`` outside; in ``"topk"`` mode the
    candidates are the k most likely tokens of S), the scorer's log-probs are renormalised over
    S the same way, and the KL (sampled and exact) is ``KL(pi_S || pi_ref_S)``, between the
    distributions a policy masked to S and the reference masked to S sample from.
    `action_masks` allows only tokens of S, and an action outside S raises ``ValueError``
    before anything changes: train with an agent that honours the masks. A constraint that
    raises or allows nothing raises `textgym.constraints.ConstraintError`.
    ``normalize_reward``'s statistics come from the unconstrained reference.

    ## Branches

    `snapshot` returns the episode's state (tokens, rewards so far, the reference's next-token
    distribution and its KV cache, a `TextGenState`); `restore` continues it, here or in an
    env with the same settings, with the same next-token log-probs, at the cost of a copy
    instead of re-encoding the sequence. The vector env forks a row into others (not with
    ``group_size`` > 1: a group's rows start and end together, so `restore` and ``fork``
    raise ``ValueError`` there).

    The settings are those that decide what the restored episode is paid and shown (see
    `TextGenCore.signature`): the model, reference, dtype and vocabulary, ``action_mode``,
    ``top_k``, ``top_p``, ``max_prompt_tokens``, ``max_new_tokens``, ``constraint``,
    ``kl_estimator``, ``kl_coef``, ``kl_target``, ``kl_horizon``, the reward model,
    ``missing_eos_penalty`` and ``normalize_reward``'s gain and bias. A state carries no beta:
    with ``kl_target`` the steps after a restore pay this env's current beta. A state from an
    env that differs in any of them, or whose contents do not fit this env (token ids outside
    the vocabulary, shapes, a ``prompt_index`` that names another prompt here), raises
    ``ValueError`` naming what differs, before anything changes.

    ## Arguments

    - ``model``: HF name or local path of the causal LM that defines the vocabulary and, by
      default, the reference (default: the bundled tiny model).
    - ``reference_model``: the frozen reference model (default: ``model``).
    - ``reward_model``: a `textgym.rewards.RewardModel`, a callable ``(prompts, texts) ->
      scores``, a name (``"sentiment"``) or a path to a HF sequence-classification model.
    - ``prompts``: a list of prompts (strings, or chat conversations as lists of
      ``{"role", "content"}`` messages, rendered with the tokenizer's chat template), a path to
      a UTF-8 file (.jsonl: one JSON record per line; .json: a JSON list of records; any other
      suffix, .txt: one prompt per line; see `textgym.prompts.load_prompts`), or ``None`` for
      the bundled set. A record is a prompt, or an object with a ``"prompt"`` or ``"text"``
      field holding one, or a ``"messages"`` field holding a list of messages.
    - ``max_new_tokens`` (24), ``max_prompt_tokens`` (24): episode length and prompt budget;
      longer prompts are cut from the left, keeping the tokenizer's special tokens (BOS), with
      a one-time warning. The reward model receives the prompt as the policy saw it.
    - ``kl_coef`` (0.05, a finite number >= 0), ``kl_estimator`` (``"k1"``, ``"k2"``,
      ``"k3"``), ``kl_target`` (None, or a finite number > 0 of nats per sequence: adaptive beta,
      Ziegler et al.) and ``kl_horizon`` (10000, an int >= 1).
    - ``action_mode`` (``"vocab"`` / ``"topk"``), ``top_k`` (10), ``top_p`` (1.0): the
      candidate set of ``"topk"`` mode and of `action_masks`.
    - ``missing_eos_penalty`` (0.0): subtracted when an episode ends without EOS.
    - ``normalize_reward`` (False): scale and shift RM scores so that the reference policy's
      samples (64, drawn at construction) score mean 0 and std 1.
    - ``constraint`` (None): see Constraints.
    - ``device``, ``dtype``, ``trust_remote_code`` (False): model placement and safety.
    - ``render_mode``: ``"ansi"`` or ``"rgb_array"``.

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        """See Arguments above; every keyword but ``render_mode`` goes to `TextGenCore`."""
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not supported: expected one of "
                f"{self.metadata['render_modes']} or None"
            )
        self.render_mode = render_mode
        self.core = TextGenCore(1, **kwargs)
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        self._rm_score: float | None = None
        self._penalty = 0.0  # the missing-EOS penalty the episode paid, for render()

    # Public handles on what the env loaded.
    @property
    def reference_model(self) -> torch.nn.Module:
        return self.core.reference_model

    @property
    def tokenizer(self):
        return self.core.tokenizer

    @property
    def reward_model(self):
        return self.core.reward_model

    @property
    def prompts(self) -> list[str]:
        return self.core.prompts

    @property
    def kl_coef(self) -> float:
        """The current beta (moves when ``kl_target`` is set)."""
        return self.core.kl_controller.value

    def attach_policy(self, scorer: PolicyScorer | None) -> None:
        """Use ``scorer(obs) -> log_probs`` as the acting policy pi in the KL step reward;
        ``None`` detaches it (reference-only reward).

        ``obs`` is the batched observation of the rows being stepped (every key of the
        observation space, ``[B, ...]``); the scorer returns the acting policy's log-probs over
        the action space, ``[B, A]``, finite rows that sum to 1. Anything else (or an exception
        inside the scorer) raises `ScorerError`, and the step changes nothing.

        A pickled or deep-copied env keeps the scorer if it pickles (a scorer bound to this env
        is bound to the copy); one that does not (a lambda) is left out with a warning, and the
        copy uses the reference-only reward until a scorer is attached."""
        self.core.attach_policy(scorer)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seed = check_seed(seed)
        options = check_options(options, RESET_OPTIONS, "TextGenEnv")
        starts = self.core.reset_starts(options, 1, per_row=False)
        super().reset(seed=seed)
        if starts is None:
            starts = self.core.prompt_starts([int(self.np_random.integers(len(self.core.prompts)))])
        self.core.begin([0], starts)
        self._rm_score, self._penalty = None, 0.0
        info = {key: values.item(0) for key, values in self.core.reset_info([0]).items()}
        return self._obs(), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self.core.active[0]:
            raise RuntimeError(
                "step() called before reset() or after the episode ended (terminated=True): "
                "call reset() to start a new episode"
            )
        result = self.core.step(action, batched=False)
        info = result.row_info(0)
        reward = float(result.rewards[0])
        if result.terminated[0]:
            self._rm_score = info["rm_score"]
            self._penalty = info["eos_penalty"]
        return self._obs(), reward, bool(result.terminated[0]), False, info

    def snapshot(self) -> TextGenState:
        """The episode's state now, KV cache included, for `restore` (branching rollouts:
        Monte-Carlo values of a prefix, best-of-n continuations, tree search). See
        `textgym.envs.textgen_core.TextGenState` for what it holds and what it does not."""
        return self.core.snapshot(0)

    def restore(self, state: TextGenState) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Continue from ``state`` (a `snapshot` of this env or of a row of an env with the same
        settings), replacing the episode in progress; returns its observation and its reset
        info. The next-token log-probs then equal the snapshot's exactly (no forward pass:
        the KV cache is copied). A state of other settings, or one that does not fit this env,
        raises ``ValueError`` naming what differs and changes nothing (see Branches).

        :param state: a `TextGenState` from `snapshot`.
        """
        self.core.restore([0], state)
        self._rm_score, self._penalty = None, 0.0
        info = {key: values.item(0) for key, values in self.core.reset_info([0]).items()}
        return self._obs(), info

    def reference_logprobs(self) -> np.ndarray:
        """``(A,)``: the reference policy's log-probs over the action space in the current state
        (renormalised over the candidates in ``"topk"`` mode)."""
        return self.core.reference_logprobs([0])[0]

    def action_masks(self) -> np.ndarray:
        """``(A,)`` bool: True for the reference's top-k / top-p tokens; in vocab mode EOS is
        always True and the other special tokens always False."""
        return self.core.action_masks([0])[0]

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode= to gym.make")
            return None
        self.core.check_started("render()")
        core, gen = self.core, int(self.core.gen_len[0])
        start = int(core.prompt_len[0])
        tokens = [core.tokenizer.decode([t]) for t in core.input_ids[0, start : start + gen]]
        picture = (core.row_prompt[0], tokens, core.kl_rewards[0, :gen].tolist(), self._rm_score)
        if self.render_mode == "ansi":
            return render_ansi(*picture, penalty=self._penalty)
        return render_rgb(*picture, penalty=self._penalty)

    def _obs(self) -> dict[str, np.ndarray]:
        return self.core.observe(0)
