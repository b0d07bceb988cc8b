"""Batched TextGen: rows match the single env, per-row autoreset, bounded cache, adapters."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from textgym.envs.textgen import TextGenEnv
from textgym.envs.textgen_vector import TextGenVectorEnv

# Long prompts are cut (and warned about) on purpose: it exercises cut rows too.
pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens")

# Prompts of clearly different token lengths, so rows are left-padded differently.
PROMPTS = [
    "the movie",
    "a quiet drama about a family in a small town and",
    "i watched this film last night with my friends",
    "the plot",
]


def full_logprobs(model, ids, mask):
    ids_t, mask_t = torch.as_tensor(ids), torch.as_tensor(mask)
    with torch.no_grad():
        logits = model(input_ids=ids_t, attention_mask=mask_t).logits
    return torch.log_softmax(logits[torch.arange(len(ids_t)), mask_t.sum(-1) - 1].float(), -1)


def zero_rm(prompts, texts):
    return [len(t) / 10.0 for t in texts]


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_every_row_matches_the_single_env(fixture, action_mode, request):
    path = str(request.getfixturevalue(fixture))
    kwargs = dict(
        model=path,
        prompts=PROMPTS,
        max_new_tokens=5,
        max_prompt_tokens=24,
        reward_model=zero_rm,
        action_mode=action_mode,
        top_k=6,
        kl_coef=0.3,
    )
    n = 4
    venv = TextGenVectorEnv(n, **kwargs)
    ref = venv.reference_model
    venv.attach_policy(lambda obs: _uniform(obs["input_ids"], venv.single_action_space.n))
    obs, _ = venv.reset(seed=3)
    rng = np.random.default_rng(0)
    episodes = [[] for _ in range(n)]  # per row: list of (prompt_index, actions, rewards)
    current = [[int(venv.core.prompt_index[i]), [], []] for i in range(n)]
    restart = np.zeros(n, dtype=bool)
    # Rows end at different times: EOS is forced on some rows at some steps.
    eos = venv.tokenizer.eos_token_id
    for t in range(18):
        if action_mode == "vocab":
            actions = rng.integers(0, 40, size=n)
            actions[(t + np.arange(n)) % 7 == 3] = eos
        else:
            actions = rng.integers(0, 6, size=n)
        obs, rewards, terminated, truncated, infos = venv.step(actions)
        for i in range(n):
            if restart[i]:
                current[i] = [int(venv.core.prompt_index[i]), [], []]
                continue
            current[i][1].append(int(actions[i]))
            current[i][2].append(float(rewards[i]))
            if terminated[i]:
                episodes[i].append(current[i])
        restart = terminated
    assert all(len(e) >= 2 for e in episodes)

    single = TextGenEnv(**kwargs)
    single.attach_policy(lambda obs: _uniform(obs["input_ids"], single.action_space.n))
    assert torch.equal(next(single.reference_model.parameters()), next(ref.parameters()))
    for row_episodes in episodes:
        for prompt_index, actions, rewards in row_episodes:
            single.reset(options={"prompt_index": prompt_index})
            got = [single.step(a)[1] for a in actions]
            np.testing.assert_allclose(rewards, got, atol=1e-4)


def _uniform(ids, n):
    return np.full((len(ids), n), -np.log(n), dtype=np.float32)


def test_rows_finishing_on_one_step_share_one_reward_model_call(tiny_gpt2):
    calls = []

    def rm(prompts, texts):
        calls.append(len(texts))
        return [0.0] * len(texts)

    venv = TextGenVectorEnv(
        5, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=3, reward_model=rm
    )
    venv.reset(seed=0)
    for _ in range(3):
        venv.step(np.full(5, 7))
    assert calls == [5]


def test_next_step_autoreset_returns_the_new_first_observation_with_zero_reward(tiny_gpt2):
    venv = TextGenVectorEnv(
        2,
        model=str(tiny_gpt2),
        prompts=PROMPTS,
        max_new_tokens=8,
        reward_model=lambda p, t: [1.0] * len(t),
    )
    obs, info = venv.reset(seed=0)
    eos = venv.tokenizer.eos_token_id
    obs, rewards, terminated, _, infos = venv.step(np.array([eos, 5]))
    assert terminated.tolist() == [True, False]
    assert infos["_rm_score"].tolist() == [True, True]  # every step has every key
    assert infos["rm_score"].tolist() == [1.0, 0.0]  # the RM part: on the last step only
    obs, rewards, terminated, _, infos = venv.step(np.array([9, 5]))
    prompt_len = len(venv.tokenizer(venv.core.row_prompt[0])["input_ids"])
    assert rewards[0] == 0.0 and not terminated[0]
    assert obs["attention_mask"][0].sum() == prompt_len  # row 0 restarted, action ignored
    assert obs["attention_mask"][1].sum() == venv.core.prompt_len[1] + 2  # row 1 kept going
    assert infos["_ref_logprob"].tolist() == [False, True]


def test_kv_cache_stays_bounded_over_a_long_run(tiny_gpt2):
    venv = TextGenVectorEnv(
        6,
        model=str(tiny_gpt2),
        prompts=PROMPTS,
        max_new_tokens=6,
        reward_model=lambda p, t: [0.0] * len(t),
    )
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    eos = venv.tokenizer.eos_token_id
    lengths = []
    for _ in range(2000):
        actions = rng.integers(0, 50, size=6)
        actions[rng.random(6) < 0.15] = eos  # episodes of many different lengths
        venv.step(actions)
        lengths.append(venv.core._lm.cache_length)
    bound = 2 * venv.core.seq_len + 16
    assert max(lengths) <= bound
    assert max(lengths[1000:]) <= max(lengths[:1000])


def test_make_vec_uses_the_native_vector_env(tiny_gpt2):
    venv = gym.make_vec(
        "TextGen-v0",
        num_envs=3,
        vectorization_mode="vector_entry_point",
        model=str(tiny_gpt2),
        prompts=PROMPTS,
        max_new_tokens=3,
    )
    assert isinstance(venv.unwrapped, TextGenVectorEnv)
    obs, _ = venv.reset(seed=0)
    assert obs["input_ids"].shape == (3, 3 + 24)
    venv.call("attach_policy", lambda obs: _uniform(obs["input_ids"], venv.single_action_space.n))
    _, _, _, _, infos = venv.step(venv.action_space.sample())
    assert "kl" in infos and infos["kl"].shape == (3,)
    masks = venv.call("action_masks")  # gymnasium's call: one result per row
    assert len(masks) == 3 and all(m.shape == (venv.single_action_space.n,) for m in masks)
    np.testing.assert_array_equal(np.stack(masks), venv.unwrapped.action_masks())


def test_vector_env_seeding_is_deterministic(tiny_gpt2):
    def run():
        venv = TextGenVectorEnv(3, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=3)
        obs, _ = venv.reset(seed=7)
        out = [obs["input_ids"].tolist()]
        for t in range(8):
            obs, r, *_ = venv.step(np.array([t + 1, t + 2, t + 3]))
            out.append((obs["input_ids"].tolist(), r.tolist()))
        return out

    assert run() == run()


def test_bad_vector_actions_name_actions_and_change_nothing(tiny_gpt2):
    venv = TextGenVectorEnv(2, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=3)
    obs, _ = venv.reset(seed=0)
    for bad in (np.array([1]), np.array([1, -1]), np.array([0.5, 1.0])):
        with pytest.raises((ValueError, TypeError), match="actions="):
            venv.step(bad)
    obs2, *_ = venv.step(np.array([1, 2]))
    assert (obs2["attention_mask"].sum(1) == obs["attention_mask"].sum(1) + 1).all()


def test_a_list_of_seeds_gives_each_row_the_prompts_of_a_single_env_seeded_alike(tiny_gpt2):
    kwargs = dict(model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=1)
    seeds = [5, 9, 5]
    venv = TextGenVectorEnv(3, **kwargs)
    venv.reset(seed=seeds)
    drawn = [venv.core.prompt_index.tolist()]
    for _ in range(4):  # every other step restarts every row (one-token episodes)
        venv.step(np.array([1, 2, 3]))
        venv.step(np.array([0, 0, 0]))
        drawn.append(venv.core.prompt_index.tolist())
    single = TextGenEnv(**kwargs)
    for row, seed in enumerate(seeds):
        expected = [single.reset(seed=seed)[1]["prompt_index"]]
        expected += [single.reset()[1]["prompt_index"] for _ in range(4)]
        assert [indices[row] for indices in drawn] == expected
    assert len({tuple(i[row] for i in drawn) for row in range(3)}) == 2  # rows 0 and 2 alike
    venv.reset(seed=[6, 9, 5])  # a new list reseeds each row
    assert venv.core.prompt_index[0] == single.reset(seed=6)[1]["prompt_index"]


@pytest.mark.parametrize("seed", [[1, 2], [1, 2, 3, 4], [1, "2", 3], [1, -1, 3], 1.5])
def test_bad_seeds_are_refused_naming_seed(tiny_gpt2, seed):
    venv = TextGenVectorEnv(3, model=str(tiny_gpt2), prompts=PROMPTS)
    with pytest.raises(ValueError, match=r"seed must be .*list of num_envs=3 seeds.*got seed="):
        venv.reset(seed=seed)


def test_reset_mask_restarts_only_the_masked_rows(tiny_gpt2):
    kwargs = dict(model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=6, reward_model=zero_rm)
    venv, twin = TextGenVectorEnv(3, **kwargs), TextGenVectorEnv(3, **kwargs)
    for env in (venv, twin):
        env.reset(seed=1)
        env.step(np.array([4, 5, 6]))
    before = venv.core.observe()
    mask = np.array([True, False, True])
    obs, infos = venv.reset(options={"reset_mask": mask, "prompt_index": [3, 0, 1]})
    assert venv.core.prompt_index.tolist() == [3, twin.core.prompt_index[1], 1]
    assert venv.core.gen_len.tolist() == [0, 1, 0]
    for key in obs:  # the unmasked row is untouched
        np.testing.assert_array_equal(obs[key][1], before[key][1])
    assert infos["_prompt"].tolist() == mask.tolist() and len(infos["prompt"]) == 3
    assert infos["prompt_index"][[0, 2]].tolist() == [3, 1] and infos["prompt"][0] == PROMPTS[3]
    # Row 1 goes on as if nothing happened; the cache of every row matches a full forward.
    _, rewards, *_ = venv.step(np.array([7, 8, 9]))
    _, twin_rewards, *_ = twin.step(np.array([7, 8, 9]))
    assert rewards[1] == pytest.approx(twin_rewards[1], abs=1e-5)
    assert venv.core.gen_len.tolist() == [1, 2, 1]
    full = full_logprobs(venv.reference_model, venv.core.input_ids, venv.core.attention_mask)
    np.testing.assert_allclose(venv.reference_logprobs(), full.numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"reset_mask": [True, False]}, TypeError, r"reset_mask.*numpy array of dtype bool"),
        ({"reset_mask": np.array([1, 0])}, TypeError, r"reset_mask.*dtype bool"),
        ({"reset_mask": np.array([True])}, ValueError, r"reset_mask.*shape \(2,\)"),
        ({"reset_mask": np.array([False, False])}, ValueError, r"reset_mask.*at least one True"),
        ({"prompt_index": [1, 2, 3]}, ValueError, r"options\['prompt_index'\]=.* has 3 entries"),
        ({"prompt_index": [1, "2"]}, ValueError, r"options\['prompt_index'\]\[1\]='2'"),
        ({"prompt": ["a", 3]}, TypeError, r"options\['prompt'\]\[1\]=3 has type int"),
        ({"mask": np.array([True, True])}, ValueError, r"unknown key\(s\) \['mask'\].*reset_mask"),
    ],
)
def test_bad_vector_reset_options_are_refused_and_change_nothing(tiny_gpt2, options, error, match):
    venv = TextGenVectorEnv(2, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=4)
    venv.reset(seed=0)
    venv.step(np.array([4, 5]))
    before = venv.core.observe()
    with pytest.raises(error, match=match):
        venv.reset(options=options)
    for key, value in venv.core.observe().items():
        np.testing.assert_array_equal(value, before[key])
    assert venv.core.gen_len.tolist() == [1, 1]


def test_reset_mask_before_the_first_reset_is_refused(tiny_gpt2):
    venv = TextGenVectorEnv(2, model=str(tiny_gpt2), prompts=PROMPTS)
    with pytest.raises(RuntimeError, match="before a full reset"):
        venv.reset(options={"reset_mask": np.array([True, False])})


def test_vector_reset_takes_one_prompt_for_all_rows_or_one_per_row(tiny_gpt2):
    venv = TextGenVectorEnv(2, model=str(tiny_gpt2), prompts=PROMPTS)
    _, infos = venv.reset(options={"prompt": "the same"})
    assert (
        infos["prompt"].tolist() == ["the same"] * 2 and infos["prompt_index"].tolist() == [-1] * 2
    )
    _, infos = venv.reset(options={"prompt": ["one", "two"]})
    assert infos["prompt"].tolist() == ["one", "two"]
    _, infos = venv.reset(options={"prompt_index": 2})
    assert infos["prompt_index"].tolist() == [2, 2]
