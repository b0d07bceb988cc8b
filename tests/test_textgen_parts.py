"""The parts the TextGen core is composed of, each tested on its own (no env; no model but a
tokenizer where the part encodes prompts, and the tiny reference where it runs forwards)."""

from __future__ import annotations

import logging
import pickle
import warnings

import numpy as np
import pytest
import torch

from textgym.envs.textgen_branches import TextGenState, check_state
from textgym.envs.textgen_forwards import ReferenceForwards, check_reference_fits
from textgym.envs.textgen_groups import Groups
from textgym.envs.textgen_infos import INFO_KEYS, SCORER_INFO_KEYS, StepResult
from textgym.envs.textgen_prompts import PromptSet, PromptStarts
from textgym.envs.textgen_reward import KLPenalty, normalisation, terminal_rewards
from textgym.envs.textgen_rows import Rows
from textgym.envs.textgen_scoring import (
    ReferenceScores,
    ScorerError,
    check_action_settings,
    checked_logprobs,
    exact_kl,
)
from textgym.envs.textgen_spaces import check_actions, observation_space
from textgym.kl import AdaptiveKLController, FixedKLController
from textgym.kv_cache import IncrementalLM
from textgym.lm import load_causal_lm, load_tokenizer
from textgym.rewards import resolve_reward_model

# ------------------------------------------------------------------ prompts


@pytest.fixture(scope="module")
def tokenizer(tiny_gpt2):
    return load_tokenizer(str(tiny_gpt2))


def test_prompt_set_encodes_once_and_starts_from_indices_and_given_prompts(tokenizer):
    prompts = PromptSet(["the movie was", "a long day"], tokenizer, 24)
    assert len(prompts) == 2 and prompts.texts == ["the movie was", "a long day"]
    starts = prompts.starts([1, 0, 1])
    assert starts.ids == [prompts.ids[1], prompts.ids[0], prompts.ids[1]]
    assert starts.indices.tolist() == [1, 0, 1]
    given = prompts.given(["hello there"], ["prompt"])
    assert given.texts == ["hello there"] and given.indices.tolist() == [-1]
    assert given.ids == [tokenizer("hello there")["input_ids"]]
    assert starts.take(np.array([2])).indices.tolist() == [1]


def test_prompt_set_cuts_long_prompts_from_the_left_warning_once(tokenizer):
    long = " ".join(["word"] * 40)
    with pytest.warns(UserWarning, match="1 prompt\\(s\\) are longer than max_prompt_tokens=8"):
        prompts = PromptSet([long, "short"], tokenizer, 8)
    assert len(prompts.ids[0]) == 8 and prompts.ids[0][-1] == tokenizer(long)["input_ids"][-1]
    with warnings.catch_warnings():  # shown once: a second long prompt is cut silently
        warnings.simplefilter("error")
        assert len(prompts.encode(long).ids) == 8


def test_prompt_set_reads_reset_options_per_row_or_for_every_row(tokenizer):
    prompts = PromptSet(["a", "b", "c"], tokenizer, 24)
    assert prompts.from_options({}, 2, per_row=True) is None
    assert prompts.from_options({"prompt_index": 2}, 2, True).indices.tolist() == [2, 2]
    assert prompts.from_options({"prompt_index": [0, 1]}, 2, True).indices.tolist() == [0, 1]
    assert prompts.from_options({"prompt": ["x", "y"]}, 2, True).texts == ["x", "y"]
    with pytest.raises(ValueError, match=r"options\['prompt_index'\]\[1\]=3: expected an int"):
        prompts.from_options({"prompt_index": [0, 3]}, 2, True)
    with pytest.raises(ValueError, match="has 1 entries: expected one per row \\(2\\)"):
        prompts.from_options({"prompt": ["x"]}, 2, True)
    with pytest.raises(ValueError, match="gives both 'prompt' and 'prompt_index'"):
        prompts.from_options({"prompt": "x", "prompt_index": 0}, 1, False)


def test_prompt_set_draws_one_prompt_per_group_from_the_generator(tokenizer):
    prompts = PromptSet(["a", "b", "c", "d", "e"], tokenizer, 24)
    drawn = prompts.draw(np.random.default_rng(7), 6, group_size=3)
    expected = np.random.default_rng(7).integers(5, size=2)
    assert drawn.tolist() == np.repeat(expected, 3).tolist()


