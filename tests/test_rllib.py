"""Ray RLlib's stock PPO on textgym's envs, by their registered names, as a new user runs it.

RLlib pins its own gymnasium (1.2.2), so these run in an environment of their own:
``pip install -e ".[rllib]"`` (``.ci/run`` makes one, and requires them there); where ray is
not installed they are skipped.
"""

from __future__ import annotations

import os

import pytest

# .ci/run's RLlib environment sets TEXTGYM_RLLIB_TESTS=1: there a missing ray fails, not skips.
ray = __import__("ray") if os.environ.get("TEXTGYM_RLLIB_TESTS") else pytest.importorskip("ray")

from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.connectors.env_to_module import FlattenObservations  # noqa: E402

import textgym  # noqa: E402, F401  (registers the envs)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# RLlib's default module has no encoder for a ``Discrete`` observation (GridWorld's cell
# index): one-hot it, as SB3 does itself. A lambda, which Ray pickles by value: env runners
# cannot import this test module by name.
one_hot = lambda env=None, spaces=None, device=None: FlattenObservations()  # noqa: E731


def test_stock_ppo_learns_the_4x4_gridworld_on_two_env_runners(local_ray):
    config = (
        PPOConfig()
        .environment("textgym:GridWorld-v0", env_config={"map": "4x4"})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=4, env_to_module_connector=one_hot)
        .training(train_batch_size_per_learner=2000)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        returns = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(10)]
    finally:
        algo.stop()
    assert returns[0] < 0.5 and max(returns) >= 0.9, returns


def test_stock_ppo_runs_textgen_on_the_native_vector_env(local_ray, tiny_gpt2):
    """One `TextGenVectorEnv` per env runner (gymnasium's vector_entry_point mode): one
    reference model and one batched KV cache for all its rows."""
    env_config = {"model": str(tiny_gpt2), "max_new_tokens": 4, "action_mode": "topk"}
    config = (
        PPOConfig()
        .environment("textgym:TextGen-v0", env_config=env_config)
        .env_runners(
            num_env_runners=1,
            num_envs_per_env_runner=8,
            gym_env_vectorize_mode="vector_entry_point",
            env_to_module_connector=one_hot,
        )
        .training(train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        kinds = algo.env_runner_group.foreach_env_runner(
            lambda runner: type(runner.env.unwrapped).__name__, local_env_runner=False
        )
        result = algo.train()
    finally:
        algo.stop()
    assert kinds == ["TextGenVectorEnv"]
    runners = result["env_runners"]
    assert runners["num_env_steps_sampled_lifetime"] >= 128
    assert runners["num_episodes"] > 0 and runners["episode_len_mean"] <= 4
