"""Branches: ``snapshot()`` / ``restore(state)`` on the single env, ``fork`` rows of the vector
env. A restored state continues exactly: the same next-token log-probs (within 1e-5 of a
full recompute), the same rewards for the same actions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import small_textgen

from textgym.envs.textgen import TextGenEnv
from textgym.envs.textgen_core import TextGenState
from textgym.envs.textgen_vector import TextGenVectorEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens")


def kwargs(model, **extra):
    return small_textgen(model, max_new_tokens=8, top_k=6) | extra


def skewed_scorer(n):
    """A fixed policy that is not the reference, so the KL rewards are not zero."""
    logprobs = torch.log_softmax(torch.linspace(0, 2, n), -1).numpy()
    return lambda obs: np.tile(logprobs, (len(obs["input_ids"]), 1))


def full_logprobs(model, ids, mask) -> torch.Tensor:
    ids_t, mask_t = torch.as_tensor(ids)[None], torch.as_tensor(mask)[None]
    with torch.no_grad():
        logits = model(input_ids=ids_t, attention_mask=mask_t).logits
    return torch.log_softmax(logits[0, int(mask_t.sum()) - 1].float(), -1)


def text_actions(env, count, rng):
    """Steps ``env`` with ``count`` random valid actions that are not EOS; the actions and the
    step results."""
    core = env.unwrapped.core
    actions, results = [], []
    for _ in range(count):
        mask = core.action_masks([0])[0]
        ids = core._cand_ids[0].numpy() if core.action_mode == "topk" else np.arange(len(mask))
        actions.append(int(rng.choice(np.flatnonzero(mask & (ids != core.eos_token_id)))))
        results.append(env.step(actions[-1]))
    return actions, results


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_a_restored_state_continues_exactly(fixture, action_mode, request):
    model = request.getfixturevalue(fixture)
    env = TextGenEnv(**kwargs(model, action_mode=action_mode), render_mode="ansi")
    env.attach_policy(skewed_scorer(env.action_space.n))
    rng = np.random.default_rng(0)
    env.reset(seed=1, options={"prompt_index": 1})
    text_actions(env, 3, rng)
    obs = env.unwrapped.core.observe(0)
    state = env.snapshot()
    reference = env.reference_logprobs()
    picture = env.render()
    assert isinstance(state, TextGenState) and len(state.generated) == 3

    # Run on to the end, then restore: observation, log-probs, render and the rest agree.
    actions, first = text_actions(env, 5, rng)
    assert first[-1][2]  # max_new_tokens
    restored_obs, info = env.restore(state)
    for key, value in obs.items():
        np.testing.assert_array_equal(restored_obs[key], value)
    assert info["prompt_index"] == 1
    np.testing.assert_allclose(env.reference_logprobs(), reference, atol=1e-5, rtol=1e-5)
    vocab = env.unwrapped.core._next_logprobs[0]
    full = full_logprobs(env.unwrapped.reference_model, obs["input_ids"], obs["attention_mask"])
    torch.testing.assert_close(vocab, full, atol=1e-5, rtol=1e-5)
    assert env.render() == picture
    second = [env.step(action) for action in actions]
    for (o1, r1, t1, _, i1), (o2, r2, t2, _, i2) in zip(first, second):
        assert (t1, i1["text"] if t1 else None) == (t2, i2["text"] if t2 else None)
        assert r2 == pytest.approx(r1, abs=1e-5)
        assert i2["episode_kl"] == pytest.approx(i1["episode_kl"], abs=1e-5)
        np.testing.assert_array_equal(o1["input_ids"], o2["input_ids"])


def test_a_state_moves_between_envs_and_into_a_fresh_one(tiny_gpt2):
    source = TextGenEnv(**kwargs(tiny_gpt2))
    source.reset(seed=0, options={"prompt_index": 0})
    text_actions(source, 2, np.random.default_rng(1))
    state = source.snapshot()
    target = TextGenEnv(**kwargs(tiny_gpt2))
    target.reset(seed=5, options={"prompt_index": 1})  # a longer prompt: the cache is wider
    obs, info = target.restore(state)
    assert info["prompt"] == state.prompt
    np.testing.assert_array_equal(obs["input_ids"][: len(state.tokens)], state.tokens)
    np.testing.assert_allclose(
        target.reference_logprobs(), source.reference_logprobs(), atol=1e-5, rtol=1e-5
    )
    # Both continue alike (no scorer: the reward is beta times the reference log-prob).
    for action in (3, 4, 5):
        assert target.step(action)[1] == pytest.approx(source.step(action)[1], abs=1e-5)


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_fork_gives_rows_the_same_state_and_they_diverge_by_their_actions(tiny_llama, action_mode):
    venv = TextGenVectorEnv(4, **kwargs(tiny_llama, action_mode=action_mode))
    venv.attach_policy(skewed_scorer(venv.single_action_space.n))
    obs, _ = venv.reset(seed=0, options={"prompt_index": [1, 0, 2, 0]})
    for action in (1, 2, 3):
        obs, *_ = venv.step(np.full(4, action))
    obs, infos = venv.fork(0, [1, 3])
    assert infos["_prompt"].tolist() == [False, True, False, True]
    assert infos["prompt_index"][[1, 3]].tolist() == [1, 1]
    for value in obs.values():
        np.testing.assert_array_equal(value[1], value[0])
        np.testing.assert_array_equal(value[3], value[0])
    np.testing.assert_array_equal(obs["input_ids"][2], venv.core.input_ids[2])  # untouched
    ref = venv.core.reference_logprobs()
    np.testing.assert_allclose(ref[[1, 3]], ref[[0, 0]], atol=1e-5, rtol=1e-5)
    full = full_logprobs(venv.reference_model, obs["input_ids"][1], obs["attention_mask"][1])
    torch.testing.assert_close(venv.core._next_logprobs[1], full, atol=1e-5, rtol=1e-5)
    # The same action in rows 0, 1, 3 pays the same; row 1 then takes another branch.
    obs, rewards, _, _, infos = venv.step(np.array([4, 4, 0, 4]))
    assert rewards[1] == pytest.approx(rewards[0], abs=1e-5) == pytest.approx(rewards[3])
    assert infos["episode_kl"][1] == pytest.approx(infos["episode_kl"][0], abs=1e-5)
    obs, *_ = venv.step(np.array([1, 5, 1, 1]))
    assert (obs["input_ids"][1] != obs["input_ids"][0]).any()
    live = [0, 1, 3]
    for row in live:
        full = full_logprobs(
            venv.reference_model, obs["input_ids"][row], obs["attention_mask"][row]
        )
        torch.testing.assert_close(venv.core._next_logprobs[row], full, atol=1e-5, rtol=1e-5)


def test_fork_into_a_row_due_to_restart_continues_the_state(tiny_gpt2):
    venv = TextGenVectorEnv(2, **kwargs(tiny_gpt2, max_new_tokens=3))
    venv.reset(seed=0)
    venv.step(np.array([1, 0]))  # row 1 ends with EOS: it is due to restart on the next step
    _, _, terminated, _, _ = venv.step(np.array([2, 0]))
    obs, _ = venv.fork(0, 1)
    np.testing.assert_array_equal(obs["input_ids"][1], obs["input_ids"][0])
    _, rewards, terminated, _, _ = venv.step(np.array([3, 3]))
    assert terminated.tolist() == [True, True]  # the third token ends both: max_new_tokens
    assert rewards[1] == pytest.approx(rewards[0], abs=1e-5)


def test_bad_snapshots_and_restores_are_refused(tiny_gpt2, tiny_llama):
    env = TextGenEnv(**kwargs(tiny_gpt2, max_new_tokens=2))
    with pytest.raises(RuntimeError, match="reset"):
        env.snapshot()
    env.reset(seed=0)
    state = env.snapshot()
    env.step(1)
    env.step(1)  # max_new_tokens: the episode ends
    with pytest.raises(RuntimeError, match="snapshot\\(\\) of row 0, whose text has ended"):
        env.snapshot()
    with pytest.raises(TypeError, match="state=.*expected a TextGenState"):
        env.restore({"tokens": [1, 2]})
    other = TextGenEnv(**kwargs(tiny_llama))
    other.reset(seed=0)
    before = other.unwrapped.core.observe(0)
    with pytest.raises(ValueError, match="expected a state of an env with the same settings"):
        other.restore(state)
    for key, value in other.unwrapped.core.observe(0).items():  # nothing changed
        np.testing.assert_array_equal(value, before[key])
    env.restore(state)  # an ended episode can be taken up again from its snapshot
    assert not env.step(1)[2]

    venv = TextGenVectorEnv(4, **kwargs(tiny_gpt2))
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="row=4: expected a row index"):
        venv.fork(4, [0])
    with pytest.raises(
        ValueError, match=r"rows=\[1, -1\]: expected a row index or a non-empty list"
    ):
        venv.fork(0, [1, -1])
    grouped = TextGenVectorEnv(4, **kwargs(tiny_gpt2, group_size=2))
    grouped.reset(seed=0)
    with pytest.raises(ValueError, match="group_size=2"):
        grouped.fork(0, [2])


def twins(model, **settings):
    """Two envs made and stepped alike: one to try a call on, one that never sees it."""
    envs = []
    for _ in range(2):
        env = TextGenEnv(**kwargs(model, **settings))
        env.attach_policy(skewed_scorer(env.action_space.n))
        env.reset(seed=3, options={"prompt_index": 0})
        env.step(3)
        envs.append(env)
    return envs


def assert_steps_alike(env, twin, actions=(9, 11, 13, 15, 17, 19, 21)):
    """``env`` and ``twin`` step alike to the episode's end: the same observations, rewards,
    flags and infos, exactly."""
    for action in actions:
        got, want = env.step(action), twin.step(action)
        for key, value in want[0].items():
            np.testing.assert_array_equal(got[0][key], value)
        assert got[1:] == want[1:]
        if want[2]:
            return
    raise AssertionError("the episode did not end")


def snapshot_of(model, steps=1, **settings) -> TextGenState:
    """A snapshot after ``steps`` tokens of prompt 0, in an env of ``kwargs(model, **settings)``."""
    source = TextGenEnv(**kwargs(model, **settings))
    source.attach_policy(skewed_scorer(source.action_space.n))
    source.reset(seed=0, options={"prompt_index": 0})
    for _ in range(steps):
        source.step(5)
    return source.snapshot()


@pytest.mark.parametrize(
    "settings, match",
    [
        # vocab mode: top_k shapes the candidates (and action_masks); once overwrote the
        # next-token log-probs before torch refused the candidates' shape
        ({"top_k": 4}, "top_k: the state's 4, this env's 6"),
        ({"top_p": 0.9}, "top_p: the state's 0.9, this env's 1.0"),
        ({"kl_estimator": "k3"}, "kl_estimator: the state's 'k3', this env's 'k1'"),
        ({"kl_coef": 0.1}, "kl_coef: the state's 0.1, this env's 0.3"),
        ({"kl_target": 2.0}, "kl_target: the state's 2.0, this env's None; kl_horizon"),
        ({"reward_model": lambda p, t: [0.0] * len(t)}, "reward_model: the state's <function"),
        ({"missing_eos_penalty": 1.0}, "missing_eos_penalty: the state's 1.0, this env's 0.0"),
        (
            {"normalize_reward": True},
            r"normalize_reward: the state's \(.*\), this env's \(1.0, 0.0",
        ),
        ({"max_new_tokens": 9}, "max_new_tokens: the state's 9, this env's 8"),
    ],
)
def test_a_state_of_other_settings_is_refused_naming_them_and_changes_nothing(
    tiny_gpt2, settings, match
):
    state = snapshot_of(tiny_gpt2, **settings)
    env, twin = twins(tiny_gpt2)
    with pytest.raises(ValueError, match=f"other settings \\({match}"):
        env.restore(state)
    assert_steps_alike(env, twin)


def altered(state: TextGenState, env: TextGenEnv, longer: TextGenState):
    """``state`` with one field changed so that it no longer fits ``env`` (one from ``longer``,
    a longer state), and the message that refuses it."""
    core = env.unwrapped.core
    vocab, tokens = core.vocab_size, state.tokens
    full = core.max_new_tokens - len(state.generated)
    replace = dataclasses.replace
    return [
        (replace(state, tokens=np.append(tokens[:-1], vocab)), rf"hold the id\(s\) \[{vocab}\]"),
        (replace(state, tokens=tokens.astype(float)), "state.tokens=.*1-D integer numpy"),
        (replace(state, tokens=np.append(tokens, [5] * full)), "an episode in progress"),
        (replace(state, prompt_len=0), "prompt_len=0: expected a prompt of 1 to 24"),
        (replace(state, prompt_index=1), "prompt_index=1 is the prompt ' quiet drama"),
        (replace(state, prompt_index=7), "prompt_index=7: expected -1 .* this env's 3 prompts"),
        (replace(state, kl_rewards=state.kl_rewards[:0]), r"state.kl_rewards .*shape \(0,\)"),
        (replace(state, next_logprobs=state.next_logprobs.numpy()), "state.next_logprobs is a nd"),
        (replace(state, candidate_ids=torch.zeros(3, dtype=torch.long)), r"candidate_ids .*\(3,"),
        (replace(state, candidate_logprobs=state.candidate_ids), "candidate_logprobs is a .*int"),
        (replace(state, kl_sum="0.5"), "state.kl_sum='0.5': expected a number"),
        (replace(state, cache=longer.cache), f"state.cache does not hold .* {len(tokens)} tokens"),
        (replace(state, signature=("a", 1)), r"signature=\('a', 1\), expected a dict"),
    ]


def test_a_state_that_does_not_fit_the_env_is_refused_and_changes_nothing(tiny_gpt2):
    env, twin = twins(tiny_gpt2)
    state, longer = snapshot_of(tiny_gpt2), snapshot_of(tiny_gpt2, steps=2)
    assert len(longer.tokens) == len(state.tokens) + 1
    for bad, match in altered(state, env, longer):
        with pytest.raises(ValueError, match=match):
            env.restore(bad)
    assert_steps_alike(env, twin)
    env.restore(state)  # the state itself fits


def test_a_topk_state_whose_candidates_are_outside_the_vocabulary_is_refused(tiny_gpt2):
    env, twin = twins(tiny_gpt2, action_mode="topk")
    state = snapshot_of(tiny_gpt2, action_mode="topk")
    vocab = env.unwrapped.core.vocab_size
    bad = dataclasses.replace(state, candidate_ids=state.candidate_ids + vocab)
    with pytest.raises(
        ValueError, match=f"state.candidate_ids=.*expected token ids in \\[0, {vocab}"
    ):
        env.restore(bad)
    assert_steps_alike(env, twin, actions=(1, 2, 3, 4, 5, 1, 2))
    env.restore(state)


def test_a_refused_vector_restore_changes_no_row(tiny_gpt2):
    state = snapshot_of(tiny_gpt2, kl_estimator="k2")
    envs = []
    for _ in range(2):
        venv = TextGenVectorEnv(3, **kwargs(tiny_gpt2))
        venv.attach_policy(skewed_scorer(venv.single_action_space.n))
        venv.reset(seed=0)
        venv.step(np.array([4, 5, 6]))
        envs.append(venv)
    venv, twin = envs
    with pytest.raises(ValueError, match="kl_estimator: the state's 'k2', this env's 'k1'"):
        venv.restore(state, [0, 2])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        mine = venv.snapshot(1)
        venv.restore(dataclasses.replace(mine, tokens=np.append(mine.tokens[:-1], 10**6)), 2)
    for actions in ([7, 8, 9], [10, 11, 12]):
        got, want = venv.step(np.array(actions)), twin.step(np.array(actions))
        for key, value in want[0].items():
            np.testing.assert_array_equal(got[0][key], value)
        for mine, theirs in zip(got[1:4], want[1:4]):
            np.testing.assert_array_equal(mine, theirs)
        assert got[4].keys() == want[4].keys()
        for key, value in want[4].items():
            np.testing.assert_array_equal(got[4][key], value)


def test_a_restored_state_pays_the_restoring_envs_current_beta(tiny_gpt2):
    """States carry no beta: with kl_target the beta moves as episodes end, and the steps after
    a restore pay the restoring env's beta of now (info["kl_coef"])."""
    env = TextGenEnv(**kwargs(tiny_gpt2, kl_target=0.01, kl_horizon=10))
    env.attach_policy(skewed_scorer(env.action_space.n))
    env.reset(seed=0, options={"prompt_index": 0})
    env.step(5)
    state = env.snapshot()
    before = env.kl_coef
    for _ in range(3):  # whole episodes: each moves beta
        env.reset(seed=1)
        text_actions(env, 8, np.random.default_rng(2))
    assert env.kl_coef != before
    env.restore(state)
    *_, info = env.step(9)
    assert info["kl_coef"] == env.kl_coef
    assert info["kl_reward"] == pytest.approx(-env.kl_coef * info["kl"], rel=1e-6)


def test_states_move_between_envs_whose_reward_models_score_alike(tiny_gpt2):
    """Each env made with reward_model="sentiment" holds its own VADER: the same scorer."""
    state = snapshot_of(tiny_gpt2, reward_model="sentiment")
    env = TextGenEnv(**kwargs(tiny_gpt2, reward_model="sentiment"))
    env.reset(seed=0)
    obs, _ = env.restore(state)
    np.testing.assert_array_equal(obs["input_ids"][: len(state.tokens)], state.tokens)
