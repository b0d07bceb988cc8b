"""SB3's VecEnvs (`textgym_agents.backends.sb3.vec_env`): TextGen batched, SB3's autoreset."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest

from textgym_agents.backends.sb3.vec_env import TextGenSB3VecEnv, make_sb3_vec_env

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
    grid = make_sb3_vec_env("GridWorld-v1", n_envs=2, seed=0)
    assert grid.num_envs == 2


def _steps(venv, actions: np.ndarray) -> list:
    """Observations, rewards, dones and infos of stepping ``venv`` with each row of ``actions``."""
    return [venv.step(a) for a in actions]


def _assert_same_steps(first: list, second: list) -> None:
    """Equal observations, dones and info keys; rewards and float infos to float32 rounding (an
    unpickled TextGen rebuilds its KV cache with one full forward instead of step by step)."""
    for (obs_a, rew_a, done_a, infos_a), (obs_b, rew_b, done_b, infos_b) in zip(first, second):
        np.testing.assert_equal((obs_a, done_a), (obs_b, done_b))
        np.testing.assert_allclose(rew_a, rew_b, rtol=1e-5, atol=1e-6)
        for info_a, info_b in zip(infos_a, infos_b):
            info_a.pop("episode", None)  # VecMonitor's: its wall-clock time differs
            info_b.pop("episode", None)
            assert info_a.keys() == info_b.keys()
            for key, value in info_a.items():
                if isinstance(value, float):
                    assert value == pytest.approx(info_b[key], rel=1e-5, abs=1e-6), key
                else:
                    np.testing.assert_equal(value, info_b[key])


@pytest.mark.parametrize("copy_env", [lambda v: pickle.loads(pickle.dumps(v)), copy.deepcopy])
def test_sb3_vec_env_pickles_and_the_copy_steps_like_the_original(tiny_gpt2, copy_env):
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=3, seed=0, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=3
    )
    copy_env(venv).reset()  # before the first reset too
    venv.reset()
    venv.step(np.array([5, 6, 7]))
    clone = copy_env(venv)
    assert isinstance(clone.unwrapped, TextGenSB3VecEnv)
    # Enough steps for every row to finish and restart from a prompt drawn by the copied RNG.
    actions = np.random.default_rng(0).integers(0, 50, size=(8, 3))
    _assert_same_steps(_steps(venv, actions), _steps(clone, actions))
    np.testing.assert_array_equal(venv.reset()["input_ids"], clone.reset()["input_ids"])


def test_gridworld_sb3_vec_env_pickles_and_the_copy_steps_like_the_original():
    venv = make_sb3_vec_env("GridWorld-v1", n_envs=2, seed=0, slip=0.3)
    venv.reset()
    clone = pickle.loads(pickle.dumps(venv))
    actions = np.random.default_rng(0).integers(0, 4, size=(30, 2))
    _assert_same_steps(_steps(venv, actions), _steps(clone, actions))


BAD_ACTION_BATCHES = [
    (
        np.array([1, 2]),
        ValueError,
        r"actions=array\(\[1, 2\]\) has shape \(2,\): expected shape \(3,\)",
    ),
    (np.array([1, 2, 3, 4]), ValueError, r"has shape \(4,\): expected shape \(3,\)"),
    (np.array([[1], [2], [3]]), ValueError, r"has shape \(3, 1\): expected shape \(3,\)"),
    (np.array([[1, 2, 3]]), ValueError, r"has shape \(1, 3\): expected shape \(3,\)"),
    (np.array([1.0, 2.0, 3.0]), TypeError, r"actions=array\(\[1., 2., 3.\]\) has type"),
    (np.array([1, 2, 10**6]), ValueError, r"actions=.* is out of range"),
]


@pytest.mark.parametrize(("actions", "error", "message"), BAD_ACTION_BATCHES)
def test_sb3_vec_env_refuses_a_bad_batch_of_actions_and_stays_usable(
    tiny_gpt2, actions, error, message
):
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=3, seed=0, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=3
    )
    venv.reset()
    venv.step(np.array([5, 6, 7]))
    clone = pickle.loads(pickle.dumps(venv))
    with pytest.raises(error, match=message):
        venv.step(actions)
    good = np.random.default_rng(1).integers(0, 50, size=(5, 3))
    _assert_same_steps(_steps(venv, good), _steps(clone, good))


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (np.array([1, 2]), r"actions has shape \(2,\): expected shape \(3,\)"),
        (np.array([1, 2, 3, 0]), r"actions has shape \(4,\): expected shape \(3,\)"),
        (np.array([[1], [2], [3]]), r"actions has shape \(3, 1\): expected shape \(3,\)"),
        (np.array([1, 2, 4]), r"actions\[2\]=np.int64\(4\) is not in the action space"),
        (np.array([0.0, 1.0, 2.0]), r"actions\[0\]=np.float64\(0.0\) is not in the action space"),
    ],
)
def test_gridworld_sb3_vec_env_refuses_a_bad_batch_before_any_env_steps(actions, message):
    venv = make_sb3_vec_env("GridWorld-v1", n_envs=3, seed=0, slip=0.3)
    venv.reset()
    clone = pickle.loads(pickle.dumps(venv))
    with pytest.raises(ValueError, match=message):
        venv.step(actions)
    good = np.random.default_rng(1).integers(0, 4, size=(20, 3))
    _assert_same_steps(_steps(venv, good), _steps(clone, good))
