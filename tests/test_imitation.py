"""Behaviour cloning from an env's expert (`textgym_agents.trainers.imitation.clone_expert`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from textgym_agents.backends.sb3.zoo import default_budget, default_imitation, make_agent
from textgym_agents.trainers.imitation import clone_expert
from textgym_agents.training.evaluation import evaluate
from textgym_agents.training.rundir import format_summary
from textgym_agents.training.train import train


def test_cloned_policy_walks_the_shortest_path_and_values_rise_towards_the_diamond() -> None:
    model = make_agent("ppo", "GridWorld-v0", seed=0)  # index observations, MlpPolicy
    before = evaluate(model, "GridWorld-v0", episodes=20, seed=100)
    info = clone_expert(model, 3_000, epochs=20, seed=0)
    after = evaluate(model, "GridWorld-v0", episodes=20, seed=100)
    assert before["success_rate"] < 0.5
    assert after["success_rate"] == 1.0 and after["mean_length"] == 10  # the shortest route
    assert info["agreement"] > 0.95 and info["samples"] > 2_000
    # The critic learned with it: the start (10 moves away) is worth less than the cell
    # the route passes next to the diamond (index 34, one move away), and more than nothing.
    with torch.no_grad():
        values = model.policy.predict_values(torch.tensor([0, 34])).squeeze(-1)
    assert 0.2 < values[0] < values[1]


def test_demonstrations_are_reproducible_per_seed() -> None:
    infos = []
    for _ in range(2):
        model = make_agent("ppo", "GridWorld-v0", seed=0)
        infos.append(clone_expert(model, 500, epochs=1, seed=3))
    assert infos[0] == infos[1]
    assert 0 < infos[0]["demonstration_return"] <= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, r"steps=0: expected an integer >= 1"),
        ({"steps": 100, "noise": 1.5}, r"noise=1.5: expected a probability in \[0, 1\]"),
        ({"steps": 100, "epochs": True}, r"epochs=True: expected an integer >= 1"),
        ({"steps": 100, "learning_rate": 0}, r"learning_rate=0: expected a finite number > 0"),
        ({"steps": 100, "expert": "oracle"}, r"expert='oracle' is not a method of the env"),
    ],
)
def test_bad_arguments_are_named_and_leave_the_policy_unchanged(kwargs, message) -> None:
    model = make_agent("ppo", "GridWorld-v0", seed=0)
    weights = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(ValueError, match=message):
        clone_expert(model, **kwargs)
    for old, new in zip(weights, model.policy.parameters()):
        assert torch.equal(old, new)


def test_too_few_steps_to_finish_an_episode_is_an_error() -> None:
    model = make_agent("ppo", "GridWorld-v0", seed=0)
    with pytest.raises(ValueError, match=r"steps=1 finished no episode"):
        clone_expert(model, 1, noise=0.0)
    assert np.isfinite(evaluate(model, "GridWorld-v0", episodes=2, seed=0)["mean_return"])


def test_train_clones_before_rl_and_reports_it(tmp_path) -> None:
    summary = train(
        "GridWorld-v0",
        "ppo",
        steps=256,
        imitate=3_000,
        out=tmp_path / "run",
        progress=False,
        eval_episodes=10,
        n_envs=1,
        n_steps=128,
    )
    cloned = summary["imitation"]
    assert cloned["evaluation"]["success_rate"] == 1.0 and cloned["agreement"] > 0.95
    assert summary["before"]["success_rate"] < 0.5
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["imitation"]["agreement"] == cloned["agreement"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["imitate"] == 3_000
    assert "cloned (10 episodes, greedy): mean return" in format_summary(summary)


@pytest.mark.parametrize(
    ("agent", "imitate", "message"),
    [
        ("dqn", 100, r"imitate=100 needs an SB3 actor-critic agent .* agent='dqn'"),
        ("ppo", -1, r"imitate=-1: expected an integer >= 0"),
    ],
)
def test_train_refuses_imitation_it_cannot_do_before_claiming_the_run(
    tmp_path, agent: str, imitate: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train("GridWorld-v0", agent, steps=10, imitate=imitate, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_zoo_starts_the_gpt_policy_on_random_maps_from_cloning() -> None:
    random_maps = {"random_map": True, "size": 6}
    assert default_imitation("gpt", "GridWorld-v0", random_maps) == 200_000
    assert default_budget("gpt", "GridWorld-v0", random_maps) == 150_000
    # The default map and the other agents keep their own entries.
    assert default_imitation("gpt", "GridWorld-v0") == 0
    assert default_budget("gpt", "GridWorld-v0") == 100_000
    assert default_imitation("ppo", "GridWorld-v0", random_maps) == 0
    model = make_agent("gpt", "GridWorld-v0", env_kwargs=random_maps)
    assert (model.n_envs, model.n_steps, model.ent_coef) == (32, 64, 0.01)
