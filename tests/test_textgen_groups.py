"""Groups (``group_size=k``): rows that start from one prompt, share its encoding, end together."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import MIXED_PROMPTS, small_textgen

from textgym.envs.textgen import TextGenEnv
from textgym.envs.textgen_vector import TextGenVectorEnv
from textgym_agents.backends.sb3.vec_env import TextGenSB3VecEnv

pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens")

PROMPTS = [*MIXED_PROMPTS, "i liked"]


def kwargs(model, **extra):
    return small_textgen(model, prompts=PROMPTS, max_new_tokens=5) | extra


def uniform_scorer(n):
    return lambda obs: np.full((len(obs["input_ids"]), n), -np.log(n), dtype=np.float32)


def full_logprobs(model, ids, mask) -> torch.Tensor:
    ids_t, mask_t = torch.as_tensor(ids), torch.as_tensor(mask)
    with torch.no_grad():
        logits = model(input_ids=ids_t, attention_mask=mask_t).logits
    return torch.log_softmax(logits[torch.arange(len(ids_t)), mask_t.sum(-1) - 1].float(), -1)


def rollout(venv, steps, eos_at, seed=0):
    """Random valid actions, EOS on the (step, row) pairs in ``eos_at`` only; every step's
    results."""
    rng = np.random.default_rng(seed)
    eos = venv.core.eos_token_id
    obs, infos = venv.reset(seed=seed)
    history = [(obs, None, None, None, infos, None)]
    for t in range(steps):
        masks = venv.action_masks()
        masks[masks.sum(1) > 1, eos] = False
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        for row in range(venv.num_envs):
            if (t, row) in eos_at and not venv.core.idle[row]:
                actions[row] = eos
        obs, rewards, terminated, truncated, infos = venv.step(actions)
        history.append((obs, rewards, terminated, truncated, infos, actions))
    return history


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
def test_groups_start_from_one_prompt_end_together_and_restart_together(fixture, request):
    model = request.getfixturevalue(fixture)
    venv = TextGenVectorEnv(6, **kwargs(model, group_size=3))
    venv.attach_policy(uniform_scorer(venv.single_action_space.n))
    # Row 0 ends at once, row 4 on the third step: both idle until their group ends.
    history = rollout(venv, 14, eos_at={(0, 0), (2, 4)})
    obs0, *_, infos0, _ = history[0]
    groups = infos0["group"]
    assert groups[0] == groups[1] == groups[2] != groups[3] == groups[4] == groups[5]
    index = infos0["prompt_index"]
    assert index[0] == index[1] == index[2] and index[3] == index[4] == index[5]

    seen_groups = set(groups.tolist())
    restarting = np.zeros(6, dtype=bool)
    for step, (obs, rewards, terminated, truncated, infos, _) in enumerate(history[1:], 1):
        previous = history[step - 1][0]
        assert not truncated.any()
        for first in (0, 3):
            rows = slice(first, first + 3)
            # A group's rows terminate on one step, restart on the next, with one new group id.
            assert len(set(terminated[rows].tolist())) == 1
            assert len(set(restarting[rows].tolist())) == 1
            assert len(set(infos["group"][rows].tolist())) == 1
            if restarting[first]:
                assert infos["group"][first] not in seen_groups
                seen_groups.add(int(infos["group"][first]))
                assert len(set(infos["prompt_index"][rows].tolist())) == 1
                assert rewards[rows].tolist() == [0.0] * 3
        # Rows idle since an earlier step: no token, reward 0, not done (unless their group
        # ends now: then they are paid their RM score alone).
        was_idle = history[step - 1][4]["idle"] if step > 1 else np.zeros(6, dtype=bool)
        for row in np.flatnonzero(was_idle & ~restarting):
            np.testing.assert_array_equal(obs["input_ids"][row], previous["input_ids"][row])
            expected = infos["rm_score"][row] if terminated[row] else 0.0
            assert rewards[row] == pytest.approx(expected)
        restarting = terminated.copy()
    assert len(seen_groups) >= 4  # both groups restarted at least once
    assert history[1][4]["idle"][0] and history[2][4]["idle"][0]  # row 0 idles after its EOS


def test_every_row_of_a_group_matches_a_full_recompute(tiny_llama):
    venv = TextGenVectorEnv(4, **kwargs(tiny_llama, group_size=2, max_new_tokens=4))
    venv.attach_policy(uniform_scorer(venv.single_action_space.n))
    rng = np.random.default_rng(1)
    obs, _ = venv.reset(seed=2)
    terminated = np.zeros(4, dtype=bool)
    checked = 0
    for _ in range(12):
        live = ~terminated & ~venv.core.idle  # the rows with a next token to draw
        expected = full_logprobs(venv.reference_model, obs["input_ids"], obs["attention_mask"])
        got = torch.as_tensor(venv.core.reference_logprobs())
        np.testing.assert_allclose(got[live], expected[live], atol=1e-5, rtol=1e-5)
        checked += live.sum()
        masks = venv.action_masks()
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs, _, terminated, _, _ = venv.step(actions)
    assert checked >= 30


def test_an_episode_in_a_group_pays_what_it_pays_alone(tiny_gpt2):
    """Idle steps are reward-0 no-ops: each row's return equals a single env's on its tokens."""
    venv = TextGenVectorEnv(4, **kwargs(tiny_gpt2, group_size=4))
    scorer = uniform_scorer(venv.single_action_space.n)
    venv.attach_policy(scorer)
    history = rollout(venv, 6, eos_at={(0, 1), (1, 2), (3, 3)})
    end = next(t for t, step in enumerate(history[1:], 1) if step[2].any())
    assert history[end][2].all()
    single = TextGenEnv(**kwargs(tiny_gpt2))
    single.attach_policy(scorer)
    for row in range(4):
        single.reset(options={"prompt_index": int(history[0][4]["prompt_index"][row])})
        alone, grouped, done = 0.0, 0.0, False
        for t in range(1, end + 1):
            _, rewards, _, _, infos, actions = history[t]
            grouped += rewards[row]
            was_idle = t > 1 and history[t - 1][4]["idle"][row]
            if not was_idle:  # the row generated a token on this step
                _, reward, done, _, _ = single.step(actions[row])
                alone += reward
        assert done
        assert grouped == pytest.approx(alone, abs=1e-5)


def test_the_sb3_vec_env_keeps_groups_together(tiny_gpt2):
    env = TextGenSB3VecEnv(4, seed=0, **kwargs(tiny_gpt2, group_size=2, max_new_tokens=3))
    env.env_method("attach_policy", uniform_scorer(env.action_space.n), indices=[0])
    obs = env.reset()
    rng = np.random.default_rng(0)
    done_steps = []
    for t in range(12):
        masks = env.action_masks()
        obs, rewards, dones, infos = env.step(
            np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        )
        assert dones[0] == dones[1] and dones[2] == dones[3]
        if dones.any():
            done_steps.append(t)
            assert env.core.prompt_index[0] == env.core.prompt_index[1]
            assert env.core.prompt_index[2] == env.core.prompt_index[3]
            assert infos[0]["group"] == infos[1]["group"] != infos[2]["group"]
    assert done_steps


def test_bad_groups_are_refused(tiny_gpt2):
    with pytest.raises(ValueError, match="group_size=3"):
        TextGenVectorEnv(4, **kwargs(tiny_gpt2, group_size=3))
    with pytest.raises(ValueError, match="group_size=0"):
        TextGenVectorEnv(4, **kwargs(tiny_gpt2, group_size=0))
    with pytest.raises(ValueError, match="group_size=2.*make_vec"):
        TextGenEnv(**kwargs(tiny_gpt2, group_size=2))
    venv = TextGenVectorEnv(4, **kwargs(tiny_gpt2, group_size=2))
    venv.reset(seed=0)
    before = venv.core.observe()
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.array([True, False, False, False])})
    with pytest.raises(ValueError, match="one prompt per group"):
        venv.reset(options={"prompt_index": [0, 1, 2, 2]})
    with pytest.raises(ValueError, match="seed=.*group_size=2"):
        venv.reset(seed=[1, 2, 3, 4])
    for key, value in venv.core.observe().items():  # a refused reset changes nothing
        np.testing.assert_array_equal(value, before[key])
    obs, infos = venv.reset(options={"prompt_index": [0, 0, 3, 3]})
    assert infos["prompt_index"].tolist() == [0, 0, 3, 3]
    assert infos["group"][0] == infos["group"][1] != infos["group"][2]


def test_make_vec_passes_group_size(tiny_gpt2):
    venv = gym.make_vec(
        "TextGen-v0",
        num_envs=4,
        vectorization_mode="vector_entry_point",
        **kwargs(tiny_gpt2, group_size=2),
    )
    _, infos = venv.reset(seed=0)
    assert infos["group"][0] == infos["group"][1] != infos["group"][2] == infos["group"][3]
