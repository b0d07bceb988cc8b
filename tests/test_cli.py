"""The ``textgym`` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from textgym.cli import parse_env_args
from textgym_agents.cli import main


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
    with pytest.raises(ValueError, match="key=value"):
        parse_env_args(["oops"])


def test_rollout_gridworld_renders_random_episodes(capsys):
    main(["rollout", "GridWorld-v1", "--episodes", "2", "--seed", "1"])
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


def test_bad_temperature_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["rollout", "GridWorld-v1", "--temperature", "0"])
    assert "--temperature 0.0: expected a number > 0" in capsys.readouterr().err


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


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "TextGen-v0", "--agent", "sac"], ["agent='sac'", "'gpt'"]),
        (["train", "TextGen-v1", "--agent", "gpt"], ["'TextGen-v1'", "'TextGen-v0'"]),
        (["eval", "runs/nope"], ["run_dir='runs/nope'", "config.json"]),
        (["render", "runs/nope"], ["run_dir='runs/nope'", "config.json"]),
        (["rollout", "TextGen-v0", "--env-arg", "kl_estimator=k9"], ["kl_estimator='k9'", "k1"]),
        (["rollout", "TextGen-v1"], ["'TextGen-v1'", "v0"]),
        (["rollout", "GridWorld-v1", "--threads", "0"], ["--threads", "'auto'"]),
        (["rollout", "GridWorld-v1", "--color", "pink"], ["--color", "'never'"]),
        (["rollout", "GridWorld-v1", "--env-arg", "oops"], ["--env-arg 'oops'", "key=value"]),
    ],
)
def test_errors_print_one_line_naming_the_argument_and_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"textgym {argv[0]}: ")
    for word in words:
        assert word in line


def test_debug_shows_the_error_itself():
    with pytest.raises(ValueError, match="kl_estimator='k9'"):
        main(["rollout", "TextGen-v0", "--env-arg", "kl_estimator=k9", "--debug"])


def test_the_console_command_prints_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "textgym_agents.cli", "eval", "runs/nope"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "textgym eval: run_dir='runs/nope' has no config.json: expected a directory made by "
        "`textgym train` that finished training"
    ]


@pytest.mark.parametrize(("color", "escapes"), [([], False), (["--color", "always"], True)])
def test_colours_only_on_a_terminal_unless_forced(capsys, tiny_gpt2, color, escapes):
    main(["rollout", "TextGen-v0", "--episodes", "1", *color] + tiny_textgen_args(tiny_gpt2))
    main(["render", "reference", "--episodes", "1", *color] + tiny_textgen_args(tiny_gpt2))
    out = capsys.readouterr().out
    assert ("\x1b[" in out) == escapes
    assert out.count("RM score") == 2


def test_auto_threads_is_one_for_small_local_models_and_torch_default_otherwise(tiny_gpt2):
    import torch

    from textgym.threads import default_threads, model_bytes, torch_threads

    assert 0 < model_bytes(None) < 20_000_000  # the bundled model
    assert default_threads([None, tiny_gpt2]) == 1
    assert model_bytes("some-org/some-hub-model") is None  # size unknown before download
    assert default_threads([None, "some-org/some-hub-model"]) == torch.get_num_threads()
    before = torch.get_num_threads()
    with torch_threads(1) as threads:
        assert threads == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0"), torch_threads(0):
        pass


def test_train_records_the_threads_it_used(tmp_path, capsys):
    for threads, name in [([], "auto"), (["--threads", "2"], "two")]:
        run = tmp_path / name
        main(
            ["train", "GridWorld-v1", "--agent", "a2c", "--steps", "16", "--eval-episodes", "1"]
            + ["--no-progress", "--out", str(run), *threads]
        )
        config = json.loads((run / "config.json").read_text())
        assert config["threads"] == (1 if name == "auto" else 2)


def test_a_failing_reward_model_prints_one_line_naming_it(tiny_gpt2, cli_error, monkeypatch):
    monkeypatch.setattr(
        "textgym.rewards.sentiment.VaderSentiment.score", lambda self, p, t: [float("nan")] * len(t)
    )
    argv = ["rollout", "TextGen-v0", "--episodes", "1", "--env-arg", f"model={tiny_gpt2}"]
    line = cli_error(argv)
    assert "reward model 'sentiment' returned non-finite scores [nan]" in line


def test_rllib_options_are_refused_without_the_rllib_backend(cli_error, tmp_path):
    out = str(tmp_path / "run")
    for option in (["--address", "auto"], ["--num-gpus-per-env-runner", "1"]):
        line = cli_error(["train", "GridWorld-v1", "--agent", "ppo", "--out", out, *option])
        assert "expected --backend rllib" in line
    line = cli_error(["train", "GridWorld-v1", "--agent", "ppo", "--num-env-runners", "-1"])
    assert "--num-env-runners -1: expected a count >= 0" in line
    assert not (tmp_path / "run").exists()


def test_the_rllib_backend_without_ray_says_how_to_install_it(cli_error, tmp_path):
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed here")
    argv = ["train", "GridWorld-v1", "--agent", "ppo", "--backend", "rllib"]
    line = cli_error([*argv, "--out", str(tmp_path / "run")])
    assert "needs Ray RLlib" in line and "pip install -e '.[rllib]'" in line
    assert not (tmp_path / "run").exists()


def run_command(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    """``python -m module argv``: the console script as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("module", "argv", "line"),
    [
        (
            "textgym.cli",
            ["rollout", "TextGen-v0", "--env-arg", "klcoef=0.1"],
            "textgym rollout: --env-arg 'klcoef=0.1': TextGen-v0 takes no argument 'klcoef' "
            "(did you mean 'kl_coef'?); expected one of render_mode, group_size, model, "
            "reference_model, reward_model, prompts, max_new_tokens,",
        ),
        (
            "textgym_agents.cli",
            ["train", "GridWorld-v1", "--agent", "ppo", "--env-arg", "slipp=0.1"],
            "textgym train: --env-arg 'slipp=0.1': GridWorld-v1 takes no argument 'slipp' "
            "(did you mean 'slip'?); expected one of render_mode, map, size, random_map, slip, "
            "obs_mode, shaping, shaping_gamma, max_episode_steps, disable_env_checker",
        ),
        (
            "textgym_agents.cli",
            ["compare", "--envs", "GridWorld-v1", "TextGen-v0", "--agents", "ppo"]
            + ["--env-arg", "max_new_tokens=4"],
            "textgym compare: --env-arg 'max_new_tokens=4': GridWorld-v1 takes no argument "
            "'max_new_tokens'; expected one of render_mode, map,",
        ),
    ],
)
def test_an_unknown_env_arg_names_the_closest_key_and_lists_the_valid_ones(
    module, argv, line, tmp_path
):
    out = [] if argv[0] == "rollout" else ["--out", str(tmp_path / "o")]
    done = run_command(module, [*argv, *out])
    assert done.returncode == 2 and done.stdout == ""
    (printed,) = done.stderr.splitlines()
    assert printed.startswith(line)
    valid = printed.split("expected one of ")[1].split(", ")
    if argv[1] == "TextGen-v0":  # every constructor argument is listed
        assert {"kl_estimator", "action_mode", "top_k", "trust_remote_code", "constraint"} <= set(
            valid
        )
    assert not (tmp_path / "o").exists()


