"""Batched TextGen as a Gymnasium ``VectorEnv``.

A thin adapter over `TextGenCore`, which advances all N sequences with one KV-cached forward
pass of the reference model and scores every sequence that finishes on a step with one
reward-model call. (The stable-baselines3 ``VecEnv`` over the same core lives with the
agents, `textgym_agents.make_sb3_vec_env`: textgym imports no RL library.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym._checks import check_options, check_reset_mask, check_seed, is_int
from textgym.envs.textgen_core import RESET_OPTIONS, PolicyScorer, TextGenCore, TextGenState

# Methods whose answer differs per row: `call` gives each row its own.
_PER_ROW = ("action_masks", "reference_logprobs")


class TextGenVectorEnv(VectorEnv):
    """N TextGen episodes as one Gymnasium ``VectorEnv`` (autoreset mode ``NEXT_STEP``).

    Made by ``gym.make_vec("TextGen-v0", num_envs=N, vectorization_mode="vector_entry_point")``;
    takes the arguments of `TextGenEnv`. Rows start from prompts drawn from ``self.np_random``;
    the step after a row terminates ignores its action (which must still be a valid one) and
    returns that row's new first observation with reward 0. Infos are dicts of arrays with
    ``_key`` masks: a row that steps has every key of `TextGenEnv`'s step info (see its
    Information section), with the same values; a row that restarts has its reset info
    (``prompt``, ``prompt_index``), as in gymnasium's own vector envs.

    ``reset`` takes, as gymnasium's vector envs do:

    - ``seed``: None, an int (seeds the generator all rows draw their prompts from), or a list
      of N seeds, one per row (None: the row keeps its generator), after which row ``i`` draws
      the prompts a `TextGenEnv` reset with ``seed=s_i`` draws, at this and every later reset.
    - ``options={"reset_mask": mask}``: a bool array of shape ``(N,)``; only the rows where it
      is True begin a new episode, the others keep theirs untouched. The returned observation
      and the infos' values cover every row; the ``_key`` masks are ``mask``.
    - ``options={"prompt_index": ...}`` / ``options={"prompt": ...}``: as for `TextGenEnv`, a
      single one for every reset row, or a list of N, one per row (entries of rows outside
      ``reset_mask`` are checked but not used). A conversation for every row is
      ``[conversation] * N``.

    **Groups** (``group_size=k``, a divisor of N; GRPO/RLOO groups): rows ``g*k`` to
    ``g*k+k-1`` form group ``g``. A group's rows start together from one prompt, which the
    reference encodes once (its keys and values are copied into the k cache rows), and end
    together: a row whose text ends (EOS or ``max_new_tokens``) while others of its group still
    generate is *idle* until the last one ends: ``idle=True`` from the step its text ends on
    (that step's token counts as usual), meaning its *next* action is ignored. An idle row's
    steps ignore its action (which must still be a valid one), append nothing, pay reward 0.0
    and keep its observation; `action_masks` allows it action 0 alone, so a masked policy
    spends no gradient on it. On the step the group's last text ends, every row of the group
    terminates and is paid its RM score (``text`` and ``rm_score`` final, as without groups),
    and the group restarts on the next step from a new prompt. So every episode still
    terminates once and autoresets once (the Gymnasium contract), and an episode's return is
    the same as without groups; the idle steps are reward-0 no-ops inside it. Infos carry
    ``group`` (the id of the group episode, the same for its k rows: the samples of one prompt)
    and ``idle`` on every step and at resets. ``reset_mask`` and per-row prompt options must
    keep groups whole (one prompt per group), and ``seed`` is None or an int. `restore` and
    `fork` are refused with groups (a group's rows start and end together).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None:
            raise ValueError(
                f"render_mode={render_mode!r}: the batched TextGen env does not render; "
                "render a single TextGenEnv (gym.make) instead"
            )
        self.core = TextGenCore(num_envs, **kwargs)
        self.num_envs = num_envs
        self.render_mode = None
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._restart = np.zeros(num_envs, dtype=bool)
        # One generator per row after a reset with a list of seeds; None: all rows share
        # self.np_random.
        self._row_rngs: list[np.random.Generator] | None = None

    @property
    def reference_model(self):
        return self.core.reference_model

    @property
    def tokenizer(self):
        return self.core.tokenizer

    def attach_policy(self, scorer: PolicyScorer | None) -> None:
        """Use ``scorer`` as pi in every row's KL step reward (see `TextGenEnv.attach_policy`)."""
        self.core.attach_policy(scorer)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Gymnasium's ``call``: a tuple of N results, one per row.

        ``action_masks`` and ``reference_logprobs`` give each row its own ``(A,)`` array (so
        ``np.stack(envs.call("action_masks"))`` is the ``(N, A)`` batch, as with gymnasium's
        sync vector env). Anything else belongs to the batched env as a whole: a method runs
        once (``call("attach_policy", scorer)`` attaches one scorer to every row) and its result,
        or the attribute, is repeated per row.
        """
        attribute = getattr(self, name)
        result = attribute(*args, **kwargs) if callable(attribute) else attribute
        if name in _PER_ROW:
            return tuple(result)
        return (result,) * self.num_envs

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return (getattr(self, name),) * self.num_envs

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # Everything is checked before anything changes: a refused reset leaves the env as it was.
        options = check_options(options, (*RESET_OPTIONS, "reset_mask"), "TextGenVectorEnv")
        seeds = check_seed(seed, self.num_envs)
        mask = np.ones(self.num_envs, dtype=bool)
        if "reset_mask" in options:
            mask = check_reset_mask(options["reset_mask"], self.num_envs)
            if not self.core.started:
                raise RuntimeError(
                    "reset() with options['reset_mask'] was called before a full reset(); "
                    "call envs.reset() first"
                )
        prompt_options = {k: v for k, v in options.items() if k != "reset_mask"}
        starts = self.core.reset_starts(prompt_options, self.num_envs, per_row=True)
        rows = np.flatnonzero(mask)
        self.core.check_groups(rows, "options['reset_mask']")
        if starts is not None:
            self.core.check_group_starts(rows, starts.take(rows), "options")
        if isinstance(seeds, list) and self.core.group_size > 1:
            raise ValueError(
                f"seed={seed!r}: with group_size={self.core.group_size} a group's rows draw one "
                "prompt together, so seeds are not per row: expected None or an int"
            )

        if isinstance(seeds, list):
            if self._row_rngs is None:  # rows without a seed continue the shared stream
                self._row_rngs = self.np_random.spawn(self.num_envs)
            for row in rows:
                if seeds[row] is not None:
                    self._row_rngs[row] = seeding.np_random(seeds[row])[0]
        else:
            super().reset(seed=seeds)
            if seeds is not None:
                self._row_rngs = None
        starts = self.core.prompt_starts(self._draw(rows)) if starts is None else starts.take(rows)
        self.core.begin(rows, starts)
        self._restart[rows] = False
        infos = self.core.reset_info(np.arange(self.num_envs))
        infos.update({f"_{key}": mask.copy() for key in list(infos)})
        return self.core.observe(), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self.core.check_started("step()")
        live = ~self._restart
        restart_rows = np.flatnonzero(self._restart)
        restart, generators, saved = None, [], []
        if restart_rows.size:
            generators = self._generators(restart_rows)
            saved = [generator.bit_generator.state for generator in generators]
            restart = (restart_rows, self.core.prompt_starts(self._draw(restart_rows)))
        try:
            result = self.core.step(actions, rows=live, argument="actions", restart=restart)
        except BaseException:  # the step changed nothing: neither do the draws
            for generator, state in zip(generators, saved):
                generator.bit_generator.state = state
            raise
        infos = result.batched_info(live)
        if restart_rows.size:
            for key, values in self.core.reset_info(restart_rows).items():
                infos[key][restart_rows] = values
                infos[f"_{key}"][restart_rows] = True
        self._restart = result.terminated.copy()
        truncated = np.zeros(self.num_envs, dtype=bool)
        return (
            self.core.observe(),
            result.rewards.copy(),
            result.terminated.copy(),
            truncated,
            infos,
        )

    def snapshot(self, row: int) -> TextGenState:
        """Row ``row``'s mid-episode state, KV cache included (see `TextGenEnv.snapshot`)."""
        return self.core.snapshot(self._row(row, "row"))

    def restore(
        self, state: TextGenState, rows: int | Sequence[int]
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Continue ``state`` in each of ``rows``, replacing their episodes (a row due to
        autoreset continues ``state`` instead). Returns every row's observation and the reset
        infos of ``rows`` (``_key`` masks: ``rows``), as ``reset(options={"reset_mask"})`` does.
        The other rows are untouched; the next `step` goes on from there. Refused with
        ``group_size`` > 1, and for a state of other settings or one that does not fit (see
        `TextGenEnv.restore`): then no row changes.

        :param state: a `TextGenState` from `snapshot` (of this env or another).
        :param rows: a row index or a list of them.
        """
        given = [rows] if is_int(rows) else list(rows)
        if not given or not all(is_int(row) and 0 <= row < self.num_envs for row in given):
            raise ValueError(
                f"rows={rows!r}: expected a row index or a non-empty list of them, integers in "
                f"[0, {self.num_envs})"
            )
        rows = np.unique(np.asarray(given, dtype=np.int64))
        self.core.restore(rows, state)
        self._restart[rows] = False
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[rows] = True
        infos = self.core.reset_info(np.arange(self.num_envs))
        infos.update({f"_{key}": mask.copy() for key in list(infos)})
        return self.core.observe(), infos

    def fork(
        self, row: int, rows: int | Sequence[int]
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Branch row ``row`` into ``rows``: each continues ``row``'s episode from its current
        state (``restore(snapshot(row), rows)``): k continuations of one prefix, sampled in
        one batched step. Refused with ``group_size`` > 1.

        :param row: the row whose state is copied.
        :param rows: a row index or a list of them, the rows that take it.
        """
        return self.restore(self.snapshot(row), rows)

    def _row(self, row: Any, argument: str) -> int:
        if not (is_int(row) and 0 <= row < self.num_envs):
            raise ValueError(
                f"{argument}={row!r}: expected a row index, an integer in [0, {self.num_envs})"
            )
        return int(row)

    def action_masks(self) -> np.ndarray:
        """``(N, A)`` bool masks of the reference's top-k / top-p tokens (see `TextGenEnv`)."""
        return self.core.action_masks()

    def reference_logprobs(self) -> np.ndarray:
        """``(N, A)`` the reference policy's log-probs over the action space per row."""
        return self.core.reference_logprobs()

    def _generators(self, rows: np.ndarray) -> list[np.random.Generator]:
        """The generators the prompts of ``rows`` are drawn from."""
        return [self.np_random] if self._row_rngs is None else [self._row_rngs[r] for r in rows]

    def _draw(self, rows: np.ndarray) -> np.ndarray:
        """Prompt indices for ``rows``: from the shared generator, or each row's own (drawn as a
        single `TextGenEnv` draws, so a row seeded ``s`` repeats a single env seeded ``s``)."""
        if self._row_rngs is None:
            return self.core.draw_prompts(self.np_random, len(rows))
        size = len(self.core.prompts)
        return np.array([int(self._row_rngs[row].integers(size)) for row in rows], dtype=np.int64)
