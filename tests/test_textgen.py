"""TextGen-v0: spaces, rewards, KL correctness, episode end, errors, any HF model."""

from __future__ import annotations

import copy
import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen import TextGenEnv
from textgym.kl import AdaptiveKLController, FixedKLController, kl_estimate
from textgym.rewards import RewardModelError

PROMPTS = ["the movie was", "a quiet drama about a family in", "i watched this film"]


def make(model, **kwargs) -> TextGenEnv:
    kwargs.setdefault("prompts", PROMPTS)
    kwargs.setdefault("max_new_tokens", 6)
    kwargs.setdefault("max_prompt_tokens", 24)
    return TextGenEnv(model=str(model), **kwargs)


def full_logprobs(model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    """Log-probs at the last real position of each row, by one full forward (no cache)."""
    ids_t, mask_t = torch.as_tensor(ids), torch.as_tensor(mask)
    with torch.no_grad():
        logits = model(input_ids=ids_t, attention_mask=mask_t).logits
    last = mask_t.sum(-1) - 1
    return torch.log_softmax(logits[torch.arange(len(ids_t)), last].float(), -1)


def sequence_logprob(model: torch.nn.Module, ids: list[int], prompt_len: int) -> float:
    """log p(continuation | prompt) from one forward pass over the whole sequence."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits[:-1], -1)
    targets = torch.tensor(ids[1:])
    per_token = logprobs[torch.arange(len(targets)), targets]
    return float(per_token[prompt_len - 1 :].sum())


def run_episode(env, policy=None, seed=0, options=None):
    obs, info = env.reset(seed=seed, options=options)
    rng = np.random.default_rng(seed)
    steps = []
    while True:
        if policy is None:
            probs = np.exp(env.unwrapped.reference_logprobs().astype(np.float64))
            action = int(rng.choice(len(probs), p=probs / probs.sum()))
        else:
            action = policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append((action, reward, terminated, info))
        if terminated or truncated:
            return steps, obs


# ---------------------------------------------------------------- registration and API checks


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_gymnasium_check_env_passes_on_registered_textgen(action_mode):
    from gymnasium.utils.env_checker import check_env

    env = gym.make("TextGen-v0", action_mode=action_mode, max_new_tokens=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_sb3_check_env_passes_on_registered_textgen(action_mode):
    from stable_baselines3.common.env_checker import check_env

    env = gym.make("TextGen-v0", action_mode=action_mode, max_new_tokens=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check_env(env.unwrapped, warn=False)


def test_default_env_is_the_bundled_task():
    env = gym.make("TextGen-v0")
    unwrapped = env.unwrapped
    assert unwrapped.reward_model.name == "sentiment"
    assert len(unwrapped.prompts) >= 200
    assert unwrapped.tokenizer.pad_token_id != unwrapped.tokenizer.eos_token_id
    assert not unwrapped.reference_model.training
    assert not any(p.requires_grad for p in unwrapped.reference_model.parameters())
    length = 24 + 24
    assert env.observation_space["input_ids"].shape == (length,)
    assert env.action_space.n == unwrapped.reference_model.config.vocab_size


def test_observation_is_prompt_then_generated_tokens_right_padded(tiny_gpt2):
    env = make(tiny_gpt2)
    obs, info = env.reset(seed=0, options={"prompt": "the movie was"})
    prompt_ids = env.tokenizer("the movie was")["input_ids"]
    n = len(prompt_ids)
    assert obs["input_ids"][:n].tolist() == prompt_ids
    assert obs["attention_mask"].tolist() == [1] * n + [0] * (len(obs["attention_mask"]) - n)
    obs2, *_ = env.step(5)
    assert obs2["input_ids"][n] == 5 and obs2["attention_mask"][n] == 1
    assert obs2["attention_mask"].sum() == n + 1
    obs2["input_ids"][:] = 0  # a fresh copy: the env's state is untouched
    obs3, *_ = env.step(7)
    assert obs3["input_ids"][:n].tolist() == prompt_ids and obs3["input_ids"][n] == 5


def test_seeded_rollouts_are_identical(tiny_gpt2):
    def rollout():
        env = make(tiny_gpt2, action_mode="topk", top_k=4)
        env.action_space.seed(3)
        obs, _ = env.reset(seed=11)
        out = [obs["input_ids"].tolist()]
        for _ in range(20):
            obs, reward, terminated, _, _ = env.step(env.action_space.sample())
            out.append((obs["input_ids"].tolist(), reward))
            if terminated:
                obs, _ = env.reset()
                out.append(obs["input_ids"].tolist())
        return out

    assert rollout() == rollout()


def test_env_pickles_and_continues_identically(tiny_gpt2):
    env = make(tiny_gpt2)
    env.reset(seed=0)
    env.step(3)
    clone = pickle.loads(pickle.dumps(env))
    for action in (4, 9, 1):
        a = env.step(action)
        b = clone.step(action)
        np.testing.assert_array_equal(a[0]["input_ids"], b[0]["input_ids"])
        assert a[1] == pytest.approx(b[1], abs=1e-5)
        assert a[2] == b[2]


@pytest.mark.parametrize("clone", [lambda e: pickle.loads(pickle.dumps(e)), copy.deepcopy])
@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
def test_a_copy_keeps_a_scorer_that_pickles_bound_to_the_copy(tiny_gpt2, clone, vector):
    from textgym.envs.textgen_vector import TextGenVectorEnv
    from textgym.reference import ReferencePolicy

    env = TextGenVectorEnv(2, model=str(tiny_gpt2), prompts=PROMPTS) if vector else make(tiny_gpt2)
    env.attach_policy(ReferencePolicy(env.unwrapped.core))
    env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        copied = clone(env)
    scorer = copied.unwrapped.core.scorer
    assert isinstance(scorer, ReferencePolicy) and scorer.core is copied.unwrapped.core
    *_, info = copied.step(np.array([3, 4]) if vector else 3)
    assert np.all(np.asarray(info["kl"]) == 0.0)  # the KL form, with the copy's own reference


@pytest.mark.parametrize("clone", [lambda e: pickle.loads(pickle.dumps(e)), copy.deepcopy])
@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
def test_a_copy_warns_when_it_drops_a_scorer_that_does_not_pickle(tiny_gpt2, clone, vector):
    from textgym.envs.textgen_vector import TextGenVectorEnv

    env = TextGenVectorEnv(2, model=str(tiny_gpt2), prompts=PROMPTS) if vector else make(tiny_gpt2)
    n = env.unwrapped.core.num_actions
    env.attach_policy(lambda obs: np.full((len(obs["input_ids"]), n), -np.log(n)))
    env.reset(seed=0)
    with pytest.warns(UserWarning, match=r"scorer <function .*<lambda>.* cannot be pickled"):
        copied = clone(env)
    assert copied.unwrapped.core.scorer is None and env.unwrapped.core.scorer is not None
    *_, info = copied.step(np.array([3, 4]) if vector else 3)
    assert "kl" not in info  # the reference-only form, as the warning says


# ---------------------------------------------------------------- KL correctness


def test_reference_scorer_makes_every_kl_step_reward_exactly_zero(tiny_gpt2):
    env = make(tiny_gpt2, reward_model=lambda p, t: [0.0] * len(t), kl_coef=0.3)
    env.attach_policy(lambda obs: env.reference_logprobs()[None])
    for seed in range(3):
        steps, _ = run_episode(env, seed=seed)
        assert [reward for _, reward, _, _ in steps] == [0.0] * len(steps)
        assert all(info["kl"] == 0.0 for *_, info in steps)


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
def test_kv_cached_reference_matches_a_full_forward_at_every_step(fixture, request):
    path = request.getfixturevalue(fixture)
    env = make(path, reward_model=lambda p, t: [0.0] * len(t), max_new_tokens=10)
    reference = env.reference_model
    env.attach_policy(lambda obs: full_logprobs(reference, obs["input_ids"], obs["attention_mask"]))
    for seed in range(3):
        steps, _ = run_episode(env, seed=seed)
        assert max(abs(info["kl"]) for *_, info in steps) < 1e-5


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
def test_k1_penalties_sum_to_sequence_log_ratio(fixture, request, tmp_path):
    from conftest import build_tiny_lm

    path = request.getfixturevalue(fixture)
    policy_path = build_tiny_lm(
        tmp_path / "policy", "gpt2" if fixture == "tiny_gpt2" else "llama", seed=1
    )
    policy = TextGenEnv(model=str(policy_path), prompts=PROMPTS).reference_model
    beta = 0.2
    env = make(path, reward_model=lambda p, t: [0.0] * len(t), kl_coef=beta, max_new_tokens=10)
    env.attach_policy(lambda obs: full_logprobs(policy, obs["input_ids"], obs["attention_mask"]))
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        prompt_len = int(obs["attention_mask"].sum())
        steps, last = run_episode(
            env, policy=None, seed=seed, options={"prompt_index": info["prompt_index"]}
        )
        ids = last["input_ids"][: int(last["attention_mask"].sum())].tolist()
        log_pi = sequence_logprob(policy, ids, prompt_len)
        log_ref = sequence_logprob(env.reference_model, ids, prompt_len)
        total = sum(reward for _, reward, _, _ in steps)
        assert total == pytest.approx(-beta * (log_pi - log_ref), abs=1e-4)
        assert steps[-1][3]["episode_kl"] == pytest.approx(log_pi - log_ref, abs=1e-4)


@pytest.mark.parametrize("estimator", ["k2", "k3"])
def test_k2_and_k3_step_rewards_match_their_formulas(tiny_gpt2, estimator):
    beta = 0.5
    env = make(
        tiny_gpt2, reward_model=lambda p, t: [0.0] * len(t), kl_coef=beta, kl_estimator=estimator
    )
    uniform = np.full(env.action_space.n, -np.log(env.action_space.n), dtype=np.float32)
    env.attach_policy(lambda obs: np.tile(uniform, (len(obs["input_ids"]), 1)))
    steps, _ = run_episode(env, seed=0)
    for _, reward, _, info in steps:
        log_r = info["ref_logprob"] - info["policy_logprob"]
        expected = 0.5 * log_r**2 if estimator == "k2" else np.expm1(log_r) - log_r
        assert info["kl"] == pytest.approx(expected, rel=1e-5)
        assert reward == pytest.approx(-beta * expected, rel=1e-5)


def test_kl_estimators_on_known_values():
    logp, ref = np.array([-1.0, -2.0]), np.array([-1.5, -1.0])
    log_r = ref - logp
    np.testing.assert_allclose(kl_estimate(logp, ref, "k1"), -log_r)
    np.testing.assert_allclose(kl_estimate(logp, ref, "k2"), log_r**2 / 2)
    np.testing.assert_allclose(kl_estimate(logp, ref, "k3"), np.exp(log_r) - 1 - log_r)
    assert np.all(kl_estimate(logp, ref, "k3") >= 0)


def test_reference_only_reward_warns_once_and_is_beta_times_ref_logprob(tiny_gpt2):
    env = make(tiny_gpt2, reward_model=lambda p, t: [0.0] * len(t), kl_coef=0.25)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="no policy scorer is attached"):
        _, reward, _, _, info = env.step(1)
    assert reward == pytest.approx(0.25 * info["ref_logprob"], rel=1e-6)
    assert "kl" not in info and "policy_logprob" not in info
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.step(2)


# ---------------------------------------------------------------- episode structure


def test_rm_score_is_paid_on_the_last_step_only(tiny_gpt2):
    env = make(tiny_gpt2, reward_model=lambda p, t: [10.0] * len(t), kl_coef=0.0, max_new_tokens=5)
    env.attach_policy(lambda obs: env.reference_logprobs()[None])
    env.reset(seed=0)
    rewards, infos = [], []
    for action in (3, 4, 5, 6, 7):
        _, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        infos.append(info)
    assert terminated
    assert rewards == [0.0, 0.0, 0.0, 0.0, 10.0]
    assert [info["rm_score"] for info in infos] == [0.0] * 4 + [10.0]
    assert [info["text"] for info in infos[:-1]] == [""] * 4
    assert infos[-1]["text"] == env.tokenizer.decode([3, 4, 5, 6, 7], skip_special_tokens=True)
    assert infos[-1]["prompt"] in PROMPTS


def test_eos_ends_the_episode_and_max_new_tokens_too(tiny_gpt2):
    env = make(tiny_gpt2, max_new_tokens=6)
    eos = env.tokenizer.eos_token_id
    env.reset(seed=0)
    env.step(3)
    _, _, terminated, truncated, info = env.step(eos)
    assert terminated and not truncated and "rm_score" in info
    env.reset(seed=0)
    flags = [env.step(3)[2] for _ in range(6)]
    assert flags == [False] * 5 + [True]


def test_missing_eos_penalty_is_subtracted_only_without_eos(tiny_gpt2):
    env = make(
        tiny_gpt2,
        reward_model=lambda p, t: [0.0] * len(t),
        kl_coef=0.0,
        missing_eos_penalty=2.0,
        max_new_tokens=2,
    )
    env.reset(seed=0)
    env.step(3)
    assert env.step(3)[1] == -2.0
    env.reset(seed=0)
    assert env.step(env.tokenizer.eos_token_id)[1] == 0.0


def test_topk_action_i_is_the_references_ith_candidate(tiny_gpt2):
    env = make(tiny_gpt2, action_mode="topk", top_k=5)
    obs, _ = env.reset(seed=0)
    n = int(obs["attention_mask"].sum())
    reference = full_logprobs(
        env.reference_model, obs["input_ids"][None], obs["attention_mask"][None]
    )[0]
    expected = torch.topk(reference, 5).indices.tolist()
    assert obs["candidate_ids"].tolist() == expected
    np.testing.assert_allclose(
        obs["candidate_logprobs"], torch.log_softmax(reference[expected], -1).numpy(), atol=1e-5
    )
    next_obs, *_, info = env.step(2)
    assert next_obs["input_ids"][n] == expected[2]
    assert info["ref_logprob"] == pytest.approx(float(obs["candidate_logprobs"][2]), abs=1e-6)


def test_action_masks_are_reference_top_k_plus_eos(tiny_gpt2):
    env = make(tiny_gpt2, top_k=4)
    obs, _ = env.reset(seed=0)
    mask = env.action_masks()
    reference = full_logprobs(
        env.reference_model, obs["input_ids"][None], obs["attention_mask"][None]
    )[0]
    expected = set(torch.topk(reference, 4).indices.tolist()) | {env.tokenizer.eos_token_id}
    assert mask.dtype == bool and mask.shape == (env.action_space.n,)
    assert set(np.flatnonzero(mask).tolist()) == expected


def test_top_p_shrinks_the_mask_to_the_nucleus(tiny_gpt2):
    env = make(tiny_gpt2, top_k=None, top_p=0.5)
    env.reset(seed=0)
    probs = np.exp(env.reference_logprobs().astype(np.float64))
    order = np.argsort(-probs)
    size = (
        int(np.searchsorted(np.cumsum(probs[order]), 0.5)) + 1
    )  # smallest prefix with mass >= 0.5
    expected = set(order[:size].tolist()) | {env.tokenizer.eos_token_id}
    assert set(np.flatnonzero(env.action_masks()).tolist()) == expected


def test_adaptive_controller_moves_beta_towards_the_target():
    up = AdaptiveKLController(0.1, target=2.0, horizon=100)
    up.update(kl_per_sequence=8.0, n_sequences=10)
    assert up.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    down = AdaptiveKLController(0.1, target=2.0, horizon=100)
    down.update(kl_per_sequence=1.0, n_sequences=10)
    assert down.value == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))
    fixed = FixedKLController(0.1)
    fixed.update(100.0, 10)
    assert fixed.value == 0.1


def test_env_adapts_beta_from_episode_kl(tiny_gpt2):
    def beta_after(target):
        env = make(
            tiny_gpt2,
            reward_model=lambda p, t: [0.0] * len(t),
            kl_coef=0.1,
            kl_target=target,
            kl_horizon=10,
            max_new_tokens=4,
        )
        uniform = np.full(env.action_space.n, -np.log(env.action_space.n), dtype=np.float32)
        env.attach_policy(lambda obs: np.tile(uniform, (len(obs["input_ids"]), 1)))
        kls = [run_episode(env, seed=s)[0][-1][3]["episode_kl"] for s in range(3)]
        return env.kl_coef, np.mean(kls)

    beta_low_target, kl = beta_after(target=0.01)
    assert kl > 0.01 and beta_low_target > 0.1
    beta_high_target, _ = beta_after(target=1000.0)
    assert beta_high_target < 0.1


def test_info_fields_each_step_and_at_the_end(tiny_gpt2):
    env = make(tiny_gpt2, max_new_tokens=3, missing_eos_penalty=0.5)
    env.attach_policy(lambda obs: env.reference_logprobs()[None])
    steps, _ = run_episode(env, seed=0)
    for *_, info in steps:
        assert {"ref_logprob", "policy_logprob", "kl", "kl_coef", "kl_reward"} <= set(info)
        assert info["kl_reward"] == pytest.approx(-info["kl_coef"] * info["kl"], abs=1e-6)
    assert {"rm_score", "eos_penalty", "prompt", "text", "episode_kl"} <= set(steps[-1][3])
    *_, (last_token, reward, _, last) = steps  # vocab mode: the action is the token
    assert last["eos_penalty"] == (0.0 if last_token == env.core.eos_token_id else 0.5)
    expected = last["kl_reward"] + last["rm_score"] - last["eos_penalty"]
    assert reward == pytest.approx(expected, abs=1e-5)


def test_text_is_decoded_once_per_episode_and_each_step_is_one_incremental_forward(tiny_gpt2):
    env = make(tiny_gpt2, max_new_tokens=6)
    tokenizer = env.tokenizer
    calls = {"decode": 0, "encode": 0, "forward_lengths": []}
    original_decode, original_call = tokenizer.batch_decode, type(tokenizer).__call__

    def counting_decode(*args, **kwargs):
        calls["decode"] += 1
        return original_decode(*args, **kwargs)

    tokenizer.batch_decode = counting_decode
    hook = env.reference_model.register_forward_pre_hook(
        lambda module, args, kwargs: calls["forward_lengths"].append(kwargs["input_ids"].shape),
        with_kwargs=True,
    )
    env.reset(seed=0)
    calls["forward_lengths"].clear()
    try:
        type(tokenizer).__call__ = lambda *a, **k: (_ for _ in ()).throw(
            AssertionError("re-tokenised")
        )
        for _ in range(6):
            env.step(3)
    finally:
        type(tokenizer).__call__ = original_call
        hook.remove()
    assert calls["decode"] == 1
    # Five incremental forwards of one token; the last step needs none.
    assert calls["forward_lengths"] == [torch.Size([1, 1])] * 5


def test_render_ansi_and_rgb_show_each_token_and_the_score(tiny_gpt2):
    env = make(
        tiny_gpt2, render_mode="ansi", reward_model=lambda p, t: [0.75] * len(t), max_new_tokens=3
    )
    run_episode(env, seed=0)
    text = env.render()
    assert "RM score +0.750" in text and text.count("\x1b[38;2;") == 3
    env_rgb = make(tiny_gpt2, render_mode="rgb_array", max_new_tokens=3)
    run_episode(env_rgb, seed=0)
    image = env_rgb.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert (image != 255).any()


def test_render_counts_the_missing_eos_penalty_only_when_eos_is_missing(tiny_gpt2):
    env = make(tiny_gpt2, render_mode="ansi", max_new_tokens=2, missing_eos_penalty=0.5)
    eos = env.core.eos_token_id
    env.reset(seed=0)
    reward = sum(env.step(a)[1] for a in (eos + 1, eos + 2))  # cut off at the length limit
    text = env.render()
    assert "missing-EOS penalty -0.500" in text
    assert f"return {reward:+.3f}" in text  # the score line's return is the env's return
    env.reset(seed=0)
    env.step(eos)
    assert "missing-EOS" not in env.render()


# ---------------------------------------------------------------- any HF model, rewards, prompts


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama", "tiny_gpt2_padded"])
def test_any_saved_causal_lm_works_including_tokenizers_without_pad(fixture, request):
    from gymnasium.utils.env_checker import check_env

    path = request.getfixturevalue(fixture)
    env = gym.make("TextGen-v0", model=str(path), prompts=PROMPTS, max_new_tokens=4)
    tokenizer = env.unwrapped.tokenizer
    assert tokenizer.pad_token_id is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check_env(env.unwrapped)
        steps, _ = run_episode(env, seed=0)
    assert steps[-1][2]


def test_hf_sequence_classification_reward_model_from_a_path(tiny_gpt2, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=16,
        n_layer=1,
        n_head=2,
        num_labels=1,
        pad_token_id=tokenizer.eos_token_id,
    )
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    env = make(tiny_gpt2, reward_model=str(tmp_path / "rm"), max_new_tokens=3)
    steps, _ = run_episode(env, seed=0)
    info = steps[-1][3]
    expected = env.reward_model.score([info["prompt"]], [info["text"]])[0]
    assert info["rm_score"] == pytest.approx(expected) and expected != 0.0


def test_default_reward_is_vader_sentiment_of_the_continuation():
    from textgym.rewards import VaderSentiment

    rm = VaderSentiment()
    scores = rm.score(
        ["the film was"] * 3, [" wonderful and moving", " awful and boring", " a film"]
    )
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0


def test_prompts_load_from_txt_and_jsonl(tiny_gpt2, tmp_path):
    (tmp_path / "p.txt").write_text("first prompt\n\nsecond prompt\n")
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"prompt": "from json"}) + "\n" + json.dumps("plain") + "\n"
    )
    assert make(tiny_gpt2, prompts=tmp_path / "p.txt").prompts == ["first prompt", "second prompt"]
    assert make(tiny_gpt2, prompts=str(tmp_path / "p.jsonl")).prompts == ["from json", "plain"]


def test_normalize_reward_gives_reference_samples_mean_zero_std_one(tiny_gpt2):
    import zlib

    def rm(prompts, texts):
        return [zlib.crc32(t.encode()) % 1000 / 100.0 for t in texts]

    env = make(tiny_gpt2, reward_model=rm, normalize_reward=True, max_new_tokens=4)
    gain, bias = env.core.reward_gain, env.core.reward_bias
    assert gain > 0
    raw = np.array([env.reward_model.score([""], [t])[0] for t in ["a", "bb", "ccc"]])
    assert np.all(np.isfinite(gain * raw + bias))
    steps, _ = run_episode(env, seed=0)
    info = steps[-1][3]
    assert info["rm_score"] == pytest.approx(gain * rm([], [info["text"]])[0] + bias)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("action", [-1, 10**9, 1.5, "left", np.array([1, 2]), None, True])
def test_bad_actions_raise_naming_action_and_leave_env_usable(tiny_gpt2, action):
    env = make(tiny_gpt2)
    obs, _ = env.reset(seed=0)
    with pytest.raises((ValueError, TypeError), match=r"action=.*expected an integer in \[0, "):
        env.step(action)
    obs2, *_ = env.step(np.int64(3))  # the failed step changed nothing
    assert obs2["attention_mask"].sum() == obs["attention_mask"].sum() + 1


def test_step_before_reset_and_after_the_end_raise(tiny_gpt2):
    env = make(tiny_gpt2, max_new_tokens=1)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(1)
    env.reset(seed=0)
    assert env.step(1)[2]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(1)
    env.reset(seed=0)
    assert env.step(1)[2]


@pytest.mark.parametrize("prompts", [[], "/no/such/prompts.txt", ["ok", 3]])
def test_bad_prompt_sets_raise_naming_prompts(tiny_gpt2, prompts):
    with pytest.raises((ValueError, FileNotFoundError, TypeError), match=r"prompts"):
        make(tiny_gpt2, prompts=prompts)


def test_long_prompts_are_cut_from_the_left_with_one_warning(tiny_gpt2):
    long_prompt = "the movie was great and the acting was wonderful " * 5
    with pytest.warns(UserWarning, match="max_prompt_tokens=8") as record:
        env = make(tiny_gpt2, prompts=[long_prompt, long_prompt + "again"], max_prompt_tokens=8)
    assert len([w for w in record if "max_prompt_tokens" in str(w.message)]) == 1
    obs, _ = env.reset(seed=0, options={"prompt_index": 0})
    ids = env.tokenizer(long_prompt)["input_ids"]
    assert obs["input_ids"][:8].tolist() == ids[-8:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        env.reset(options={"prompt": long_prompt})  # already warned once


@pytest.mark.parametrize("model", ["/definitely/not/a/model", "./missing-model-dir"])
def test_missing_model_path_raises_naming_model(model):
    with pytest.raises(FileNotFoundError, match=r"model=.*does not exist"):
        TextGenEnv(model=model)


def test_unknown_hub_name_raises_naming_model(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests
    with pytest.raises(ValueError, match=r"model='no-such-org/no-such-model-xyz'"):
        TextGenEnv(model="no-such-org/no-such-model-xyz")


@pytest.mark.parametrize(
    "scores, message",
    [
        (lambda p, t: 1 / 0, "raised ZeroDivisionError"),
        (lambda p, t: [float("nan")] * len(t), "non-finite"),
        (lambda p, t: [1.0] * (len(t) + 1), "shape"),
    ],
)
def test_failing_reward_model_raises_naming_it_and_env_recovers(tiny_gpt2, scores, message):
    def broken_rm(prompts, texts):
        return scores(prompts, texts)

    env = make(tiny_gpt2, reward_model=broken_rm, max_new_tokens=2)
    env.reset(seed=0)
    env.step(3)
    with pytest.raises(RewardModelError, match=rf"broken_rm.*{message}"):
        env.step(4)
    env.unwrapped.core.reward_model.fn = lambda p, t: [0.5] * len(t)
    _, reward, terminated, _, info = env.step(4)  # the failed step can be retried
    assert terminated and info["rm_score"] == 0.5


def test_bad_constructor_arguments_name_the_argument(tiny_gpt2):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            make(tiny_gpt2, device="cuda")
    for kwargs, name in [
        ({"action_mode": "words"}, "action_mode"),
        ({"kl_estimator": "k4"}, "kl_estimator"),
        ({"kl_coef": -1.0}, "kl_coef"),
        ({"kl_coef": True}, "kl_coef=True"),  # a bool is not a coefficient
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 4.0}, "max_new_tokens=4.0: expected an integer >= 1"),
        ({"top_p": 0.0}, "top_p"),
        ({"kl_target": -3.0}, "kl_target"),
        ({"reward_model": "no-such-rm"}, "reward_model"),
        ({"render_mode": "human"}, "render_mode"),
        ({"max_new_tokens": 120}, "max_new_tokens = 144 exceeds the 128 positions"),
        ({"action_mode": "topk", "top_k": 10_000}, "top_k=10000 exceeds the vocabulary"),
        ({"missing_eos_penalty": float("nan")}, "missing_eos_penalty"),
        ({"normalize_reward": "true"}, "normalize_reward='true' must be True or False"),
        ({"device": "tpu:7"}, "device='tpu:7'"),
        ({"dtype": "float8"}, "dtype='float8'"),
    ]:
        with pytest.raises(ValueError, match=name):
            make(tiny_gpt2, **kwargs)


def test_remote_code_never_runs_unless_trust_remote_code(tiny_gpt2, tmp_path):
    import shutil

    model_dir = tmp_path / "remote"
    shutil.copytree(tiny_gpt2, model_dir)
    sentinel = tmp_path / "ran.txt"
    (model_dir / "custom_model.py").write_text(
        f"open({str(sentinel)!r}, 'w').write('ran')\n"
        "from transformers import GPT2Config, GPT2LMHeadModel\n"
        "class CustomConfig(GPT2Config):\n    model_type = 'custom-gpt'\n"
        "class CustomModel(GPT2LMHeadModel):\n    config_class = CustomConfig\n"
    )
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "custom-gpt"
    config["auto_map"] = {
        "AutoConfig": "custom_model.CustomConfig",
        "AutoModelForCausalLM": "custom_model.CustomModel",
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        TextGenEnv(model=str(model_dir), prompts=PROMPTS)
    assert not sentinel.exists()
    env = TextGenEnv(model=str(model_dir), prompts=PROMPTS, trust_remote_code=True)
    assert sentinel.exists() and type(env.reference_model).__name__ == "CustomModel"


# ---------------------------------------------------------------- the bundled default task


def test_bundled_reference_continuations_have_mixed_sentiment():
    """Before training, the reference writes positive and negative reviews: room to learn."""
    from textgym.envs.textgen_vector import TextGenVectorEnv

    venv = TextGenVectorEnv(32)
    venv.attach_policy(
        lambda obs: full_logprobs(venv.reference_model, obs["input_ids"], obs["attention_mask"])
    )
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    scores, texts = [], []
    while len(scores) < 64:
        probs = np.exp(venv.reference_logprobs().astype(np.float64))
        actions = np.array([rng.choice(len(p), p=p / p.sum()) for p in probs])
        _, rewards, terminated, _, infos = venv.step(actions)
        assert np.abs(rewards[~terminated]).max() < 1e-5  # the reference itself: zero KL
        if terminated.any():
            scores += infos["rm_score"][terminated].tolist()
            texts += infos["text"][terminated].tolist()
    scores = np.array(scores)
    assert -0.4 < scores.mean() < 0.4
    assert (scores > 0.05).mean() > 0.15 and (scores < -0.05).mean() > 0.15
    assert len(set(texts)) == len(texts)  # samples, not memorised templates


def test_bundled_prompt_set_has_over_200_distinct_openings():
    env = gym.make("TextGen-v0")
    prompts = env.unwrapped.prompts
    assert len(prompts) >= 200 and len(set(prompts)) == len(prompts)
    assert all(p.strip() == p and p for p in prompts)


@pytest.mark.parametrize("action_mode", ["topk", "vocab"])
def test_sb3_ppo_smoke_run_on_registered_textgen(action_mode):
    from stable_baselines3 import PPO

    env = gym.make("TextGen-v0", action_mode=action_mode, max_new_tokens=4)
    model = PPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_returned_arrays_share_no_memory_with_the_env(tiny_gpt2, action_mode):
    env = make(tiny_gpt2, action_mode=action_mode, top_k=4)
    obs, _ = env.reset(seed=0)
    before = {key: value.copy() for key, value in obs.items()}
    ref = env.reference_logprobs()
    ref_before = ref.copy()
    env.step(1)
    for key, value in obs.items():
        np.testing.assert_array_equal(value, before[key])
    np.testing.assert_array_equal(ref, ref_before)


def test_scorers_get_every_key_of_the_observation_of_the_stepped_rows(tiny_gpt2):
    env = make(tiny_gpt2, action_mode="topk", top_k=4)
    seen = {}

    def scorer(obs):
        seen.update(obs)
        return np.log(np.full((len(obs["input_ids"]), 4), 0.25))

    env.attach_policy(scorer)
    obs, _ = env.reset(seed=0)
    env.step(0)
    assert set(seen) == set(obs)
    for key in obs:
        np.testing.assert_array_equal(seen[key], obs[key][None])


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (lambda n: np.zeros((n, 4)), "not log-probs"),  # rows that do not sum to 1
        (lambda n: np.full((n, 4), np.nan), "not log-probs"),
        (lambda n: np.log(np.full((n, 3), 1 / 3)), r"shape \(1, 3\)"),
        (lambda n: np.array([["a"] * 4] * n), "expected floats"),
        (lambda n: 1 / 0, "raised: ZeroDivisionError"),
    ],
)
def test_a_bad_scorer_is_refused_by_name_and_the_step_changes_nothing(tiny_gpt2, output, match):
    from textgym.envs.textgen_core import ScorerError

    env = make(tiny_gpt2, action_mode="topk", top_k=4)

    def broken(obs):
        return output(len(obs["input_ids"]))

    obs, _ = env.reset(seed=0)
    env.attach_policy(broken)
    with pytest.raises(ScorerError, match=f"scorer <function.*broken.*{match}"):
        env.step(0)
    env.attach_policy(lambda obs: np.log(np.full((len(obs["input_ids"]), 4), 0.25)))
    after, *_ = env.step(0)
    assert after["attention_mask"].sum() == obs["attention_mask"].sum() + 1  # one token, not two


def test_negative_kl_is_logged_only_when_a_window_of_episodes_averages_below_zero(
    tiny_gpt2, caplog
):
    env = make(tiny_gpt2)
    core = env.unwrapped.core
    with caplog.at_level("WARNING", logger="textgym.envs.textgen_core"):
        core._check_kl_sign(np.array([-5.0] * 10 + [3.0] * 54))  # noisy, mean positive
        core._check_kl_sign(np.array([-0.52, 0.5] * 32))  # a policy within noise of the ref
        assert "negative" not in caplog.text
        core._check_kl_sign(np.full(64, -0.5))  # a whole window below zero
    assert "mean KL per sequence over the last 64 episodes is negative" in caplog.text


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_exact_kl_is_the_kl_over_the_action_space_beside_the_sampled_estimate(
    tiny_gpt2, action_mode
):
    """With a scorer that returns the full distribution, every step reports the exact
    KL(pi || pi_ref) at its state, computed here directly from the scorer's and the
    reference's distributions; the reward keeps the sampled estimate."""
    env = make(tiny_gpt2, action_mode=action_mode, max_new_tokens=5, kl_coef=0.2)
    generator = np.random.default_rng(0)
    seen = {}

    def scorer(obs):  # a policy away from the reference: its log-probs plus noise
        ref = env.unwrapped.reference_logprobs()
        logits = np.where(np.isfinite(ref), ref + generator.normal(0, 0.5, ref.shape), -np.inf)
        logprobs = torch.log_softmax(torch.as_tensor(logits), -1).numpy()
        seen["pi"], seen["ref"] = logprobs, ref
        return logprobs[None]

    env.unwrapped.attach_policy(scorer)
    env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(int(env.action_space.sample()))
        pi, ref = seen["pi"].astype(np.float64), seen["ref"].astype(np.float64)
        finite = np.exp(pi) > 0
        expected = float(np.sum(np.exp(pi[finite]) * (pi[finite] - ref[finite])))
        assert info["exact_kl"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert info["exact_kl"] > 0.01
        total += expected
        assert info["episode_exact_kl"] == pytest.approx(total, rel=1e-5)
        assert info["kl_reward"] == pytest.approx(-0.2 * info["kl"], rel=1e-5, abs=1e-6)
        done = terminated or truncated


def test_exact_kl_is_zero_for_the_reference_and_infinite_off_its_support():
    from textgym.envs.textgen_core import exact_kl

    ref = np.log(np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]))
    assert exact_kl(ref, ref) == pytest.approx([0.0, 0.0])
    pi = np.log(np.array([[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]]))
    kl = exact_kl(pi, ref)
    assert kl[0] == np.inf and kl[1] == pytest.approx(np.log(1.0 / 0.2))
