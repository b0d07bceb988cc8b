"""Hub names without the Hub: a cached name loads, an unknown one fails fast and clearly.

No test opens a connection beyond a closed port on loopback.
"""

from __future__ import annotations

import shutil
import socket
import time

import huggingface_hub.constants
import pytest

from textgym.envs.textgen import TextGenEnv
from textgym.lm import _model_source

CLOSED = "http://127.0.0.1:9"  # the discard port, closed: connections are refused at once
UNKNOWN = "nobody/no-such-model"


@pytest.fixture(autouse=True)
def no_hub(monkeypatch, tmp_path):
    """An empty HF cache, the Hub endpoint on a closed loopback port, no proxy, online mode."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", CLOSED)
    monkeypatch.setenv("no_proxy", "*")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def build_env_failing(argument: str) -> str:
    start = time.perf_counter()
    with pytest.raises(ValueError) as caught:
        TextGenEnv(**{argument: UNKNOWN})
    assert time.perf_counter() - start < 5.0
    message = str(caught.value)
    assert f"{argument}={UNKNOWN!r} is neither a local directory nor in the Hugging Face" in message
    assert "nothing is downloaded" in message
    return message


@pytest.mark.parametrize("flag", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
@pytest.mark.parametrize("argument", ["model", "reference_model"])
def test_unknown_hub_name_fails_fast_in_offline_mode(monkeypatch, flag, argument):
    monkeypatch.setenv(flag, "1")
    assert "offline mode is on" in build_env_failing(argument)


@pytest.mark.parametrize("argument", ["model", "reference_model"])
def test_unknown_hub_name_fails_fast_when_the_hub_is_unreachable(argument):
    assert f"the Hub at {CLOSED} cannot be reached" in build_env_failing(argument)


def test_the_hub_is_probed_through_the_proxy(monkeypatch):
    dialled = []

    def refuse(address, timeout=None):
        dialled.append(address)
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy")
    with pytest.raises(ValueError, match="the Hub at https://hub.invalid cannot be reached"):
        _model_source(UNKNOWN, "model")
    assert dialled == [("127.0.0.1", 9)]


def test_a_reachable_hub_gets_the_name_for_a_normal_load(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: socket.socket())
    assert _model_source(UNKNOWN, "model") == UNKNOWN


def test_a_cached_hub_name_loads_without_the_hub(tiny_gpt2, tmp_path, monkeypatch):
    # The cache layout of huggingface_hub: refs/main names the snapshot that holds the files.
    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(tiny_gpt2, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for offline in ("0", "1"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        env = TextGenEnv(model="org/tiny", prompts=["the movie was"], max_new_tokens=2)
        env.reset(seed=0)
        env.step(3)


def test_a_local_path_loads_in_offline_mode(tiny_gpt2, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = TextGenEnv(model=str(tiny_gpt2), prompts=["the movie was"], max_new_tokens=2)
    env.reset(seed=0)
    env.step(3)
