"""The ``textgym`` command line."""

from __future__ import annotations

import pytest

from textgym.cli import main, parse_env_args


def tiny_textgen_args(path) -> list[str]:
    """``--env-arg`` options for a fast TextGen on the tiny test model."""
    pairs = [f"model={str(path)!r}", "prompts=['the movie was']", "max_new_tokens=4"]
    return [part for pair in pairs for part in ("--env-arg", pair)]


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
        ["rollout", "TextGen-v0", "--episodes", "2", "--temperature", "2.0"]
        + tiny_textgen_args(tiny_gpt2)
    )
    out = capsys.readouterr().out
    assert out.count("--- episode") == 2 and out.count("RM score") == 2
    assert "step rewards" in out and "the movie was" in out


def test_reference_policy_rollout_has_zero_kl_reward(capsys, tiny_gpt2):
    main(["rollout", "TextGen-v0", "--episodes", "1"] + tiny_textgen_args(tiny_gpt2))
    assert "KL reward +0.000" in capsys.readouterr().out


def test_bad_temperature_is_refused():
    with pytest.raises(SystemExit, match="--temperature"):
        main(["rollout", "GridWorld-v0", "--temperature", "0"])


def test_hot_temperature_on_the_bundled_model_earns_a_kl_penalty(capsys):
    main(
        [
            "rollout",
            "TextGen-v0",
            "--episodes",
            "1",
            "--temperature",
            "3.0",
            "--env-arg",
            "max_new_tokens=6",
        ]
    )
    kl_reward = float(capsys.readouterr().out.split("KL reward")[1].split()[0])
    assert kl_reward < -0.01
