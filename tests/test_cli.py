"""The ``textgym`` command line."""

from __future__ import annotations

import pytest

from textgym.cli import main, parse_env_args


def test_env_args_parse_python_literals_and_strings():
    assert parse_env_args(["max_new_tokens=8", "action_mode=topk", "prompts=['a', 'b']"]) == {
        "max_new_tokens": 8,
        "action_mode": "topk",
        "prompts": ["a", "b"],
    }
    with pytest.raises(SystemExit, match="key=value"):
        parse_env_args(["oops"])


def test_rollout_gridworld_renders_random_episodes(capsys):
    main(["rollout", "GridWorld-v0", "--episodes", "2", "--seed", "1"])
    out = capsys.readouterr().out
    assert out.count("--- episode") == 2 and "R" in out and "rewards per step" in out


def test_rollout_textgen_renders_tokens_with_rewards_and_rm_score(capsys, tiny_gpt2):
    main(
        [
            "rollout",
            "TextGen-v0",
            "--episodes",
            "2",
            "--temperature",
            "2.0",
            "--env-arg",
            f"model={str(tiny_gpt2)!r}",
            "--env-arg",
            "prompts=['the movie was']",
            "--env-arg",
            "max_new_tokens=4",
        ]
    )
    out = capsys.readouterr().out
    assert out.count("--- episode") == 2 and out.count("RM score") == 2
    assert "step rewards" in out and "the movie was" in out


def test_reference_policy_rollout_has_zero_kl_reward(capsys, tiny_gpt2):
    main(
        [
            "rollout",
            "TextGen-v0",
            "--episodes",
            "1",
            "--env-arg",
            f"model={str(tiny_gpt2)!r}",
            "--env-arg",
            "prompts=['the movie was']",
            "--env-arg",
            "max_new_tokens=4",
        ]
    )
    assert "KL reward +0.000" in capsys.readouterr().out
