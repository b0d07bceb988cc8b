"""The README's and the documentation site's claims that a command can check: every Python
block runs, the README stays short, the site's pages and links hold, and the site builds."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# The README and every page of the site (docs/), as written: an included snippet is tested
# where it is written, once.
PAGES = {"README.md": README} | {
    str(path.relative_to(ROOT)): path.read_text() for path in sorted((ROOT / "docs").rglob("*.md"))
}
BLOCKS = [
    (name, block)
    for name, text in PAGES.items()
    for block in re.findall(r"```python\n(.*?)```", text, re.S)
]
BASH = [
    line.split("  #")[0].strip()
    for text in PAGES.values()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S)
    for line in block.splitlines()
]
CI = (ROOT / ".ci" / "run").read_text()
MKDOCS = (ROOT / "mkdocs.yml").read_text()


def _check_quickstart(ns):
    assert isinstance(ns["info"]["text"], str)
    assert ns["info"]["prompt"] == "I saw this movie with my kids and"  # as commented
    assert -1.0 <= ns["info"]["rm_score"] <= 1.0
    assert ns["info"]["episode_kl"] > 0  # the uniform scorer was used: uniform is not pi_ref
    # The sentence under the block: each token pays -kl_coef * (log pi - log pi_ref).
    info = ns["info"]
    assert info["policy_logprob"] == pytest.approx(-np.log(ns["n"]))
    expected = -info["kl_coef"] * (info["policy_logprob"] - info["ref_logprob"])
    assert info["kl_reward"] == pytest.approx(expected, rel=1e-5)


def _check_own_model(ns):
    obs, info = ns["env"].reset(seed=0)
    assert obs["input_ids"].shape == obs["attention_mask"].shape
    assert info["prompt"] in ns["prompts"]
    after = ns["summary"]["after"]
    assert 0.0 <= after["mean_rm_score"] <= 1.0
    # The run evaluates again exactly, given its reward function ...
    reward = {"reward_model": ns["tells_the_story"]}
    again = ns["evaluate_run"]("runs/my-model", env_kwargs=reward)
    assert again["mean_rm_score"] == after["mean_rm_score"]
    # ... and the README's command line trains on the same model directory.
    (command,) = [line for line in BASH if "--env-arg model=my-model --out" in line]
    argv = shlex.split(command)[1:] + ["--steps", "64", "--eval-episodes", "4", "--no-progress"]
    argv += ["--env-arg", "max_new_tokens=4"]  # seconds, not a minute
    done = subprocess.run(
        [sys.executable, "-m", "textgym", *argv], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "gpt on TextGen-v0" in done.stdout
    config = json.loads(Path("runs/my-model-cli/config.json").read_text())
    assert config["env_kwargs"]["model"] == "my-model"


def _check_batched(ns):
    obs, infos = ns["envs"].reset(seed=0)
    assert obs["input_ids"].shape[0] == 2 and ns["venv"].num_envs == 2


def _check_zoo(ns):
    assert ns["evaluate"](ns["model"], "GridWorld-v1", episodes=2, seed=0)["success_rate"] >= 0.0


def _check_gpt_sb3(ns):
    core = ns["venv"].unwrapped.core
    assert core.scorer == ns["model"].policy.score  # the GPT policy scores itself


def _check_exact(ns):
    assert round(ns["solver"].optimal_value(), 3) == 0.758  # as printed
    assert round(ns["reference"]["objective"], 3) == -0.006
    assert (round(ns["reference"]["gap"], 3), round(ns["uniform"]["gap"], 3)) == (0.764, 1.775)
    assert ns["env"].unwrapped.core.scorer is not None


# Every Python block of the README and the docs, found by a line of it: the replacements that
# make it run here within seconds (a tiny model for a hub name, small budgets), and what to
# check after.
CASES = {
    'env = gym.make("TextGen-v0")  # the bundled default task': ([], _check_quickstart),
    "def tells_the_story(": (
        [("steps=20_000", "steps=64, n_envs=4, eval_episodes=4")],
        _check_own_model,
    ),
    "solver = ExactSolver(env)": ([], _check_exact),
    "num_envs=64": ([("num_envs=64", "num_envs=2"), ("n_envs=64", "n_envs=2")], _check_batched),
    'model.learn(default_budget("ppo", "GridWorld-v1"))': (
        [('default_budget("ppo", "GridWorld-v1")', "256"), ("episodes=100", "episodes=2")],
        _check_zoo,
    ),
    "model.learn(20_000": (
        [("model.learn(20_000", "model.learn(96"), ("n_envs=16", "n_envs=2")]
        + [("batch_size=192", "batch_size=48")],
        _check_gpt_sb3,
    ),
}


def test_every_python_block_has_a_case():
    found = [(name, [marker for marker in CASES if marker in block]) for name, block in BLOCKS]
    assert all(len(markers) == 1 for _, markers in found), found
    assert sorted(m for _, (m,) in found) == sorted(CASES)


@pytest.mark.parametrize("marker", list(CASES))
def test_python_block_runs(marker, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # what a block writes (a model, a run) lands here
    ((name, code),) = [(name, block) for name, block in BLOCKS if marker in block]
    replacements, check = CASES[marker]
    for old, new in replacements:
        assert old in code, f"the block in {name} changed: {old!r} is gone"
        code = code.replace(old, new)
    namespace: dict = {}
    exec(compile(code, f"{name} block {marker!r}", "exec"), namespace)
    check(namespace)


def test_ci_runs_exactly_the_readme_test_command():
    setup = re.search(r"# 2\. install and pass the tests.*?\n(.*?)\n", README).group(1)
    test_command = setup.split("&&")[-1].strip()
    assert test_command == "python3 -m pytest"
    assert CI.strip().splitlines()[-1] == test_command


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 250


def _nav_pages() -> list[str]:
    return re.findall(r"^\s*- (?:[^:\n]+: )?([\w./-]+\.md)\s*$", MKDOCS, re.M)


def test_every_page_of_the_site_is_in_its_navigation():
    pages = sorted(str(path.relative_to(ROOT / "docs")) for path in (ROOT / "docs").rglob("*.md"))
    assert sorted(_nav_pages()) == pages


def test_the_readmes_links_lead_to_files():
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target


def test_the_snippets_the_site_includes_exist():
    """Each `--8<-- "FILE:section"` of a page names a file and a section marked in it (the
    build below fails on a missing one too; this says which)."""
    for name, text in PAGES.items():
        for path, _, section in re.findall(r'^--8<-- "([^":]+)(:?)([\w-]*)"', text, re.M):
            source = (ROOT / path).read_text()
            assert not section or f"--8<-- [start:{section}]" in source, (name, path, section)


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict` (the `docs` extra, part of `dev`): a broken link, a missing
    snippet or an object the API reference names that is gone fails it."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_the_api_reference_shows_every_public_name_of_textgym_agents():
    import textgym_agents

    api = (ROOT / "docs" / "api.md").read_text()
    for name in textgym_agents.__all__:
        if name != "AGENTS":  # a table, shown in docs/agents.md
            assert f"::: {textgym_agents._EXPORTS[name]}.{name}\n" in api, name
