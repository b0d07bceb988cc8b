"""Tianshou's collector runs TextGen unwrapped: its buffer takes every step's info (the same
keys with values of fixed types on every step; `tests/test_infos.py` pins that property)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv

import textgym  # noqa: F401  (registers TextGen-v0)

PROMPTS = ["the movie", "i watched this film last night with my friends", "the plot"]


class UniformTokens(Policy):
    """Uniformly random integer actions (Tianshou's `RandomActionPolicy` samples floats for a
    ``Discrete`` space, which TextGen refuses)."""

    def __init__(self, action_space: gym.spaces.Discrete, seed: int = 0) -> None:
        super().__init__(action_space=action_space)
        self.rng = np.random.default_rng(seed)

    def forward(self, batch: Batch, state=None, **kwargs) -> Batch:
        actions = self.rng.integers(self.action_space.n, size=len(batch.obs.input_ids))
        return Batch(act=actions, state=state)


def make_env(tiny_gpt2, action_mode: str) -> gym.Env:
    return gym.make(
        "TextGen-v0",
        model=str(tiny_gpt2),
        prompts=PROMPTS,
        max_new_tokens=4,
        action_mode=action_mode,
        top_k=5,
        reward_model=lambda prompts, texts: [len(text) / 10.0 for text in texts],
        missing_eos_penalty=0.5,
    )


@pytest.mark.filterwarnings("ignore:no policy scorer is attached")
@pytest.mark.filterwarnings("ignore:Single environment detected, wrap to DummyVectorEnv")
@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
@pytest.mark.parametrize("n_envs", [None, 3], ids=["single env", "DummyVectorEnv"])
def test_tianshou_collector_stores_every_step_of_textgen(tiny_gpt2, action_mode, n_envs):
    if n_envs is None:  # Tianshou wraps a plain gymnasium env itself
        env = make_env(tiny_gpt2, action_mode)
        action_space, buffers = env.action_space, 1
    else:
        env = DummyVectorEnv([lambda: make_env(tiny_gpt2, action_mode)] * n_envs)
        action_space, buffers = env.action_space[0], n_envs
    collector = Collector(
        UniformTokens(action_space),
        env,
        VectorReplayBuffer(400, buffers),
        raise_on_nan_in_buffer=True,  # None (a missing str) counts as null too
    )
    stats = collector.collect(n_episode=6, reset_before_collect=True)

    assert stats.n_collected_episodes == 6
    buffer = collector.buffer
    assert len(buffer) == stats.n_collected_steps >= 6
    data = buffer[buffer.sample_indices(0)]
    info, last = data.info, data.terminated
    assert all(isinstance(text, str) for text in info.text)
    assert all(isinstance(prompt, str) and prompt for prompt in info.prompt)
    assert (info.text[~last] == "").all() and (info.rm_score[~last] == 0.0).all()
    lengths = np.array([len(text) / 10.0 for text in info.text[last]])
    np.testing.assert_allclose(info.rm_score[last], lengths)
    np.testing.assert_allclose(
        data.rew, info.kl_reward + info.rm_score - info.eos_penalty, atol=1e-5
    )
