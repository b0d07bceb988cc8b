"""TextGen's infos: the same keys on every step, and the same keys and values in every env
(single env, gymnasium VectorEnv, SB3 VecEnv); the candidates of a terminal state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import textgym  # noqa: F401  (registers TextGen-v0)
from textgym.envs.textgen import TextGenEnv
from textgym.envs.textgen_core import INFO_KEYS, SCORER_INFO_KEYS
from textgym.envs.textgen_vector import TextGenVectorEnv
from textgym_agents.backends.sb3.vec_env import TextGenSB3VecEnv

# Long prompts are cut (and warned about) on purpose: cut rows are compared too.
pytestmark = pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens")

PROMPTS = [
    "the movie",
    "a quiet drama about a family in a small town and",
    "i watched this film last night with my friends",
    "the plot",
]
TYPES = {"prompt": str, "prompt_index": int, "text": str}  # every other key: float


def length_rm(prompts, texts):
    return [len(text) / 10.0 for text in texts]


def make_kwargs(tiny_gpt2, action_mode: str = "vocab") -> dict:
    return dict(
        model=str(tiny_gpt2),
        prompts=PROMPTS,
        max_new_tokens=4,
        reward_model=length_rm,
        action_mode=action_mode,
        top_k=5,
        kl_coef=0.3,
        missing_eos_penalty=0.25,
    )


def uniform_scorer(n_actions: int):
    return lambda obs: np.full((len(obs["input_ids"]), n_actions), -np.log(n_actions))


def actions_for(t: int, n: int, action_mode: str, eos: int, rng: np.random.Generator):
    """Random actions; in vocab mode some rows choose EOS, so episodes end at different steps."""
    if action_mode == "topk":
        return rng.integers(0, 5, size=n)
    actions = rng.integers(0, 60, size=n)
    actions[(t + np.arange(n)) % 5 == 2] = eos
    return actions


def assert_same_info(got: dict, expected: dict) -> None:
    """Same keys, same types, same values (floats within the batched forward's rounding)."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert type(got[key]) is type(value), key
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-4), key
        else:
            assert got[key] == value, key


def replay(single: TextGenEnv, episodes: list[dict]) -> None:
    """Play each recorded episode in the single env and compare every info with the record."""
    for episode in episodes:
        _, reset_info = single.reset(options={"prompt_index": episode["reset"]["prompt_index"]})
        assert_same_info(episode["reset"], reset_info)
        for action, info in zip(episode["actions"], episode["infos"]):
            *_, single_info = single.step(int(action))
            assert_same_info(info, single_info)
        assert single_info["text"] != "" or single_info["rm_score"] == 0.0


# ---------------------------------------------------------------- every step, the same keys


@pytest.mark.parametrize("scored", [False, True], ids=["no scorer", "scorer"])
def test_every_step_info_has_the_same_keys_with_values_of_fixed_types(tiny_gpt2, scored):
    env = gym.make("TextGen-v0", **make_kwargs(tiny_gpt2))
    if scored:
        env.unwrapped.attach_policy(uniform_scorer(env.action_space.n))
    keys = INFO_KEYS + SCORER_INFO_KEYS if scored else INFO_KEYS
    _, reset_info = env.reset(seed=0)
    assert set(reset_info) <= set(keys)
    rng, eos = np.random.default_rng(0), env.unwrapped.tokenizer.eos_token_id
    ends = 0
    for t in range(30):
        action = int(actions_for(t, 1, "vocab", eos, rng)[0])
        _, reward, terminated, _, info = env.step(action)
        assert tuple(info) == keys
        assert all(type(info[key]) is TYPES.get(key, float) for key in keys)
        assert info["prompt"] == reset_info["prompt"]
        assert reward == pytest.approx(info["kl_reward"] + info["rm_score"] - info["eos_penalty"])
        if terminated:
            ends += 1
            assert info["rm_score"] == len(info["text"]) / 10.0
            _, reset_info = env.reset()
        else:
            assert (info["rm_score"], info["eos_penalty"], info["text"]) == (0.0, 0.0, "")
    assert ends >= 5


@pytest.mark.parametrize("scored", [False, True], ids=["no scorer", "scorer"])
def test_every_vector_step_has_the_same_keys_with_arrays_of_fixed_types(tiny_gpt2, scored):
    venv = TextGenVectorEnv(3, **make_kwargs(tiny_gpt2))
    if scored:
        venv.attach_policy(uniform_scorer(venv.single_action_space.n))
    keys = INFO_KEYS + SCORER_INFO_KEYS if scored else INFO_KEYS
    _, infos = venv.reset(seed=0)
    assert set(infos) == {"prompt", "_prompt", "prompt_index", "_prompt_index"}
    rng, eos = np.random.default_rng(0), venv.tokenizer.eos_token_id
    dtypes = None
    for t in range(20):
        _, _, terminated, _, infos = venv.step(actions_for(t, 3, "vocab", eos, rng))
        assert set(infos) == set(keys) | {f"_{key}" for key in keys}
        if dtypes is None:
            dtypes = {key: infos[key].dtype for key in keys}
        assert {key: infos[key].dtype for key in keys} == dtypes
        for key in ("prompt", "text"):
            assert all(isinstance(value, str) for value in infos[key])
        assert infos["_prompt"].all()  # stepped rows report it, restarting rows too


