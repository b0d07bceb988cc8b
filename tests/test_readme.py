"""The README's claims that a command can check."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_quickstart_code_runs():
    quickstart = re.search(r"## Quickstart\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace: dict = {}
    exec(compile(quickstart, "README-quickstart", "exec"), namespace)
    assert isinstance(namespace["info"]["text"], str)
    assert namespace["info"]["prompt"] == "I saw this movie with my kids and"  # as commented
    assert -1.0 <= namespace["info"]["rm_score"] <= 1.0


def test_ci_runs_exactly_the_readme_test_command():
    setup = re.search(r"# 2\. install and pass the tests.*?\n(.*?)\n", README).group(1)
    test_command = setup.split("&&")[-1].strip()
    assert test_command == "python3 -m pytest"
    assert CI.strip().splitlines()[-1] == test_command


def test_agents_example_runs_with_a_tiny_budget():
    agents = README[README.index("## Agents\n") :]
    code = next(b for b in re.findall(r"```python\n(.*?)```", agents, re.S) if "PPO(" in b)
    assert "model.learn(20_000" in code and "n_envs=16" in code
    for big, small in [
        ("model.learn(20_000", "model.learn(96"),
        ("n_envs=16", "n_envs=2"),
        ("batch_size=192", "batch_size=48"),
    ]:
        code = code.replace(big, small)
    namespace: dict = {}
    exec(compile(code, "README-agents", "exec"), namespace)
    core = namespace["venv"].unwrapped.core
    assert core.scorer == namespace["model"].policy.score  # the GPT policy scores itself


def test_zoo_example_runs_with_a_tiny_budget(capsys):
    agents = README[README.index("## Agents\n") :]
    code = re.search(r"```python\n(.*?)```", agents, re.S).group(1)
    assert 'model.learn(default_budget("ppo", "GridWorld-v0"))' in code
    code = code.replace('default_budget("ppo", "GridWorld-v0")', "256")
    exec(compile(code, "README-zoo", "exec"), {})
    assert "'success_rate':" in capsys.readouterr().out