# ------------------------------------------------------------------ groups


def test_groups_end_an_episode_when_every_text_of_its_group_has_ended():
    groups = Groups(4, 2)
    groups.begin(np.arange(4))
    assert groups.group.tolist() == [0, 0, 1, 1] and groups.started == 2
    active, gen = np.ones(4, dtype=bool), np.arange(4)
    # Row 0 ends with EOS, row 2 at the length limit: both turn idle, no group ends.
    ended, eos = np.array([True, False, True, False]), np.array([True, False, False, False])
    ends = groups.ends(active, gen, np.array([9, 5, 6, 7]), ended, eos)
    assert ends.done.size == 0 and ends.idle.tolist() == [0, 2]
    groups.commit(ends, gen, ended, eos)
    assert groups.idle.tolist() == [True, False, True, False]
    gen, acts = groups.generating(np.arange(4), np.array([1, 2, 3, 4]))
    assert gen.tolist() == [1, 3] and acts.tolist() == [2, 4]
    # Row 1 ends: group 0 ends on this step, each row with its own last token and EOS flag.
    ends = groups.ends(active, gen, np.array([8, 4]), np.array([True, False]), np.array([0, 0]))
    assert ends.done.tolist() == [0, 1] and ends.idle.size == 0
    assert ends.last.tolist() == [-1, 8] and ends.eos.tolist() == [True, False]
    assert ends.stopped().tolist() == [0, 1]


def test_groups_of_one_end_an_episode_with_its_text_and_never_idle():
    groups = Groups(3, 1)
    ends = groups.ends(
        np.ones(3, bool), np.arange(3), np.array([4, 5, 6]), np.array([False, True, False]),
        np.array([False, True, False]),
    )  # fmt: skip
    assert ends.done.tolist() == [1] and ends.last.tolist() == [5] and ends.eos.tolist() == [True]
    assert ends.stopped().tolist() == [1] and groups.info(np.arange(3)) == {}


def test_groups_refuse_rows_that_split_a_group_and_prompts_that_differ_within_one(tokenizer):
    with pytest.raises(ValueError, match="group_size=3 does not divide the 4 row"):
        Groups(4, 3)
    groups = Groups(4, 2)
    with pytest.raises(ValueError, match=r"select rows \[1, 2\], which split a group"):
        groups.check(np.array([1, 2]), "rows")
    starts = PromptSet(["a", "b"], tokenizer, 24).starts([0, 1])
    with pytest.raises(ValueError, match="rows 0 and 1 are in one group"):
        groups.check_starts(np.array([0, 1]), starts, "rows")


def test_an_idle_rows_mask_allows_action_zero_alone():
    groups = Groups(2, 2)
    groups.idle[1] = True
    mask = np.ones((2, 4), dtype=bool)
    groups.mask_idle(mask, None)
    assert mask.tolist() == [[True] * 4, [True, False, False, False]]


# ------------------------------------------------------------------ scoring


def reference_scores(action_mode="vocab", top_k=2, constraint=None, rows=2, vocab=5):
    return ReferenceScores(
        rows, vocab, action_mode=action_mode, top_k=top_k, top_p=1.0, constraint=constraint,
        not_text=[4], eos_token_id=3, pad=0, device=torch.device("cpu"),
    )  # fmt: skip


LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5], [0.0, 1.0, 3.0, -0.5, 0.2]])


def test_reference_scores_hold_the_log_softmax_and_the_top_k_candidates():
    scores = reference_scores("topk")
    scores.set_next(np.arange(2), LOGITS)
    torch.testing.assert_close(scores.next_logprobs, torch.log_softmax(LOGITS, -1))
    assert scores.cand_ids.tolist() == [[0, 1], [2, 1]]
    expected = torch.log_softmax(torch.tensor([[2.0, 1.0], [3.0, 1.0]]), -1)
    torch.testing.assert_close(scores.cand_logprobs, expected)
    tokens, ref_lp = scores.chosen(np.array([0, 1]), np.array([1, 0]), "action")
    assert tokens.tolist() == [1, 2] and ref_lp.dtype == np.float64
    np.testing.assert_allclose(ref_lp, [expected[0, 1], expected[1, 0]], rtol=1e-6)
    assert scores.observe(slice(None))["candidate_ids"].tolist() == [[0, 1], [2, 1]]