def test_env_keywords_are_the_constructor_arguments_and_gym_makes():
    from textgym.cli import env_keywords

    assert env_keywords("GridWorld-v1") == [
        "render_mode",
        "map",
        "size",
        "random_map",
        "slip",
        "obs_mode",
        "shaping",
        "shaping_gamma",
        "max_episode_steps",
        "disable_env_checker",
    ]
    textgen = env_keywords("TextGen-v0")
    assert {"kl_coef", "kl_target", "kl_horizon", "prompts", "missing_eos_penalty"} <= set(textgen)
    assert "num_rows" not in textgen  # the single env sets it
    assert parse_env_args(["kl_coef=0.1"], ["TextGen-v0"]) == {"kl_coef": 0.1}


@pytest.mark.parametrize("episodes", ["0", "-2"])
def test_rollout_refuses_a_non_positive_episode_count(episodes):
    done = run_command("textgym.cli", ["rollout", "GridWorld-v1", "--episodes", episodes])
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"textgym rollout: --episodes {episodes}: expected an integer >= 1"
    ]


def test_python_m_textgym_is_the_console_script_and_its_help_is_for_users():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="textgym")
    assert script.value == "textgym_agents.cli:main"  # what python -m textgym runs
    done = run_command("textgym", ["--help"])
    assert done.returncode == 0
    description = done.stdout.split("\n\n")[1]
    assert description.startswith(
        "textgym: text generation as a Gymnasium environment, next to a gridworld."
    )
    assert "examples:\n  textgym rollout TextGen-v0" in done.stdout
    for command in ("rollout", "train-rm", "train", "eval", "compare", "render", "kl-experiment"):
        assert command in done.stdout.split("positional arguments:")[1]
    done = run_command("textgym", ["eval", "runs/nope"])  # errors as the console script's
    assert done.returncode == 2 and done.stderr.startswith("textgym eval: run_dir='runs/nope'")


