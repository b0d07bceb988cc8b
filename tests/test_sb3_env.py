"""The stable-baselines3 VecEnvs (`textgym_agents.sb3_env`): TextGen batched, SB3's autoreset."""

from __future__ import annotations

import warnings

import numpy as np

from textgym_agents.sb3_env import TextGenSB3VecEnv, make_sb3_vec_env

PROMPTS = [
    "the movie",
    "a quiet drama about a family in a small town and",
    "i watched this film last night with my friends",
    "the plot",
]


def test_sb3_vec_env_resets_rows_in_place_with_terminal_observation(tiny_gpt2):
    venv = TextGenSB3VecEnv(2, seed=0, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=4)
    obs = venv.reset()
    eos = venv.core.eos_token_id
    obs, rewards, dones, infos = venv.step(np.array([eos, 3]))
    assert dones.tolist() == [True, False]
    terminal = infos[0]["terminal_observation"]
    assert terminal["input_ids"][terminal["attention_mask"].sum() - 1] == eos
    assert obs["attention_mask"][0].sum() == venv.core.prompt_len[0]  # already reset
    assert set(infos[0]) - {"terminal_observation", "TimeLimit.truncated"} == set(infos[1])
    assert (infos[1]["rm_score"], infos[1]["text"]) == (0.0, "")  # row 1 goes on
    masks = np.stack(venv.env_method("action_masks"))
    assert masks.shape == (2, venv.action_space.n) and masks[:, eos].all()


def test_make_sb3_vec_env_batches_textgen_and_maskable_ppo_runs(tiny_gpt2):
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    venv = make_sb3_vec_env(
        "TextGen-v0",
        n_envs=4,
        seed=0,
        model=str(tiny_gpt2),
        prompts=PROMPTS,
        max_new_tokens=4,
        action_mode="topk",
        top_k=4,
    )
    assert isinstance(venv.unwrapped, TextGenSB3VecEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        PPO("MultiInputPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0).learn(64)
        vocab = make_sb3_vec_env(
            "TextGen-v0", n_envs=2, seed=0, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=4
        )
        MaskablePPO("MultiInputPolicy", vocab, n_steps=16, batch_size=32, n_epochs=1, seed=0).learn(
            32
        )
    grid = make_sb3_vec_env("GridWorld-v0", n_envs=2, seed=0)
    assert grid.num_envs == 2
