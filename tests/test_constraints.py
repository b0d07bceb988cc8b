"""Constraints: the allowed tokens mask the actions; the reference and the KL live on them."""

from __future__ import annotations

import numpy as np
import pytest
import regex
import torch
from conftest import small_textgen

from textgym.constraints import ConstraintError, Regex, TokenSet
from textgym.envs.textgen import TextGenEnv
from textgym.envs.textgen_core import exact_kl
from textgym.envs.textgen_vector import TextGenVectorEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens")


def kwargs(model, **extra):
    return small_textgen(model, top_k=None) | extra


def skewed(n):
    logprobs = torch.log_softmax(torch.linspace(0, 3, n), -1).numpy()
    return lambda obs: np.tile(logprobs, (len(obs["input_ids"]), 1))


def full_logits(model, obs) -> torch.Tensor:
    ids = torch.as_tensor(obs["input_ids"])[None]
    mask = torch.as_tensor(obs["attention_mask"])[None]
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits[0, int(mask.sum()) - 1].float()


def on(support: np.ndarray, logprobs: np.ndarray) -> np.ndarray:
    """``logprobs`` renormalised over ``support``, -inf outside: the direct computation."""
    out = np.full_like(logprobs, -np.inf, dtype=np.float64)
    kept = logprobs[support].astype(np.float64)
    out[support] = kept - np.log(np.exp(kept).sum())
    return out


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
def test_the_reference_and_the_kl_live_on_the_allowed_tokens(fixture, request):
    model = request.getfixturevalue(fixture)
    allowed = TokenSet((5, 7, 9, 11, 13), eos_token_id=None)
    env = TextGenEnv(**kwargs(model, constraint=allowed))
    scorer = skewed(env.action_space.n)
    env.attach_policy(scorer)
    obs, _ = env.reset(seed=0)
    support = np.zeros(env.action_space.n, dtype=bool)
    support[list(allowed.ids)] = True
    for action in (7, 13, 5):
        ref = on(support, torch.log_softmax(full_logits(env.reference_model, obs), -1).numpy())
        got = env.reference_logprobs()
        assert np.isneginf(got[~support]).all()
        np.testing.assert_allclose(got[support], ref[support], atol=1e-5)
        assert np.flatnonzero(env.action_masks()).tolist() == list(allowed.ids)
        policy = on(support, scorer(obs)[0])
        obs, reward, _, _, info = env.step(action)
        # k1 on the renormalised pair; the exact KL sums over the allowed tokens alone.
        assert info["policy_logprob"] == pytest.approx(policy[action], abs=1e-5)
        assert info["ref_logprob"] == pytest.approx(ref[action], abs=1e-5)
        assert info["kl"] == pytest.approx(policy[action] - ref[action], abs=1e-5)
        p = np.exp(policy[support])
        direct = float((p * (policy[support] - ref[support])).sum())
        assert info["exact_kl"] == pytest.approx(direct, abs=1e-5)
        assert reward == pytest.approx(-0.3 * info["kl"], abs=1e-5)
    assert exact_kl(policy[None], policy[None])[0] == 0.0  # -inf outside both: no NaN


def test_an_action_outside_the_constraint_is_refused_and_changes_nothing(tiny_gpt2):
    env = TextGenEnv(**kwargs(tiny_gpt2, constraint=TokenSet((5, 7), eos_token_id=2)))
    obs, _ = env.reset(seed=0)
    ref = env.reference_logprobs()
    with pytest.raises(ValueError, match="action=6 in row 0 is token 6, which the constraint"):
        env.step(6)
    np.testing.assert_array_equal(env.unwrapped.core.observe(0)["input_ids"], obs["input_ids"])
    np.testing.assert_array_equal(env.reference_logprobs(), ref)
    obs, *_ = env.step(7)  # the env goes on
    assert obs["input_ids"][int(obs["attention_mask"].sum()) - 1] == 7


def test_topk_candidates_are_the_most_likely_allowed_tokens(tiny_gpt2):
    allowed = TokenSet((5, 7, 9), eos_token_id=None)
    env = TextGenEnv(**kwargs(tiny_gpt2, constraint=allowed, action_mode="topk", top_k=5))
    obs, _ = env.reset(seed=1)
    logits = full_logits(env.reference_model, obs)
    order = sorted(allowed.ids, key=lambda i: -float(logits[i]))
    assert obs["candidate_ids"][:3].tolist() == order
    assert np.isneginf(obs["candidate_logprobs"][3:]).all()  # fewer allowed tokens than k
    assert np.exp(obs["candidate_logprobs"][:3]).sum() == pytest.approx(1.0, abs=1e-5)
    assert env.action_masks().tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="action=4 .* constraint does not allow"):
        env.step(4)


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
def test_a_regex_constraint_makes_every_text_match(fixture, request):
    model = request.getfixturevalue(fixture)
    probe = TextGenEnv(**kwargs(model))
    tokenizer = probe.unwrapped.tokenizer
    # Words the tiny vocabulary spells, so the pattern can be met in a few tokens.
    words = sorted({tokenizer.decode([i]).strip() for i in range(3, 60)} - {""})[:4]
    pattern = "(" + "|".join(regex.escape(w) for w in words) + r")( ?[a-z]+){0,3}"
    constraint = Regex(pattern, tokenizer)
    venv = TextGenVectorEnv(
        3, **kwargs(model, constraint=constraint, max_new_tokens=10, missing_eos_penalty=1.0)
    )
    rng = np.random.default_rng(0)
    venv.reset(seed=0)
    ended = []  # (text, whether it ended with EOS)
    while len(ended) < 6:
        masks = venv.action_masks()
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        _, _, terminated, _, infos = venv.step(actions)
        ended += [
            (infos["text"][r], infos["eos_penalty"][r] == 0) for r in np.flatnonzero(terminated)
        ]
    for text, eos in ended:
        # Ended by EOS: a match; cut by max_new_tokens: still on the way to one.
        assert regex.fullmatch(pattern, text, partial=not eos), (text, eos)
    assert constraint == Regex(pattern, tokenizer) != Regex(pattern + "x", tokenizer)


