"""Loading run directories, agents, policies and models runs no code from the files: no
unpickling unless the user opts in, no remote code unless the user opts in."""

from __future__ import annotations

import ast
import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from textgym.rewards import HFRewardModel, load_pairs, train_reward_model
from textgym_agents.backends.sb3.vec_env import make_sb3_vec_env
from textgym_agents.cli import main
from textgym_agents.policies import gpt_policy
from textgym_agents.policies.gpt_policy import GPTActorCriticPolicy, gpt_policy_kwargs
from textgym_agents.saving import POLICY_CLASS_ARGUMENTS, SAVED_CLASSES
from textgym_agents.trainers.sequence_ppo import SequencePPO
from textgym_agents.training.rundir import load_agent
from textgym_agents.training.train import train

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
    train("GridWorld-v1", "ppo", steps=256, out=out, progress=False, eval_episodes=2, n_steps=32)
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
    with pytest.raises(ValueError, match="model.zip: policy.pth holds pickled objects"):
        load_agent(run)
    assert not marker.exists()


def test_sb3_weights_load_only_into_what_the_agent_saves(grid_run, tmp_path):
    """An entry's name picks the attribute SB3 loads it into: only the agent's own are read."""
    run = copy_run(grid_run, tmp_path)
    with zipfile.ZipFile(run / "model.zip") as archive:
        weights = archive.read("policy.pth")
    replace_entry(run / "model.zip", "policy.features_extractor.pth", weights)
    with pytest.raises(ValueError, match=r"holds the weights .*expected \['policy', "):
        load_agent(run)


def test_gpt_policy_file_loads_from_json_and_weights(gpt_run, tmp_path):
    run, marker = copy_run(gpt_run, tmp_path), tmp_path / "pwned"
    policy, config = load_agent(run)
    assert isinstance(policy, GPTActorCriticPolicy)
    with zipfile.ZipFile(run / "model.zip") as archive:
        assert {"policy.json", "policy.pth"} <= set(archive.namelist())
    # A pickle planted in the weights: refused by torch's weights-only unpickler.
    replace_entry(run / "model.zip", "policy.pth", planted(marker))
    with pytest.raises(ValueError, match="model.zip: policy.pth holds pickled objects"):
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
    weights = {key: value.clone() for key, value in trainer.policy.state_dict().items()}
    with pytest.raises(ValueError, match="state.zip: optimizer.pth holds pickled objects"):
        trainer.load_state(checkpoint)
    assert not marker.exists()
    # Refused whole: the weights read before the optimizer state were not applied either.
    for key, value in trainer.policy.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert trainer.num_timesteps == 0


def test_replay_buffer_with_objects_is_refused(tmp_path):
    from textgym_agents.backends.sb3.zoo import make_agent
    from textgym_agents.training.checkpoints import _restore_buffer

    marker = tmp_path / "pwned"
    model = make_agent("dqn", "GridWorld-v1", buffer_size=16)
    path = tmp_path / "buffer.npz"
    np.savez(path, pos=np.array(5), full=np.array(True), observations=np.array([Payload(marker)]))
    with pytest.raises(ValueError, match=f"{path} holds Python objects .*allow_pickle"):
        _restore_buffer(model.replay_buffer, path)
    assert not marker.exists()
    assert model.replay_buffer.pos == 0 and not model.replay_buffer.full  # nothing changed
    np.savez(path, pos=np.array(5), full=np.array(True))
    with pytest.raises(ValueError, match=f"{path}: observations holds nothing: expected an array"):
        _restore_buffer(model.replay_buffer, path)
    assert model.replay_buffer.pos == 0


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
    assert "ppo on GridWorld-v1" in capsys.readouterr().out
    main(["eval", str(grid_run), "--episodes", "1", "--allow-pickle"])
    assert "ppo on GridWorld-v1" in capsys.readouterr().out


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
            _opted_in("agents/training/rundir.py", "ALGORITHMS[config['agent']].load"),
            _opted_in("agents/policies/gpt_policy.py", "super().load"),
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


# ------------------------------------------------------------------ classes named by a file
def edit_policy_json(archive_path: Path, edit) -> None:
    """Rewrite the ``policy.json`` of the zip at ``archive_path`` with ``edit(meta)``."""
    with zipfile.ZipFile(archive_path) as archive:
        meta = json.loads(archive.read("policy.json"))
    edit(meta)
    replace_entry(archive_path, "policy.json", json.dumps(meta).encode())