# ---------------------------------------------------------------- the same values everywhere


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
@pytest.mark.parametrize("scored", [False, True], ids=["no scorer", "scorer"])
def test_vector_env_infos_equal_the_single_env_infos(tiny_gpt2, action_mode, scored):
    kwargs = make_kwargs(tiny_gpt2, action_mode)
    n = 3
    venv = TextGenVectorEnv(n, **kwargs)
    single = TextGenEnv(**kwargs)
    if scored:
        venv.attach_policy(uniform_scorer(venv.single_action_space.n))
        single.attach_policy(uniform_scorer(single.action_space.n))
    _, infos = venv.reset(seed=1)
    rows = [{key: infos[key].item(i) for key in ("prompt", "prompt_index")} for i in range(n)]
    current = [{"reset": rows[i], "actions": [], "infos": []} for i in range(n)]
    episodes = []
    rng, eos, restart = np.random.default_rng(0), venv.tokenizer.eos_token_id, np.zeros(n, bool)
    for t in range(16):
        actions = actions_for(t, n, action_mode, eos, rng)
        _, _, terminated, _, infos = venv.step(actions)
        for i in range(n):
            # The row's info as the single env has it: the keys whose mask marks the row.
            info = {
                key: infos[key].item(i) for key in infos if key[0] != "_" and infos[f"_{key}"][i]
            }
            if restart[i]:  # gymnasium's convention: the reset info of the new episode
                current[i] = {"reset": info, "actions": [], "infos": []}
                continue
            current[i]["actions"].append(actions[i])
            current[i]["infos"].append(info)
            if terminated[i]:
                episodes.append(current[i])
        restart = terminated
    assert len(episodes) >= 2 * n
    replay(single, episodes)


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_sb3_vec_env_infos_equal_the_single_env_infos(tiny_gpt2, action_mode):
    kwargs = make_kwargs(tiny_gpt2, action_mode)
    n = 3
    venv = TextGenSB3VecEnv(n, seed=1, **kwargs)
    single = TextGenEnv(**kwargs)
    venv.attach_policy(uniform_scorer(venv.action_space.n))
    single.attach_policy(uniform_scorer(single.action_space.n))
    venv.reset()
    current = [{"reset": venv.reset_infos[i], "actions": [], "infos": []} for i in range(n)]
    episodes = []
    rng, eos = np.random.default_rng(0), venv.core.eos_token_id
    for t in range(16):
        actions = actions_for(t, n, action_mode, eos, rng)
        _, _, dones, infos = venv.step(actions)
        for i in range(n):
            info = dict(infos[i])
            if dones[i]:
                assert info.pop("TimeLimit.truncated") is False
                assert set(info.pop("terminal_observation")) == set(venv.observation_space.spaces)
            current[i]["actions"].append(actions[i])
            current[i]["infos"].append(info)
            if dones[i]:
                episodes.append(current[i])
                current[i] = {"reset": venv.reset_infos[i], "actions": [], "infos": []}
    assert len(episodes) >= 2 * n
    replay(single, episodes)


# ---------------------------------------------------------------- terminal candidates


def assert_no_candidates(obs: dict) -> None:
    """A terminal state's candidates: the padding id of input_ids, log-prob 0."""
    assert obs["attention_mask"][-1] == 0  # the last position is padding ...
    assert (obs["candidate_ids"] == obs["input_ids"][-1]).all()  # ... and so are the candidates
    assert (obs["candidate_logprobs"] == 0.0).all()


def assert_candidates(obs: dict) -> None:
    """A live state's candidates: distinct ids whose log-probs form a distribution."""
    assert len(set(obs["candidate_ids"].tolist())) == len(obs["candidate_ids"])
    total = np.logaddexp.reduce(obs["candidate_logprobs"].astype(np.float64))
    assert total == pytest.approx(0.0, abs=1e-5)


def test_terminal_observation_has_no_candidates_in_the_single_env(tiny_gpt2):
    env = gym.make("TextGen-v0", max_episode_steps=3, **make_kwargs(tiny_gpt2, "topk"))
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        assert_candidates(obs)
        obs, _, terminated, truncated, _ = env.step(0)
    assert truncated and not terminated  # cut by the TimeLimit: a live state
    assert_candidates(obs)
    unlimited = TextGenEnv(**make_kwargs(tiny_gpt2, "topk"))
    obs, _ = unlimited.reset(seed=0)
    terminated = False
    while not terminated:
        obs, _, terminated, _, _ = unlimited.step(0)
    assert_no_candidates(obs)
    assert obs in unlimited.observation_space
    obs, _ = unlimited.reset()
    assert_candidates(obs)


def test_terminal_observation_has_no_candidates_in_the_vector_env(tiny_gpt2):
    venv = TextGenVectorEnv(2, **make_kwargs(tiny_gpt2, "topk"))
    venv.reset(seed=0)
    for _ in range(4):
        obs, _, terminated, _, _ = venv.step(np.array([0, 1]))
    assert terminated.all()
    assert obs in venv.observation_space
    for row in range(2):
        assert_no_candidates({key: value[row] for key, value in obs.items()})
    obs, *_ = venv.step(np.array([0, 1]))  # the rows restart
    for row in range(2):
        assert_candidates({key: value[row] for key, value in obs.items()})


def test_terminal_observation_has_no_candidates_in_the_sb3_vec_env(tiny_gpt2):
    venv = TextGenSB3VecEnv(2, seed=0, **make_kwargs(tiny_gpt2, "topk"))
    venv.reset()
    for _ in range(4):
        obs, _, dones, infos = venv.step(np.array([0, 1]))
    assert dones.all()
    for row in range(2):
        terminal = infos[row]["terminal_observation"]
        assert_no_candidates(terminal)
        assert terminal in venv.observation_space
        assert_candidates({key: value[row] for key, value in obs.items()})  # already reset
