"""The ``device=`` path on a GPU: same rewards as on the CPU, and training runs there.

Skipped where CUDA is not available (CI has no GPU); run on a GPU machine with
``python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textgym.envs.textgen import TextGenEnv
from textgym.envs.textgen_vector import TextGenVectorEnv
from textgym.rewards import HFRewardModel
from textgym_agents.trainers.sequence_ppo import SequencePPO

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PROMPTS = ["the movie was", "a quiet drama about a family in", "i watched this film"]


def play(env: TextGenEnv, actions: list[int]) -> tuple[list[float], list[float]]:
    """Rewards and reference log-probs of a fixed action sequence from seed 0."""
    env.reset(seed=0)
    rewards, ref_logprobs = [], []
    for action in actions:
        _, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        ref_logprobs.append(info["ref_logprob"])
        if terminated:
            break
    return rewards, ref_logprobs


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_env_on_cuda_gives_the_cpu_rewards(tiny_gpt2, action_mode):
    kwargs = {"model": str(tiny_gpt2), "prompts": PROMPTS, "max_new_tokens": 6, "top_k": 5}
    cpu = TextGenEnv(action_mode=action_mode, device="cpu", **kwargs)
    gpu = TextGenEnv(action_mode=action_mode, device="cuda", **kwargs)
    assert gpu.reference_model.device.type == "cuda"
    actions = [3, 1, 4, 1, 0, 2]
    cpu_rewards, cpu_ref = play(cpu, actions)
    gpu_rewards, gpu_ref = play(gpu, actions)
    np.testing.assert_allclose(gpu_ref, cpu_ref, atol=1e-4)
    np.testing.assert_allclose(gpu_rewards, cpu_rewards, atol=1e-4)


def test_vector_env_on_cuda_returns_host_arrays(tiny_gpt2):
    envs = TextGenVectorEnv(
        num_envs=4, model=str(tiny_gpt2), prompts=PROMPTS, max_new_tokens=4, device="cuda"
    )
    envs.reset(seed=0)
    ended = np.zeros(4, dtype=bool)
    for _ in range(6):
        obs, rewards, terminated, _, _ = envs.step(np.array([1, 2, 3, 4]))
        assert isinstance(obs["input_ids"], np.ndarray) and isinstance(rewards, np.ndarray)
        assert np.all(np.isfinite(rewards))
        ended |= terminated
    assert ended.all()  # 4 tokens at most, then the rows restart on their own


def test_sequence_ppo_trains_on_cuda_from_kl_zero(tiny_gpt2):
    env_kwargs = {
        "model": str(tiny_gpt2),
        "prompts": PROMPTS,
        "max_new_tokens": 5,
        "kl_coef": 0.5,
        "device": "cuda",
    }
    agent = SequencePPO(env_kwargs, seed=0, num_envs=4, episodes_per_update=8)
    assert agent.device.type == "cuda"
    episodes = agent.collect()
    assert all(abs(e.kl) < 1e-4 for e in episodes)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.update(episodes)
    moved = any(not torch.equal(b, p) for b, p in zip(before, agent.policy.parameters()))
    assert moved


def test_hf_reward_model_on_cuda_scores_as_on_cpu(tiny_reward_model):
    texts = [" was great", " was a long and boring film"]
    cpu = HFRewardModel(tiny_reward_model, device="cpu").score(PROMPTS[:2], texts)
    gpu = HFRewardModel(tiny_reward_model, device="cuda").score(PROMPTS[:2], texts)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