def planted_kwargs(marker: str) -> dict[str, tuple[dict, str]]:
    """Entries planted among a policy.json's arguments, for every class-valued argument, and
    a word of the one-line refusal each gets."""
    save = {"class": "torch.save"}
    return {
        # the review's payload: SB3 would call torch.save(observation_space, f=marker)
        "extractor torch.save": (
            {"features_extractor_class": save, "features_extractor_kwargs": {"f": marker}},
            "policy argument features_extractor_class names 'torch.save', which is not a class "
            "textgym saves: expected one of ['stable_baselines3.common.torch_layers.Flatten",
        ),
        "activation torch.save": ({"activation_fn": save}, "activation_fn names 'torch.save'"),
        "optimizer torch.save": ({"optimizer_class": save}, "optimizer_class names 'torch.save'"),
        "builtin": ({"activation_fn": {"class": "builtins.exec"}}, "names 'builtins.exec'"),
        "class outside the registry": (
            {
                "features_extractor_class": {"class": "subprocess.Popen"},
                "features_extractor_kwargs": {"args": ["touch", marker]},
            },
            "names 'subprocess.Popen', which is not a class textgym saves",
        ),
        "optimizer as activation": (
            {"activation_fn": {"class": "torch.optim.adam.Adam"}},
            "names 'torch.optim.adam.Adam', which is not a subclass of Module",
        ),
        "activation as extractor": (
            {"features_extractor_class": {"class": "torch.nn.modules.activation.Tanh"}},
            "which is not a subclass of BaseFeaturesExtractor",
        ),
        "extractor as activation": (
            {"activation_fn": {"class": "textgym_agents.extractors.TokenExtractor"}},
            "policy argument activation_fn lacks ['observation_space'], which TokenExtractor needs",
        ),
        "extractor as optimizer": (
            {"optimizer_class": {"class": "textgym_agents.extractors.TokenExtractor"}},
            "which is not a subclass of Optimizer",
        ),
        "extractor kwargs it does not take": (
            {
                "features_extractor_class": {"class": "textgym_agents.extractors.TokenExtractor"},
                "features_extractor_kwargs": {"f": marker},
            },
            "policy argument features_extractor_kwargs gives TokenExtractor ['f'], which it "
            "does not take",
        ),
        "optimizer kwargs the caller gives": (
            {"optimizer_kwargs": {"lr": 1.0, "params": []}},
            "optimizer_kwargs gives Adam ['lr', 'params']",
        ),
        "optimizer kwargs it does not take": (
            {"optimizer_kwargs": {"f": marker}},
            "optimizer_kwargs gives Adam ['f']",
        ),
        "policy kwargs it does not take": (
            {"f": marker},
            "kwargs gives GPTActorCriticPolicy ['f'], which it does not take",
        ),
        "class in a plain argument": ({"net_arch": {"pi": [save]}}, "net_arch holds a class"),
        "name without its marker": (
            {"activation_fn": "torch.save"},
            "activation_fn is 'torch.save': expected {\"class\": NAME}",
        ),
    }


@pytest.mark.parametrize("case", list(planted_kwargs("")))
def test_a_policy_file_calls_nothing_it_names(gpt_run, tmp_path, monkeypatch, case):
    marker = tmp_path / "pwned"
    entries, words = planted_kwargs(str(marker))[case]
    path = tmp_path / "model.zip"
    shutil.copy(gpt_run / "model.zip", path)
    edit_policy_json(path, lambda meta: meta["kwargs"].update(entries))
    built = []
    monkeypatch.setattr(GPTActorCriticPolicy, "_build", lambda *args: built.append(args))
    with pytest.raises(ValueError) as refused:
        GPTActorCriticPolicy.load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: policy.json: ") and "\n" not in message
    assert words in message
    assert not marker.exists() and not built  # nothing called, nothing written