def test_equal_constraints_share_snapshots(tiny_gpt2):
    a = TextGenEnv(**kwargs(tiny_gpt2, constraint=TokenSet((5, 7, 9))))
    b = TextGenEnv(**kwargs(tiny_gpt2, constraint=TokenSet((9, 7, 5))))
    c = TextGenEnv(**kwargs(tiny_gpt2, constraint=TokenSet((5, 7))))
    for env in (a, b, c):
        env.reset(seed=0)
    a.step(7)
    state = a.snapshot()
    b.restore(state)
    np.testing.assert_allclose(b.reference_logprobs(), a.reference_logprobs(), atol=1e-6)
    with pytest.raises(ValueError, match="constraint"):
        c.restore(state)


def test_bad_constraints_are_refused(tiny_gpt2):
    with pytest.raises(TypeError, match="constraint=3 is not callable"):
        TextGenEnv(**kwargs(tiny_gpt2, constraint=3))
    cases = [
        (lambda p, g: [], "allowed no token"),
        (lambda p, g: [10**9], "outside \\[0, "),
        (lambda p, g: np.ones(3, dtype=bool), "bool mask of shape \\(3,\\)"),
        (lambda p, g: ["a"], "expected the allowed token ids"),
        (lambda p, g: 1 / 0, "raised: ZeroDivisionError"),
    ]
    for constraint, message in cases:
        env = TextGenEnv(**kwargs(tiny_gpt2, constraint=constraint))
        with pytest.raises(ConstraintError, match=message):
            env.reset(seed=0)
    # A constraint that fails mid-episode: the step raises and changes nothing.
    calls = []

    def fails_on_second_token(prompt, generated):
        calls.append(len(generated))
        if len(generated) == 2:
            raise KeyError("no rule")
        return [5, 7]

    env = TextGenEnv(**kwargs(tiny_gpt2, constraint=fails_on_second_token))
    env.reset(seed=0)
    env.step(5)
    obs = env.unwrapped.core.observe(0)
    with pytest.raises(ConstraintError, match="KeyError"):
        env.step(7)
    np.testing.assert_array_equal(env.unwrapped.core.observe(0)["input_ids"], obs["input_ids"])
    assert env.unwrapped.core.gen_len[0] == 1
    with pytest.raises(ValueError, match="ids=\\(\\)"):
        TokenSet(())


def test_only_a_bool_array_is_a_mask_and_a_0_1_int_array_of_length_v_is_refused(tiny_gpt2):
    vocab = TextGenEnv(**kwargs(tiny_gpt2)).action_space.n
    mask = np.zeros(vocab, dtype=bool)
    mask[[5, 7]] = True
    ambiguous = (
        "returned .* integers, all 0 or 1, .*a 0/1 mask or token ids\\? Expected a bool mask"
    )
    for allowed in (mask.astype(np.int64), mask.astype(np.uint8), mask.astype(int).tolist()):
        env = TextGenEnv(**kwargs(tiny_gpt2, constraint=lambda p, g, a=allowed: a))
        with pytest.raises(ConstraintError, match=ambiguous):
            env.reset(seed=0)
    accepted = {  # what the constraint returns: the tokens it allows
        "bool mask": (mask, [5, 7]),
        "bool tensor": (torch.from_numpy(mask), [5, 7]),
        "id list": ([7, 5], [5, 7]),
        "int array of V ids, not all 0/1": (np.r_[[2] * (vocab - 1), 9], [2, 9]),
    }
    for name, (allowed, ids) in accepted.items():
        env = TextGenEnv(**kwargs(tiny_gpt2, constraint=lambda p, g, a=allowed: a))
        env.reset(seed=0)
        assert np.flatnonzero(np.isfinite(env.reference_logprobs())).tolist() == ids, name


def test_a_token_set_from_words_allows_their_tokens_and_eos(tiny_gpt2):
    env = TextGenEnv(**kwargs(tiny_gpt2))
    tokenizer = env.unwrapped.tokenizer
    allowed = TokenSet.from_words(tokenizer, ["movie", "plot"])
    ids = set(allowed.ids)
    for text in ("movie", " movie", "plot", " plot"):
        assert set(tokenizer.encode(text, add_special_tokens=False)) <= ids
    assert allowed(np.array([1]), np.array([], dtype=np.int64))[-1] == tokenizer.eos_token_id
    assert TokenSet.from_words(tokenizer, ["movie"], end=False).eos_token_id is None
    assert TokenSet.from_words(tokenizer, ["plot", "movie"]) == allowed  # a set: order-free
