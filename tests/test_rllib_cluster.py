"""textgym's RLlib backend on a Ray cluster of two nodes, simulated on this machine with
``ray.cluster_utils.Cluster`` (two raylets, one CPU each): the env runners land on different
nodes, both envs train for a few iterations, and every checkpoint loads.

Runs where the ``rllib`` extra is installed (``.ci/run`` requires it there).
"""

from __future__ import annotations

import json
import os

import pytest

ray = __import__("ray") if os.environ.get("TEXTGYM_RLLIB_TESTS") else pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from textgym_agents.backends import rllib as tg_rllib  # noqa: E402
from textgym_agents.training.evaluation import evaluate  # noqa: E402
from textgym_agents.training.train import train  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def test_env_runners_run_on_both_nodes(two_nodes, tiny_gpt2):
    ray.init(address=two_nodes.address, log_to_driver=False)
    try:
        env_kwargs = {"model": str(tiny_gpt2), "max_new_tokens": 4}
        config = tg_rllib.rllib_config(
            "TextGen-v0",
            "gpt",
            env_kwargs=env_kwargs,
            num_env_runners=2,
            n_envs=8,
            train_batch_size_per_learner=64,
            minibatch_size=32,
            num_epochs=1,
        )
        agent = tg_rllib.RLlibAgent(config)
        try:
            nodes = agent.algo.env_runner_group.foreach_env_runner(
                lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
            )
            agent.learn(128)
        finally:
            agent.close()
    finally:
        ray.shutdown()
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes
    assert len(two_nodes.list_all_nodes()) == 2


@pytest.mark.parametrize(
    ("env_id", "agent_name", "steps"),
    [("GridWorld-v0", "ppo", 512), ("TextGen-v0", "gpt", 256)],
)
def test_train_joins_the_cluster_and_writes_loadable_checkpoints(
    two_nodes, tiny_gpt2, tmp_path, env_id, agent_name, steps
):
    """`textgym train --backend rllib --address ADDR` as on a real cluster: train connects to
    the running cluster (and leaves it running), checkpoints on the way, and every checkpoint
    plays as an agent."""
    env_kwargs = (
        {"model": str(tiny_gpt2), "max_new_tokens": 4} if env_id == "TextGen-v0" else {"map": "4x4"}
    )
    out = tmp_path / "run"
    summary = train(
        env_id,
        agent_name,
        steps=steps,
        env_kwargs=env_kwargs,
        out=out,
        progress=False,
        eval_episodes=4,
        n_envs=8,
        backend="rllib",
        num_env_runners=2,
        address=two_nodes.address,
        checkpoint_every=steps // 2,
        train_batch_size_per_learner=128,
        minibatch_size=64,
        num_epochs=1,
    )
    assert not ray.is_initialized()  # train joined the cluster and left it
    assert summary["training"]["steps"] >= steps
    assert json.loads((out / "config.json").read_text())["address"] == two_nodes.address
    checkpoints = sorted((out / "checkpoints").glob("step_*.zip"))
    assert len(checkpoints) >= 2
    for checkpoint in checkpoints:
        policy = tg_rllib.load_module(checkpoint)
        result = evaluate(policy, env_id, episodes=2, seed=0, env_kwargs=env_kwargs)
        assert result["mean_length"] > 0