def test_reference_scores_renormalise_over_the_constraints_tokens_and_refuse_others():
    scores = reference_scores(constraint=lambda prompt, generated: [0, 2])
    allowed = scores.allowed([([1], []), ([1], [])])
    scores.set_next(np.arange(2), LOGITS, allowed)
    probs = scores.next_logprobs.exp()
    assert probs[:, [1, 3, 4]].sum() == 0 and torch.allclose(probs.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="action=1 in row 0 is token 1, which the constraint"):
        scores.chosen(np.array([0]), np.array([1]), "action")
    assert scores.masks().tolist() == [[True, False, True, False, False]] * 2
    pol = np.log(np.full((1, 5), 0.2))
    pol_on, probs_on = scores.on_support(pol, np.exp(pol), scores.over_actions([0]), [0], "s")
    np.testing.assert_allclose(np.exp(pol_on), [[0.5, 0, 0.5, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(probs_on, [[0.5, 0, 0.5, 0, 0]], rtol=1e-6)


def test_reference_masks_keep_the_top_k_and_eos_but_never_a_token_that_is_not_text():
    scores = reference_scores(top_k=2)
    scores.set_next(np.arange(2), LOGITS)
    # The top-2 (row 0: 0 and 1, row 1: 2 and 1), EOS (3) always, 4 (not text) never.
    assert scores.masks().tolist() == [
        [True, True, False, True, False],
        [False, True, True, True, False],
    ]


def test_reference_scores_end_candidates_snapshot_restore_and_pickle():
    scores = reference_scores("topk")
    scores.set_next(np.arange(2), LOGITS)
    saved = scores.snapshot(1)

    class Ends:
        def stopped(self):
            return np.array([1])

    scores.end_candidates(Ends())
    assert scores.cand_ids[1].tolist() == [0, 0] and scores.cand_logprobs[1].tolist() == [0, 0]
    scores.restore(np.array([0, 1]), *saved.values())
    assert scores.cand_ids.tolist() == [[2, 1], [2, 1]]
    copy = pickle.loads(pickle.dumps(scores))
    assert copy.chosen(np.array([1]), np.array([0]), "action")[0].tolist() == [2]
    copy.next_logprobs[0, 0] = 7.0  # the host views share the copy's memory again
    assert copy.over_actions(np.array([0]))[0, 0] != 7.0  # topk mode reads the candidates
    assert copy._views["next"][0, 0] == 7.0


def test_scorer_output_is_checked_for_shape_and_probability_mass():
    good = np.log(np.full((2, 4), 0.25))
    out, probs = checked_logprobs("s", torch.tensor(good), (2, 4))
    np.testing.assert_allclose(probs, 0.25)
    with pytest.raises(ScorerError, match="scorer 's' returned float64 of shape \\(2, 4\\)"):
        checked_logprobs("s", good, (2, 3))
    with pytest.raises(ScorerError, match="not log-probs"):
        checked_logprobs("s", good + 1.0, (2, 4))


def test_exact_kl_sums_pi_times_the_log_ratio():
    with np.errstate(divide="ignore"):
        pi = np.log(np.array([[0.5, 0.5, 0.0]]))
    ref = np.log(np.array([[0.25, 0.25, 0.5]]))
    with np.errstate(invalid="ignore"):
        assert exact_kl(pi, ref)[0] == pytest.approx(np.log(2.0))


def test_action_settings_are_checked_by_name():
    with pytest.raises(ValueError, match="action_mode='x' is not known"):
        check_action_settings("x", 2, 1.0, None)
    with pytest.raises(ValueError, match="top_k=None is not allowed with action_mode='topk'"):
        check_action_settings("topk", None, 1.0, None)
    with pytest.raises(TypeError, match="constraint=3 is not callable"):
        check_action_settings("vocab", 2, 1.0, 3)


# ------------------------------------------------------------------ reward


def test_kl_penalty_pays_minus_beta_k1_with_a_policy_and_beta_log_ref_without():
    penalty = KLPenalty(0.1, "k1", None, 10)
    ref_lp = np.array([-1.0, -2.0])
    pol_all = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    ref_all = np.log(np.array([[0.2, 0.8], [0.5, 0.5]]))

    def policy(rows):
        return pol_all, np.exp(pol_all), ref_all

    step = penalty.score(0.1, np.array([0, 1]), np.array([0, 0]), ref_lp, policy)
    pol_lp = pol_all[:, 0]
    np.testing.assert_allclose(step.kl, pol_lp - ref_lp)
    np.testing.assert_allclose(step.rewards, -0.1 * (pol_lp - ref_lp))
    np.testing.assert_allclose(step.exact, exact_kl(pol_all, ref_all))
    with pytest.warns(UserWarning, match="no policy scorer is attached"):
        bare = penalty.score(0.1, np.array([0]), np.array([0]), ref_lp[:1], None)
    assert bare.kl is None and bare.rewards.tolist() == [0.1 * -1.0]
    kl_sum = np.zeros(2)
    penalty.add(step, np.array([0, 1]), kl_sum, np.zeros(2))
    np.testing.assert_allclose(kl_sum, step.kl)


def test_kl_penalty_makes_the_controller_as_constructed_and_undoes_an_update():
    assert type(KLPenalty(0.1, "k2", None, 10).controller()) is FixedKLController
    penalty = KLPenalty(0.1, "k3", 6.0, 100)
    controller = penalty.controller()
    assert type(controller) is AdaptiveKLController
    assert penalty.settings == {"kl_coef": 0.1, "kl_target": 6.0, "kl_horizon": 100}
    assert penalty.adapt(controller, None) is None
    before = penalty.adapt(controller, np.array([12.0, 12.0]))
    assert controller.value > 0.1
    penalty.undo(controller, before)
    assert controller.value == 0.1
    with pytest.raises(ValueError, match="kl_estimator='k9' is not known"):
        KLPenalty(0.1, "k9", None, 10)


def test_kl_penalty_logs_a_window_of_negative_kl(caplog):
    penalty = KLPenalty(0.1, "k1", None, 10)
    with caplog.at_level(logging.WARNING):
        penalty.check_sign(np.full(63, -0.5))
        assert "negative" not in caplog.text
        penalty.check_sign(np.full(1, -0.5))
    assert "last 64 episodes is negative (-0.5000)" in caplog.text


def test_terminal_rewards_scale_the_rm_score_and_charge_a_missing_eos():
    rm = resolve_reward_model(lambda prompts, texts: [float(len(t)) for t in texts])
    scores, penalties = terminal_rewards(
        rm, ["p", "p"], ["ab", "abcd"], np.array([True, False]), (2.0, -1.0), 0.5
    )
    assert scores.tolist() == [3.0, 7.0] and penalties.tolist() == [0.0, 0.5]
    gain, bias = normalisation(rm, ["p"] * 3, ["a", "ab", "abc"])
    assert gain * np.array([1, 2, 3]) + bias == pytest.approx([-1.2247449, 0, 1.2247449])
    with pytest.raises(ValueError, match="normalize_reward=True: the reference policy's"):
        normalisation(rm, ["p", "p"], ["a", "b"])


# ------------------------------------------------------------------ branches and infos


def state(**changes) -> TextGenState:
    fields = dict(
        tokens=np.array([1, 2, 3]), prompt_len=2, prompt_index=0, prompt="a",
        kl_rewards=np.zeros(1, dtype=np.float32), kl_sum=0.0, exact_kl_sum=0.0,
        next_logprobs=torch.zeros(5), candidate_ids=torch.zeros(2, dtype=torch.long),
        candidate_logprobs=torch.zeros(2), cache=None, signature={"top_k": 2},
    )  # fmt: skip
    return TextGenState(**{**fields, **changes})


def check(state_, **settings):
    shapes = dict(
        vocab_size=5, max_prompt_tokens=4, max_new_tokens=3, candidates=2, topk=False,
        prompt_texts=["a"],
    )  # fmt: skip
    check_state(state_, {"top_k": 2}, **{**shapes, **settings})


def test_a_state_is_checked_against_the_settings_then_the_shapes():
    with pytest.raises(ValueError, match="top_k: the state's 3, this env's 2"):
        check(state(signature={"top_k": 3}))
    with pytest.raises(ValueError, match="state holds 3 tokens with prompt_len=2"):
        check(state(), max_new_tokens=1)
    with pytest.raises(ValueError, match=r"state.tokens hold the id\(s\) \[7\]"):
        check(state(tokens=np.array([1, 2, 7])))
    with pytest.raises(ValueError, match="state.next_logprobs is a Tensor torch.float32"):
        check(state(next_logprobs=torch.zeros(4)))
    with pytest.raises(ValueError, match="state.cache does not hold the keys and values"):
        check(state())  # the rest fits: only the cache is refused


def test_step_results_report_the_same_values_in_row_and_batched_form():
    result = StepResult.empty(2, 0.05, scored=True)
    result.rewards[1], result.text[1], result.terminated[1] = 0.5, "done", True
    assert result.info_keys == INFO_KEYS + SCORER_INFO_KEYS
    assert result.row_info(1)["text"] == "done" and result.row_info(0)["kl_coef"] == 0.05
    batched = result.batched_info(np.array([False, True]))
    assert batched["text"].tolist() == ["", "done"] and batched["_text"].tolist() == [0, 1]
    assert list(result.finished) == [1]


# ------------------------------------------------------------------ rows


def started_rows(pad: int = 0) -> Rows:
    """Two rows of at most 3 generated tokens in 7 columns, started from prompts [5, 6] and [7]."""
    rows = Rows(2, 7, 3, pad)
    rows.start(np.array([0, 1]), PromptStarts([[5, 6], [7]], ["ab", "c"], np.array([1, -1])))
    return rows


def test_rows_start_right_padded_and_append_tokens_with_their_kl_rewards():
    rows = started_rows(pad=9)
    assert rows.started and rows.active.tolist() == [True, True]
    assert rows.input_ids.tolist() == [[5, 6, 9, 9, 9, 9, 9], [7, 9, 9, 9, 9, 9, 9]]
    assert rows.attention_mask.sum(1).tolist() == [2, 1] and rows.prompt_len.tolist() == [2, 1]
    rows.append(np.array([1]), np.array([3]), np.array([1]), np.array([-0.5]))
    assert rows.input_ids[1].tolist() == [7, 3, 9, 9, 9, 9, 9] and rows.gen_len.tolist() == [0, 1]
    assert rows.attention_mask[1].tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert rows.kl_rewards[1].tolist() == [-0.5, 0.0, 0.0]
    assert rows.sequences() == [[5, 6], [7, 3]]
    assert rows.next_states(np.array([1]), np.array([4]))[0][1] == [3, 4]
    assert rows.info(np.array([1]))["prompt"].tolist() == ["c"]
    rows.end(np.array([0]))
    assert rows.active.tolist() == [False, True]
    rows.kl_sum[1] = 2.0
    rows.start(np.array([1]), PromptStarts([[8, 8, 8]], ["d"], np.array([0])))
    assert rows.input_ids[1].tolist() == [8, 8, 8, 9, 9, 9, 9] and rows.kl_sum[1] == 0.0
    assert rows.gen_len[1] == 0 and rows.kl_rewards[1].tolist() == [0.0, 0.0, 0.0]


def test_rows_decode_a_finished_text_with_the_token_it_appends_now(tokenizer):
    rows = Rows(2, 6, 3, tokenizer.pad_token_id)
    ids = tokenizer("the movie")["input_ids"]
    more = tokenizer(" was great")["input_ids"]
    rows.start(np.array([0, 1]), PromptStarts([ids, ids], ["the movie"] * 2, np.zeros(2)))
    rows.append(np.array([0, 1]), np.array(more[:1] * 2), np.array([1, 1]), np.zeros(2))
    prompts, texts = rows.finished(np.array([0, 1]), np.array([more[1], -1]), tokenizer)
    assert prompts == ["the movie"] * 2
    assert texts == [tokenizer.decode(more[:2]), tokenizer.decode(more[:1])]


def test_rows_snapshot_and_restore_a_row_exactly():
    rows = started_rows()
    rows.append(np.array([0]), np.array([4]), np.array([1]), np.array([0.25]))
    rows.kl_sum[0], rows.exact_kl_sum[0] = 0.5, 0.75
    fields = rows.snapshot(0)
    assert fields["tokens"].tolist() == [5, 6, 4] and fields["kl_rewards"].tolist() == [0.25]
    state_ = TextGenState(
        **fields, next_logprobs=None, candidate_ids=None, candidate_logprobs=None,
        cache=None, signature={},
    )  # fmt: skip
    rows.end(np.array([1]))
    rows.restore(np.array([1]), state_)
    restored = rows.snapshot(1)
    for name, value in fields.items():
        np.testing.assert_array_equal(restored[name], value)
    assert rows.input_ids[1].tolist() == rows.input_ids[0].tolist() and rows.active[1]
    assert rows.row_prompt == ["ab", "ab"]


# ------------------------------------------------------------------ the reference's forwards


@pytest.fixture(scope="module")
def reference(tiny_gpt2):
    return load_causal_lm(str(tiny_gpt2), device="cpu")


def test_the_reference_must_fit_the_tokenizer_top_k_and_the_episode(reference, tokenizer):
    vocab = check_reference_fits(reference, tokenizer, 10, 8, 8)
    assert vocab == reference.get_output_embeddings().weight.shape[0]
    with pytest.raises(ValueError, match=f"top_k={vocab + 1} exceeds the vocabulary"):
        check_reference_fits(reference, tokenizer, vocab + 1, 8, 8)
    with pytest.raises(ValueError, match="max_prompt_tokens \\+ max_new_tokens = 100000"):
        check_reference_fits(reference, tokenizer, None, 50_000, 50_000)


def test_a_step_advances_the_going_rows_and_starts_the_restarted_ones(reference):
    rows = started_rows()
    forwards = ReferenceForwards(reference, rows, 0)
    starts = PromptStarts([[5, 6], [7]], ["ab", "c"], np.array([1, -1]))
    first = forwards.run(IncrementalLM.start, [0, 1], starts.ids)
    assert first.shape == (2, reference.get_output_embeddings().weight.shape[0])
    nothing = np.array([], dtype=np.int64)
    assert forwards.step(np.array([0]), np.array([4]), nothing, None) == (None, None)
    restart = (np.array([1]), PromptStarts([[8, 9]], ["d"], np.array([0])))
    going, restarted = forwards.step(np.array([0]), np.array([4]), np.array([0]), restart)
    alone = IncrementalLM(reference, 1, 0)
    alone.start([0], [[5, 6]])
    torch.testing.assert_close(going, alone.advance(torch.tensor([4])))
    torch.testing.assert_close(restarted, alone.start([0], [[8, 9]]))


def test_a_failed_forward_drops_the_cache_which_is_rebuilt_from_the_rows_tokens(reference):
    rows = started_rows()
    forwards = ReferenceForwards(reference, rows, 0)
    forwards.run(IncrementalLM.start, [0, 1], [[5, 6], [7]])
    forwards.run(IncrementalLM.advance, torch.tensor([1, 2]))
    rows.append(np.array([0, 1]), np.array([1, 2]), np.array([1, 1]), np.zeros(2))

    def fail(kv, *args):
        raise RuntimeError("forward down")

    with pytest.raises(RuntimeError, match="forward down"):
        forwards.run(fail)
    assert forwards.lm is None
    again = forwards.run(IncrementalLM.advance, torch.tensor([3, 3]))
    rebuilt = IncrementalLM(reference, 2, 0)
    rebuilt.start([0, 1], [[5, 6, 1], [7, 2]])
    torch.testing.assert_close(again, rebuilt.advance(torch.tensor([3, 3])))
    copy = pickle.loads(pickle.dumps(forwards))
    assert copy.lm is None and forwards.lm is not None and copy.rows.sequences() == rows.sequences()


# ------------------------------------------------------------------ spaces


def test_observations_hold_the_candidates_in_topk_mode_only():
    assert set(observation_space(6, 50, "vocab", 10).spaces) == {"input_ids", "attention_mask"}
    space = observation_space(6, 50, "topk", 3)
    assert space["candidate_ids"].shape == (3,) and space["input_ids"].high.max() == 49


def test_actions_are_checked_for_every_row_and_taken_for_the_stepped_ones():
    taken = check_actions(np.array([1, 2, 3]), np.array([0, 2]), 3, 4, "actions", True)
    assert taken.tolist() == [1, 3] and taken.dtype == np.int64
    assert check_actions(2, np.array([0]), 1, 4, "action", False).tolist() == [2]
    with pytest.raises(ValueError, match=r"actions=array\(\[1, 2, 4\]\) is out of range"):
        check_actions(np.array([1, 2, 4]), np.array([0]), 3, 4, "actions", True)
    with pytest.raises(ValueError, match="has shape \\(2,\\): expected shape \\(3,\\)"):
        check_actions(np.array([1, 2]), np.array([0]), 3, 4, "actions", True)
    with pytest.raises(TypeError, match="action=1.5 has type float"):
        check_actions(1.5, np.array([0]), 1, 4, "action", False)