@pytest.mark.parametrize("name", sorted(SAVED_CLASSES))
def test_every_class_textgym_saves_loads_back(tmp_path, name):
    """The registry's classes, each saved under its argument, come back as themselves."""
    cls = SAVED_CLASSES[name]
    # The argument with the nearest base (an extractor is an nn.Module too, like activations).
    fields = [key for key, arg in POLICY_CLASS_ARGUMENTS.items() if issubclass(cls, arg.base)]
    field = min(fields, key=lambda key: cls.__mro__.index(POLICY_CLASS_ARGUMENTS[key].base))
    venv = make_sb3_vec_env("GridWorld-v1", n_envs=1, seed=0, obs_mode="tokens")
    policy = GPTActorCriticPolicy(
        venv.observation_space,
        venv.action_space,
        lambda _: 1e-3,
        **{**gpt_policy_kwargs(venv), field: cls},
    )
    policy.save(tmp_path / "policy.zip")
    loaded = GPTActorCriticPolicy.load(tmp_path / "policy.zip")
    assert getattr(loaded, field) is cls
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_a_saved_policy_needs_no_model_of_the_machine_that_saved_it(
    gpt_run, tiny_gpt2, tmp_path, monkeypatch
):
    """The saved weights hold the trunk: no model path is saved, and one that a file of an
    earlier version holds is not read."""
    with zipfile.ZipFile(gpt_run / "model.zip") as archive:
        assert "init_from" not in json.loads(archive.read("policy.json"))["kwargs"]
    expected = GPTActorCriticPolicy.load(gpt_run / "model.zip").state_dict()
    path = tmp_path / "model.zip"
    shutil.copy(gpt_run / "model.zip", path)
    edit_policy_json(path, lambda meta: meta["kwargs"].update(init_from=str(tiny_gpt2)))

    def no_model(*args, **kwargs):
        raise AssertionError(f"loading read a model: {args}")

    monkeypatch.setattr(gpt_policy.AutoModelForCausalLM, "from_pretrained", no_model)
    loaded = GPTActorCriticPolicy.load(path)
    assert loaded.init_from is None
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


# ------------------------------------------------------------------ the command line
def textgym(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "textgym_agents.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def refused_line(done: subprocess.CompletedProcess, command: str) -> str:
    """The one line of a refusal: exit status 2, no traceback."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    line = done.stderr.splitlines()[-1]
    assert line.startswith(f"textgym {command}: ")
    return line


def files_of(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def cli_train_args(env: str, tiny_gpt2: Path) -> list[str]:
    """``textgym train`` arguments of a small run (a resume repeats them)."""
    common = ["--eval-episodes", "2", "--no-progress", "--threads", "1"]
    if env == "grid":
        return ["GridWorld-v1", "--agent", "ppo", "--steps", "256", *common]
    text = [f"model={tiny_gpt2}", "prompts=['the movie was']", "max_new_tokens=3"]
    return [
        "TextGen-v0",
        "--agent",
        "gpt",
        "--steps",
        "32",
        *common,
        *[arg for pair in text for arg in ("--env-arg", pair)],
    ]


@pytest.fixture(scope="module")
def cli_runs(tiny_gpt2, tmp_path_factory) -> dict[str, Path]:
    """A finished run of each kind, made with ``textgym train`` (so a resume can repeat it)."""
    runs = {}
    for env in ("grid", "gpt"):
        runs[env] = tmp_path_factory.mktemp("cli") / env
        main(["train", *cli_train_args(env, tiny_gpt2), "--out", str(runs[env])])
    return runs


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("command", "env", "entry"),
    [
        ("eval", "grid", "policy.pth"),
        ("eval", "gpt", "policy.pth"),
        ("resume", "grid", "policy.pth"),
        ("resume", "grid", "policy.optimizer.pth"),
        ("resume", "gpt", "policy.pth"),
        ("resume", "gpt", "optimizer.pth"),
    ],
)
def test_weights_with_a_pickle_are_one_line_and_exit_2(
    cli_runs, tiny_gpt2, tmp_path, command, env, entry
):
    run, marker = copy_run(cli_runs[env], tmp_path), tmp_path / "pwned"
    if command == "eval":
        target = run / "model.zip"
        argv = ["eval", str(run), "--episodes", "1"]
    else:
        (run / "summary.json").unlink()  # unfinished: killed after its last checkpoint
        target = sorted((run / "checkpoints").glob("step_*.zip"))[-1]
        argv = ["train", *cli_train_args(env, tiny_gpt2), "--out", str(run), "--resume"]
    replace_entry(target, entry, planted(marker))
    (run / "model.zip.tmp-1234").write_bytes(b"")  # a temporary the killed run left
    before = files_of(run)
    line = refused_line(textgym(*argv), argv[0])
    assert f"{target}: {entry} holds pickled objects, not only tensors" in line
    assert "torch.load(weights_only=False)" in line  # the way out, for a file you trust
    assert not marker.exists()
    assert files_of(run) == before  # a refused resume leaves the run as it was


@pytest.mark.parametrize("command", ["eval", "render"])
def test_the_review_payload_is_refused_by_eval_and_render(cli_runs, tmp_path, command):
    run, marker = copy_run(cli_runs["gpt"], tmp_path), tmp_path / "pwned"
    (entries, words) = planted_kwargs(str(marker))["extractor torch.save"]
    edit_policy_json(run / "model.zip", lambda meta: meta["kwargs"].update(entries))
    line = refused_line(textgym(command, str(run), "--episodes", "1"), command)
    assert line.startswith(f"textgym {command}: {run / 'model.zip'}: policy.json: ")
    assert words in line
    assert not marker.exists()
