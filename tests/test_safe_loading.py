"""Loading run directories, agents, policies and models runs no code from the files: no
unpickling unless the user opts in, no remote code unless the user opts in."""

from __future__ import annotations

import ast
import base64
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from textgym.rewards import HFRewardModel, load_pairs, train_reward_model
from textgym_agents.cli import main
from textgym_agents.gpt_policy import GPTActorCriticPolicy
from textgym_agents.rundir import load_agent
from textgym_agents.sequence_ppo import SequencePPO
from textgym_agents.train import train

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this creates ``marker``: the proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def planted(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker), protocol=2)  # torch's own protocol


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "grid"
    train("GridWorld-v0", "ppo", steps=256, out=out, progress=False, eval_episodes=2, n_steps=32)
    return out


@pytest.fixture(scope="module")
def gpt_run(tiny_gpt2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "gpt"
    env_kwargs = {"model": str(tiny_gpt2), "prompts": ["the movie was"], "max_new_tokens": 3}
    train(
        "TextGen-v0",
        "gpt",
        steps=32,
        out=out,
        progress=False,
        eval_episodes=2,
        env_kwargs=env_kwargs,
        n_envs=4,
        episodes_per_update=4,
    )
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


def replace_entry(archive_path: Path, name: str, data: bytes) -> None:
    """Rewrite the zip at ``archive_path`` with entry ``name`` replaced by ``data``."""
    with zipfile.ZipFile(archive_path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    entries[name] = data
    with zipfile.ZipFile(archive_path, "w") as archive:
        for n, content in entries.items():
            archive.writestr(n, content)


def test_sb3_run_loads_without_reading_the_pickled_data_entries(grid_run, tmp_path):
    run, marker = copy_run(grid_run, tmp_path), tmp_path / "pwned"
    # SB3 keeps objects it cannot write as JSON as base64 cloudpickle in "data".
    with zipfile.ZipFile(run / "model.zip") as archive:
        data = json.loads(archive.read("data"))
    serialized = [
        key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value
    ]
    assert serialized  # the attack surface exists
    assert "ep_info_buffer" in serialized
    data["ep_info_buffer"][":serialized:"] = base64.b64encode(planted(marker)).decode()
    replace_entry(run / "model.zip", "data", json.dumps(data).encode())
    model, _ = load_agent(run)
    assert not marker.exists()
    assert model.num_timesteps == data["num_timesteps"]
    # SB3's own loader would have run it: the test can fail.
    with pytest.warns(UserWarning, match="unpickling"):
        load_agent(run, allow_pickle=True)
    assert marker.exists()


def test_sb3_weights_with_a_pickle_are_refused(grid_run, tmp_path):
    run, marker = copy_run(grid_run, tmp_path), tmp_path / "pwned"
    replace_entry(run / "model.zip", "policy.pth", planted(marker))
    with pytest.raises(Exception, match="(?i)weights only|unpickl|weights_only"):
        load_agent(run)
    assert not marker.exists()


def test_gpt_policy_file_loads_from_json_and_weights(gpt_run, tmp_path):
    run, marker = copy_run(gpt_run, tmp_path), tmp_path / "pwned"
    policy, config = load_agent(run)
    assert isinstance(policy, GPTActorCriticPolicy)
    with zipfile.ZipFile(run / "model.zip") as archive:
        assert {"policy.json", "policy.pth"} <= set(archive.namelist())
    # A pickle planted in the weights: refused by torch's weights-only unpickler.
    replace_entry(run / "model.zip", "policy.pth", planted(marker))
    with pytest.raises(pickle.UnpicklingError):
        GPTActorCriticPolicy.load(run / "model.zip")
    assert not marker.exists()


def test_pickled_gpt_policy_needs_the_opt_in(gpt_run, tmp_path):
    marker = tmp_path / "pwned"
    # What SB3's BasePolicy.save writes (torch.save of a dict): a pickle.
    path = tmp_path / "old.zip"
    torch.save({"state_dict": {}, "data": Payload(marker)}, path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        GPTActorCriticPolicy.load(path)
    with pytest.raises(ValueError, match="not a textgym policy file"):
        load_agent(_with_model(gpt_run, tmp_path, path))
    assert not marker.exists()
    with pytest.warns(UserWarning, match="unpickling"), pytest.raises(TypeError):
        GPTActorCriticPolicy.load(path, allow_pickle=True)  # the payload is no policy
    assert marker.exists()  # the opt-in does unpickle: the refusal above is what protects


def _with_model(run: Path, tmp_path: Path, model: Path) -> Path:
    copy = copy_run(run, tmp_path / "copy")
    shutil.copy(model, copy / "model.zip")
    return copy


def test_trainer_state_with_a_pickle_is_refused(gpt_run, tiny_gpt2, tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "state.zip"
    shutil.copy(sorted((gpt_run / "checkpoints").glob("step_*.zip"))[-1], checkpoint)
    replace_entry(checkpoint, "optimizer.pth", planted(marker))
    env_kwargs = {"model": str(tiny_gpt2), "prompts": ["the movie was"], "max_new_tokens": 3}
    trainer = SequencePPO(env_kwargs, num_envs=4, episodes_per_update=4)
    with pytest.raises(pickle.UnpicklingError):
        trainer.load_state(checkpoint)
    assert not marker.exists()


def test_replay_buffer_with_objects_is_refused(tmp_path):
    from textgym_agents.train import _restore_buffer
    from textgym_agents.zoo import make_agent

    marker = tmp_path / "pwned"
    model = make_agent("dqn", "GridWorld-v0", buffer_size=16)
    path = tmp_path / "buffer.npz"
    np.savez(path, pos=np.array(0), full=np.array(False), observations=np.array([Payload(marker)]))
    with pytest.raises(ValueError, match="allow_pickle"):
        _restore_buffer(model.replay_buffer, path)
    assert not marker.exists()


def test_weights_outside_safetensors_are_not_loaded(tiny_gpt2, tiny_reward_model, tmp_path):
    from textgym.lm import load_causal_lm

    marker = tmp_path / "pwned"
    for source, load in ((tiny_gpt2, load_causal_lm), (tiny_reward_model, HFRewardModel)):
        model_dir = Path(shutil.copytree(source, tmp_path / source.name))
        (model_dir / "model.safetensors").unlink()
        (model_dir / "pytorch_model.bin").write_bytes(planted(marker))
        with pytest.raises(ValueError):
            load(str(model_dir))
        assert not marker.exists()


@pytest.fixture
def remote_code_model(tiny_gpt2, tmp_path) -> tuple[Path, Path]:
    """A model directory whose config asks for code shipped with it; the code creates a file."""
    marker = tmp_path / "pwned"
    model_dir = Path(shutil.copytree(tiny_gpt2, tmp_path / "remote"))
    (model_dir / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import GPT2Config as EvilConfig, GPT2LMHeadModel as EvilModel\n"
    )
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForCausalLM": "evil.EvilModel",
        "AutoModelForSequenceClassification": "evil.EvilModel",
    }
    config["model_type"] = "evil"
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir, marker


def test_run_config_cannot_turn_on_remote_code(grid_run, remote_code_model, tmp_path):
    model_dir, marker = remote_code_model
    run = copy_run(grid_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["env_id"] = "TextGen-v0"
    config["env_kwargs"] = {"model": str(model_dir), "trust_remote_code": True}
    (run / "config.json").write_text(json.dumps(config))
    ignored = pytest.warns(UserWarning, match="trust_remote_code=True: ignored")
    with ignored, pytest.raises(ValueError, match="model="):
        load_agent(run)
    assert not marker.exists()


def test_train_rm_never_runs_a_backbones_code(remote_code_model, tmp_path, monkeypatch):
    model_dir, marker = remote_code_model
    with open(os.devnull) as stdin, pytest.raises(ValueError, match="backbone="):
        monkeypatch.setattr("sys.stdin", stdin)  # an interactive question would fail
        train_reward_model(load_pairs()[:8], tmp_path / "rm", backbone=model_dir, progress=False)
    assert not marker.exists()


def test_cli_eval_offers_the_opt_ins(grid_run, capsys):
    main(["eval", str(grid_run), "--episodes", "1"])
    assert "ppo on GridWorld-v0" in capsys.readouterr().out
    main(["eval", str(grid_run), "--episodes", "1", "--allow-pickle"])
    assert "ppo on GridWorld-v0" in capsys.readouterr().out


def test_no_loader_unpickles_by_default():
    """Every ``torch.load`` in the project is weights-only, and nothing else unpickles."""
    offenders = []
    for folder in ("textgym", "agents", "benchmarks", "scripts", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                where = f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                    offenders.append(where)
                if name in ("pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads"):
                    offenders.append(where)
                if name.endswith("np.load") and keywords.get("allow_pickle") not in (None, "False"):
                    offenders.append(where)
                # SB3's Algorithm.load / BasePolicy.load unpickle: only behind allow_pickle.
                if name.endswith(".load") and name.startswith(_SB3_LOADERS):
                    offenders.append(where)
    assert sorted(offenders) == sorted(
        [
            _opted_in("agents/rundir.py", "ALGORITHMS[config['agent']].load"),
            _opted_in("agents/gpt_policy.py", "super().load"),
        ]
    )


_SB3_LOADERS = ("ALGORITHMS", "PPO", "DQN", "A2C", "MaskablePPO", "super()", "BasePolicy")


def _opted_in(file: str, call: str) -> str:
    """``file``'s one ``call``, which must come right after the opt-in's warning."""
    lines = (ROOT / file).read_text().splitlines()
    source = call.replace("'", '"')
    (number,) = [i + 1 for i, line in enumerate(lines) if source + "(" in line]
    assert "warn_pickle(" in lines[number - 2]
    return f"{file}:{number} {call}"
