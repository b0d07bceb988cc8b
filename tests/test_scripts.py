"""The analysis scripts in scripts/ that back the documented figures."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import textgym  # noqa: F401  (registers TextGen-v0)

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _complete_continuations(core, prompt: list[int], length: int):
    """Every continuation among the top-k candidates that ends with EOS or at ``length``,
    with the reference's negative log-likelihood (renormalised over the candidates)."""
    with torch.no_grad():
        logits = core.reference_model(torch.tensor([prompt])).logits[0, -1].float()
    top = torch.log_softmax(logits, -1).topk(core.top_k)
    renormalised = top.values - torch.logsumexp(top.values, -1)
    for value, token in zip(renormalised.tolist(), top.indices.tolist()):
        if token == core.eos_token_id or length == 1:
            yield -value, [token]
        else:
            for cost, rest in _complete_continuations(core, prompt + [token], length - 1):
                yield cost - value, [token, *rest]


@pytest.mark.parametrize("seed", range(3))
def test_deterministic_kl_bound_finds_the_least_likely_cost_exactly_when_the_beam_holds_all(
    tiny_gpt2, seed: int
) -> None:
    bound = _load("deterministic_kl_bound")
    env = gym.make(
        "TextGen-v0",
        model=str(tiny_gpt2),
        prompts=["the movie was", "i think this film", "a story"],
        action_mode="topk",
        top_k=3,
        max_new_tokens=3,
    )
    core = env.unwrapped.core
    obs, _ = env.reset(seed=seed)
    prompt = obs["input_ids"][: int(obs["attention_mask"].sum())].tolist()
    cost, length = bound.least_nll(core, prompt, beam=27)  # 3**3: every continuation kept
    best_cost, best = min(_complete_continuations(core, prompt, 3), key=lambda item: item[0])
    assert cost == pytest.approx(best_cost, abs=1e-5)
    assert length == len(best)


def test_stock_defaults_trains_an_sb3_agent_and_measures_greedy_success(monkeypatch):
    stock = _load("stock_defaults")
    act = stock.sb3("ppo", "4x4", steps=64, seed=0)
    assert 0.0 <= stock.greedy_success(act, "4x4", episodes=3) <= 1.0
    # On 4x4 the fire is one step up from the start; always right runs into the edge and
    # times out; right three times, then up, is the shortest route to the diamond.
    route = {12: 2, 13: 2, 14: 2, 15: 3}  # cell index -> move
    for env_id in ("GridWorld-v1", "GridWorld-v0"):  # is_success, or v0's reward of +1
        monkeypatch.setattr(stock, "ENV_ID", env_id)
        assert stock.greedy_success(lambda obs: 3, "4x4", episodes=2) == 0.0
        assert stock.greedy_success(lambda obs: 2, "4x4", episodes=2) == 0.0
        assert stock.greedy_success(route.get, "4x4", episodes=2) == 1.0


def test_the_lock_pins_every_dependency_within_what_pyproject_accepts():
    from packaging.requirements import Requirement

    from textgym_agents.training.rundir import VERSIONED

    lock = _load("lock")
    pins = lock.read_lock()
    for line in importlib.metadata.requires("textgym"):
        requirement = Requirement(line)
        if "extra" in str(requirement.marker):
            continue
        name = lock._canonical(requirement.name)
        assert name in pins, f"{name} is not in requirements-lock.txt"
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    assert {lock._canonical(name) for name in VERSIONED if name != "textgym"} <= set(pins)
    assert pins["torch"] == "2.13.0"  # the build CI and the README install


def test_the_lock_is_what_the_closure_renders(tmp_path):
    lock = _load("lock")
    written = tmp_path / "lock.txt"
    written.write_text(lock.render({"numpy": "2.0.1", "torch": "2.13.0"}))
    assert lock.read_lock(written) == {"numpy": "2.0.1", "torch": "2.13.0"}
    closure = lock.closure()
    assert {"torch", "transformers", "gymnasium", "stable-baselines3"} <= set(closure)
    assert all("+" not in version for version in closure.values())  # no local build tags