def test_train_device_is_checked_first_and_recorded(tmp_path, cli_error, capsys):
    import torch

    out = tmp_path / "run"
    argv = ["train", "GridWorld-v1", "--agent", "a2c", "--steps", "16", "--eval-episodes", "1"]
    argv += ["--no-progress", "--out", str(out)]
    if not torch.cuda.is_available():
        done = run_command("textgym", [*argv, "--device", "cuda"])
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.splitlines() == [
            "textgym train: device='cuda': CUDA is not available here; expected 'cpu'"
        ]
    assert "device='gpu0' is not a torch device" in cli_error([*argv, "--device", "gpu0"])
    line = cli_error([*argv, "--device", "cpu", "--backend", "rllib"])
    assert "expected backend='sb3'" in line
    assert not out.exists()
    main([*argv, "--device", "cpu"])
    assert json.loads((out / "config.json").read_text())["overrides"]["device"] == "cpu"


def test_a_run_with_a_reward_function_names_it_and_eval_asks_for_it(tiny_gpt2, tmp_path):
    from textgym_agents.training.evaluation import evaluate_run
    from textgym_agents.training.train import train

    def shouts(prompts, texts):
        return [float(text.count("!")) for text in texts]

    out = tmp_path / "run"
    env_kwargs = {"model": str(tiny_gpt2), "reward_model": shouts, "max_new_tokens": 4}
    run = {"steps": 16, "n_envs": 4, "eval_episodes": 4, "progress": False, "out": out}
    summary = train("TextGen-v0", "gpt", env_kwargs=env_kwargs, device="cpu", **run)
    config = json.loads((out / "config.json").read_text())
    # device= places TextGen's models (the env argument); SequencePPO follows them.
    assert config["env_kwargs"]["device"] == "cpu" and "device" not in config["overrides"]
    env_kwargs["device"] = "cpu"
    name = f"{__name__}.test_a_run_with_a_reward_function_names_it_and_eval_asks_for_it"
    assert config["env_kwargs"]["reward_model"] == {"python object": f"{name}.<locals>.shouts"}
    again = evaluate_run(out, env_kwargs={"reward_model": shouts})
    assert again["after"] == summary["after"]
    # The same function again resumes (here: the finished run's summary); another is refused.
    assert train("TextGen-v0", "gpt", env_kwargs=env_kwargs, resume=True, **run) == summary
    with pytest.raises(ValueError, match="holds a run made with other arguments: env_kwargs"):
        other = {**env_kwargs, "reward_model": len}
        train("TextGen-v0", "gpt", env_kwargs=other, resume=True, **run)
    done = run_command("textgym", ["eval", str(out)])
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"textgym eval: {out / 'config.json'}: the env argument reward_model= was a Python "
        f"object, {name}.<locals>.shouts, which a file cannot hold (nothing is imported from a "
        "run directory): give it again from Python, e.g. evaluate_run(run_dir, "
        "env_kwargs={'reward_model': ...})"
    ]
