"""The README's claims that a command can check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def _classifier(tiny_gpt2, out):
    """A tiny random-weight sentiment classifier with POSITIVE/NEGATIVE labels."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = {0: "NEGATIVE", 1: "POSITIVE"}
    AutoModelForSequenceClassification.from_pretrained(
        str(tiny_gpt2), num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    ).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(out)
    return out


def _check_quickstart(ns):
    assert isinstance(ns["info"]["text"], str)
    assert ns["info"]["prompt"] == "I saw this movie with my kids and"  # as commented
    assert -1.0 <= ns["info"]["rm_score"] <= 1.0


def _check_own_model(ns):
    obs, info = ns["env"].reset(seed=0)
    assert obs["input_ids"].shape == obs["attention_mask"].shape


def _check_batched(ns):
    obs, infos = ns["envs"].reset(seed=0)
    assert obs["input_ids"].shape[0] == 2 and ns["venv"].num_envs == 2


def _check_zoo(ns):
    assert ns["evaluate"](ns["model"], "GridWorld-v0", episodes=2, seed=0)["success_rate"] >= 0.0


def _check_gpt_sb3(ns):
    core = ns["venv"].unwrapped.core
    assert core.scorer == ns["model"].policy.score  # the GPT policy scores itself


# Every Python block of the README, found by a line of it: the replacements that make it run
# here within seconds (a tiny model for a hub name, small budgets), and what to check after.
CASES = {
    'env = gym.make("TextGen-v0")  # the bundled default task': ([], _check_quickstart),
    'model="path/or/hub-name"': (
        [('"path/or/hub-name"', "TINY_LM"), ('"path/to/classifier"', "CLASSIFIER")],
        _check_own_model,
    ),
    "num_envs=64": ([("num_envs=64", "num_envs=2"), ("n_envs=64", "n_envs=2")], _check_batched),
    'model.learn(default_budget("ppo", "GridWorld-v0"))': (
        [('default_budget("ppo", "GridWorld-v0")', "256"), ("episodes=100", "episodes=2")],
        _check_zoo,
    ),
    "model.learn(20_000": (
        [("model.learn(20_000", "model.learn(96"), ("n_envs=16", "n_envs=2")]
        + [("batch_size=192", "batch_size=48")],
        _check_gpt_sb3,
    ),
}


def test_every_python_block_of_the_readme_has_a_case():
    found = [[marker for marker in CASES if marker in block] for block in BLOCKS]
    assert all(len(markers) == 1 for markers in found), found
    assert sorted(m for (m,) in found) == sorted(CASES)


@pytest.mark.parametrize("marker", list(CASES))
def test_readme_python_block_runs(marker, tiny_gpt2, tmp_path, capsys):
    (code,) = [block for block in BLOCKS if marker in block]
    replacements, check = CASES[marker]
    for old, new in replacements:
        assert old in code, f"the README block changed: {old!r} is gone"
        if new == "TINY_LM":
            new = repr(str(tiny_gpt2))
        elif new == "CLASSIFIER":
            new = repr(str(_classifier(tiny_gpt2, tmp_path / "classifier")))
        code = code.replace(old, new)
    namespace: dict = {}
    exec(compile(code, f"README block {marker!r}", "exec"), namespace)
    check(namespace)


def test_ci_runs_exactly_the_readme_test_command():
    setup = re.search(r"# 2\. install and pass the tests.*?\n(.*?)\n", README).group(1)
    test_command = setup.split("&&")[-1].strip()
    assert test_command == "python3 -m pytest"
    assert CI.strip().splitlines()[-1] == test_command
