"""Smoke runs of the scripts in examples/: each runs as a user runs it, with a tiny budget,
and what it printed is checked. Each starts a Python process, so they are `heavy`: deselected
by default, run by CI (``python3 -m pytest -m heavy``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"([-+]?\d+(?:\.\d+)?)"
# Four tokens an episode and four evaluation episodes keep every TextGen run to seconds.
TINY_TEXT = ["--max-new-tokens", "4", "--episodes", "4"]


def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name> args`` from the repository root and return what it printed."""
    result = subprocess.run(
        [sys.executable, f"examples/{name}", *args],
        cwd=ROOT,
        # One thread: as fast for these tiny models, and no oversubscription on a busy machine.
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def numbers(output: str, before: str) -> list[float]:
    """Every number printed right after the text ``before``, in order."""
    found = [float(x) for x in re.findall(re.escape(before) + NUMBER, output)]
    assert found, f"nothing printed after {before!r} in:\n{output}"
    return found


def test_ppo_gridworld_prints_success_rates_and_a_drawn_episode():
    output = run_example("ppo_gridworld.py", "--steps", "2048", "--episodes", "10")
    rates = numbers(output, "success rate before training: ")
    rates += numbers(output, "success rate after 2048 steps: ")  # one rollout of SB3's PPO
    assert len(rates) == 2 and all(0.0 <= rate <= 1.0 for rate in rates)
    assert 1.0 <= numbers(output, "mean episode length after training: ")[0] <= 100.0
    assert "R" in output  # the robot in the drawn grid
    assert numbers(output, "final task reward: ")[0] in (-1.0, 0.0, 1.0)
    assert -2.0 < numbers(output, "return with the shaping: ")[0] < 1.0


def test_ppo_textgen_topk_prints_rm_scores_before_and_after():
    output = run_example("ppo_textgen_topk.py", "--steps", "1", "--n-envs", "8", *TINY_TEXT)
    assert "'action_mode': 'topk'" in output
    assert "after 768 steps" in output  # one rollout: 8 envs x 96 steps
    scores = numbers(output, "mean RM score ")
    assert len(scores) == 2 and all(-1.0 <= s <= 1.0 for s in scores)  # VADER's range
    # PPO's ReferencePriorPolicy starts as the reference: no KL before training.
    assert abs(numbers(output, "KL per sequence ")[0]) < 1e-3
    assert len(numbers(output, "(RM ")) == 2  # two sample texts


def test_maskable_ppo_textgen_prints_masks_and_rm_scores():
    output = run_example("maskable_ppo_textgen.py", "--steps", "1", "--n-envs", "8", *TINY_TEXT)
    assert "action space: Discrete(2356)" in output
    assert 10 <= numbers(output, "allowed in the first state: ")[0] <= 11  # top-10 (+ EOS)
    scores = numbers(output, "mean RM score ")
    assert len(scores) == 2 and all(-1.0 <= s <= 1.0 for s in scores)
    assert len(numbers(output, "(RM ")) == 2


def test_gpt_policy_trains_on_both_envs_starting_at_zero_kl():
    output = run_example("gpt_policy.py", "--steps", "1", "--n-envs", "2", *TINY_TEXT)
    assert "TextGen-v0: SequencePPO" in output and "GridWorld-v1: PPO" in output
    # The policy starts as the reference: the first update's episodes carry no KL.
    assert abs(numbers(output, "KL per sequence ")[0]) < 0.01
    for metric, low in (("mean_rm_score", -1.0), ("success_rate", 0.0)):
        found = re.search(rf"{metric} before {NUMBER}, after {NUMBER}", output)
        assert found and all(low <= float(x) <= 1.0 for x in found.groups()), output


def test_custom_reward_model_prints_the_callables_reward():
    output = run_example("custom_reward_model.py", "--steps", "1", "--n-envs", "8", *TINY_TEXT)
    # brevity() is 1 - len(text) / 100, and four tokens are far fewer than 100 characters.
    assert len(numbers(output, "tokens: mean reward ")) == 1  # the callback, after one update
    rewards = numbers(output, "mean reward ")
    assert len(rewards) == 3 and all(0.0 < r <= 1.0 for r in rewards)  # update, before, after


def test_policy_gradient_loop_prints_returns_and_starts_at_zero_kl():
    output = run_example(
        "policy_gradient_loop.py", "--episodes", "8", "--batch", "4", "--max-new-tokens", "4"
    )
    kls = numbers(output, "KL per sequence ")
    rm_scores = numbers(output, "RM score ")
    assert len(kls) == 2 and all(-1.0 <= s <= 1.0 for s in rm_scores)
    # The policy starts as the reference: no KL, so the first update's return is the RM score.
    assert abs(kls[0]) < 0.01
    first = numbers(output, "mean return, first 4 episodes: ")[0]
    assert first == pytest.approx(rm_scores[0], abs=0.002)
    assert (
        numbers(output, "mean return, last 4 episodes: ")[0] == numbers(output, "mean return ")[1]
    )


def test_branching_estimates_a_prefix_value_from_forked_continuations():
    output = run_example(
        "branching.py",
        "--n",
        "6",
        "--prefix-tokens",
        "3",
        "--max-new-tokens",
        "8",
        "--prompt-index",
        "2",
    )
    assert output.startswith("prefix: ")
    value = numbers(output, "over 6 continuations: ")[0]
    best, worst = (
        numbers(output, "best of 6: return ")[0],
        numbers(output, "worst of 6: return ")[0],
    )
    # The reference samples and scores itself: no KL, so a return is a VADER score.
    assert -1.0 <= worst <= value <= best <= 1.0
    assert worst < best  # six continuations of one prefix differ
    assert numbers(output, "standard error: ")[0] > 0
