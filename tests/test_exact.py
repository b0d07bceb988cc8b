"""TextGenExact-v0 and `textgym.exact.ExactSolver`: the enumeration against the env itself and
against Monte-Carlo, the optimum's value, and the gap of other policies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import textgym  # noqa: F401
from textgym.exact import ExactSolver
from textgym.rewards import LexiconReward


@pytest.fixture(scope="module")
def env():
    return gym.make("TextGenExact-v0")


@pytest.fixture(scope="module")
def solver(env):
    return ExactSolver(env)


def _uniform(n):
    return lambda obs: np.full((len(obs["input_ids"]), n), -np.log(n))


def _index(tree):
    return {
        tuple(row[:length]): i for i, (row, length) in enumerate(zip(tree.tokens, tree.lengths))
    }


def test_the_registered_task(env, solver):
    assert env.action_space.n == 12 and env.observation_space["input_ids"].shape == (8,)
    assert env.unwrapped.kl_coef == 0.1 and env.unwrapped.prompts == ["film", "plot"]
    envs = gym.make_vec("TextGenExact-v0", num_envs=3, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=0)
    assert obs["input_ids"].shape == (3, 8)
    # 1 + 11 + 11^2 + 11^3 sequences end with EOS, 11^4 at the horizon, per prompt.
    assert [len(tree.tokens) for tree in solver.trees] == [16_105, 16_105]
    for tree in solver.trees:  # every sequence once
        assert len(_index(tree)) == len(tree.tokens)
        assert np.exp(tree.ref_logprob).sum() == pytest.approx(1.0, abs=1e-9)


def test_the_tree_is_what_the_env_computes(env, solver):
    """Walked through the env: at every state the reference's next-token log-probs are the
    tree's, and each finished sequence is paid the tree's reward."""
    rng = np.random.default_rng(0)
    unwrapped = env.unwrapped
    for episode in range(40):
        prompt_index = episode % 2
        tree = solver.trees[prompt_index]
        env.reset(options={"prompt_index": prompt_index})
        tokens, depth, row = [], 0, 0
        while True:
            expected = tree.reference_next[depth][row]
            np.testing.assert_allclose(unwrapped.reference_logprobs(), expected, atol=1e-5)
            action = int(rng.choice(12, p=np.exp(expected) / np.exp(expected).sum()))
            _, _, terminated, _, info = env.step(action)
            tokens.append(action)
            if terminated:
                break
            depth += 1
            (row,) = np.flatnonzero((tree.prefixes[depth] == tokens).all(axis=1))
        i = _index(tree)[tuple(tokens)]
        assert info["rm_score"] - info["eos_penalty"] == pytest.approx(tree.reward[i])


def test_the_enumeration_agrees_with_monte_carlo(solver):
    """The reference's expected reward and its distribution over first tokens, from 4,000
    episodes sampled by the batched env, within 4 standard errors."""
    envs = gym.make_vec("TextGenExact-v0", num_envs=64, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=1)
    core = envs.unwrapped.core
    rng = np.random.default_rng(1)
    rewards, first = [], []
    while len(rewards) < 4000:
        probs = np.exp(core.reference_logprobs().astype(np.float64))
        actions = np.array([rng.choice(12, p=p / p.sum()) for p in probs])
        fresh = obs["attention_mask"].sum(axis=1) == 2  # <|bos|> and the prompt's word
        first += [
            (int(ids[1] == 5), int(a)) for ids, a in zip(obs["input_ids"][fresh], actions[fresh])
        ]
        obs, _, terminated, _, infos = envs.step(actions)
        rewards += list(infos["rm_score"][terminated])
    exact = solver.evaluate()["reward"]
    spread = np.std(rewards) / np.sqrt(len(rewards))
    assert abs(np.mean(rewards) - exact) < 4 * spread
    for prompt_index, tree in enumerate(solver.trees):
        drawn = np.array([a for p, a in first if p == prompt_index])
        expected = np.exp(tree.reference_next[0][0])
        for token in np.flatnonzero(expected > 0.05):
            share, p = np.mean(drawn == token), expected[token]
            assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / len(drawn)), (prompt_index, token)


def test_the_optimum_is_worth_beta_log_z(solver):
    optimum = solver.evaluate(solver.optimal_scorer())
    assert optimum["objective"] == pytest.approx(solver.beta * solver.log_partition().mean())
    assert optimum["objective"] == pytest.approx(optimum["optimum"], abs=1e-9)
    assert abs(optimum["gap"]) < 1e-9 and abs(optimum["kl_to_optimum"]) < 1e-9
    # pi*'s sequence probabilities are pi_ref exp(R / beta) / Z, and sum to 1.
    for log_star, log_pi in zip(
        solver.optimal_logprobs(), solver.sequence_logprobs(solver.optimal_scorer())
    ):
        np.testing.assert_allclose(log_pi, log_star, atol=1e-6)
        assert np.exp(log_star).sum() == pytest.approx(1.0)


def test_every_episode_of_the_optimum_returns_beta_log_z(env, solver):
    """Attached and sampled from, pi* makes every episode's return (the env's own k1 KL step
    rewards and the RM score) exactly beta log Z of its prompt: R - beta log(pi*/pi_ref) is
    constant."""
    scorer = solver.optimal_scorer()
    log_z = solver.log_partition()
    env.unwrapped.attach_policy(scorer)
    rng = np.random.default_rng(2)
    try:
        for episode in range(30):
            obs, info = env.reset(seed=episode)
            total, terminated = 0.0, False
            while not terminated:
                p = np.exp(scorer({k: v[None] for k, v in obs.items()})[0].astype(np.float64))
                obs, reward, terminated, _, info = env.step(int(rng.choice(12, p=p / p.sum())))
                total += reward
            assert total == pytest.approx(solver.beta * log_z[info["prompt_index"]], abs=1e-4)
    finally:
        env.unwrapped.attach_policy(None)


@pytest.mark.parametrize("policy", ["reference", "uniform", "tilted"])
def test_the_gap_is_beta_times_the_kl_to_the_optimum(solver, policy):
    scorer = {
        "reference": None,
        "uniform": _uniform(12),
        "tilted": ExactSolver(gym.make("TextGenExact-v0"), beta=0.3).optimal_scorer(),
    }[policy]
    figures = solver.evaluate(scorer)
    assert figures["gap"] > 0.01
    assert figures["gap"] == pytest.approx(solver.beta * figures["kl_to_optimum"], rel=1e-6)
    assert figures["objective"] == pytest.approx(figures["reward"] - solver.beta * figures["kl"])
    if policy == "reference":
        assert figures["kl"] == 0.0


def test_the_objective_is_the_envs_expected_return(solver):
    """J(pi) is the mean return of episodes that pi acts in, paid by the env (k1): a policy
    other than the reference and the optimum (pi* of beta 0.3), 3,000 episodes."""
    tilted = ExactSolver(gym.make("TextGenExact-v0"), beta=0.3).optimal_scorer()
    envs = gym.make_vec("TextGenExact-v0", num_envs=64, vectorization_mode="vector_entry_point")
    envs.unwrapped.attach_policy(tilted)
    obs, _ = envs.reset(seed=3)
    rng = np.random.default_rng(3)
    totals, running = [], np.zeros(64)
    ended = np.zeros(64, dtype=bool)  # these rows' next step resets them: no action is read
    while len(totals) < 3000:
        actions = np.zeros(64, dtype=np.int64)
        probs = np.exp(tilted({k: v[~ended] for k, v in obs.items()}))
        actions[~ended] = [rng.choice(12, p=p / p.sum()) for p in probs]
        obs, rewards, ended, _, _ = envs.step(actions)
        running += rewards
        totals += list(running[ended])
        running[ended] = 0.0
    exact = solver.evaluate(tilted)["objective"]
    assert abs(np.mean(totals) - exact) < 4 * np.std(totals) / np.sqrt(len(totals))


def test_a_changed_task_is_enumerated_as_changed():
    env = gym.make("TextGenExact-v0", kl_coef=0.5, prompts=["film"], max_new_tokens=2)
    solver = ExactSolver(env)
    assert solver.beta == 0.5 and len(solver.trees) == 1
    assert len(solver.trees[0].tokens) == 1 + 11 * 12  # EOS first, or any first then any
    assert solver.evaluate(solver.optimal_scorer())["gap"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "solver_kwargs", "error", "match"),
    [
        ({"action_mode": "topk"}, {}, ValueError, "action_mode='topk'"),
        ({"normalize_reward": True}, {}, ValueError, "normalize_reward"),
        ({}, {"max_sequences": 1000}, ValueError, "max_sequences=1,000"),
        ({}, {"beta": 0.0}, ValueError, "beta=0.0"),
        ({}, {"beta": float("nan")}, ValueError, "beta=nan"),
    ],
)
def test_what_cannot_be_enumerated_is_refused(kwargs, solver_kwargs, error, match):
    with pytest.raises(error, match=match):
        ExactSolver(gym.make("TextGenExact-v0", **kwargs), **solver_kwargs)


def test_a_scorer_of_the_wrong_shape_is_refused(solver):
    with pytest.raises(ValueError, match=r"expected \(1, 12\)"):
        solver.evaluate(_uniform(11))


def test_not_a_textgen_env_is_refused():
    with pytest.raises(TypeError, match="expected a single TextGen env"):
        ExactSolver(gym.make("GridWorld-v1"))


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("very good", 1.0),
        ("not bad", 0.5),
        ("fine dull", 0.0),
        ("good good good", 1.0),
        ("not good", -0.5),
        ("plot", 0.0),
        ("not film good", 0.5),
        ("very very bad", -1.0),
        ("", 0.0),
    ],
)
def test_the_lexicon_reward(text, score):
    assert LexiconReward().score(["film"], [text])[0] == score


def test_lexicon_rewards_with_the_same_words_are_equal():
    assert LexiconReward() == LexiconReward() and hash(LexiconReward()) == hash(LexiconReward())
    assert LexiconReward() != LexiconReward(clip=1.0)
    with pytest.raises(ValueError, match="clip=0"):
        LexiconReward(clip=0)


def test_the_optimum_has_no_distribution_after_the_end(solver):
    obs = solver.observations(solver.trees[0], np.array([[8, 2]]))  # "good" then EOS
    with pytest.raises(KeyError, match=r"token ids \[1, 4, 8, 2\] are not a state"):
        solver.optimal_scorer()(obs)


def test_the_documented_figures(env, solver):
    """docs/textgen-exact.md's table and TextGenExactEnv's docstring."""
    rows = {
        "optimum": solver.evaluate(solver.optimal_scorer()),
        "reference": solver.evaluate(),
        "uniform": solver.evaluate(_uniform(12)),
    }

    def shown(value, digits, sign=""):
        return f"{round(value, digits) + 0.0:{sign}.{digits}f}"  # + 0.0: no "-0.000"

    table = {
        name: (shown(f["objective"], 3, "+"), shown(f["reward"], 3, "+"))
        + (shown(f["kl"], 2), shown(f["gap"], 3))
        for name, f in rows.items()
    }
    assert table == {
        "optimum": ("+0.758", "+0.982", "2.23", "0.000"),
        "reference": ("-0.006", "-0.006", "0.00", "0.764"),
        "uniform": ("-1.016", "+0.000", "10.16", "1.775"),
    }
    assert sum(p.numel() for p in env.unwrapped.reference_model.parameters()) == 26_368
