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
    assert venv.call("action_masks")[0].shape == (3, venv.single_action_space.n)


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
