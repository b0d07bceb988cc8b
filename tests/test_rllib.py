"""Ray RLlib's stock PPO on textgym's envs, by their registered names, as a new user runs it.

RLlib pins its own gymnasium (1.2.2), so these run in an environment of their own:
``pip install -e ".[rllib]"`` (``.ci/run`` makes one, and requires them there); where ray is
not installed they are skipped.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

# .ci/run's RLlib environment sets TEXTGYM_RLLIB_TESTS=1: there a missing ray fails, not skips.
ray = __import__("ray") if os.environ.get("TEXTGYM_RLLIB_TESTS") else pytest.importorskip("ray")

from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.connectors.env_to_module import FlattenObservations  # noqa: E402

import textgym  # noqa: E402, F401  (registers the envs)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# RLlib's default module has no encoder for a ``Discrete`` observation (GridWorld's cell
# index): one-hot it, as SB3 does itself. A lambda, which Ray pickles by value: env runners
# cannot import this test module by name.
one_hot = lambda env=None, spaces=None, device=None: FlattenObservations()  # noqa: E731


def test_stock_ppo_learns_the_4x4_gridworld_on_two_env_runners(local_ray):
    config = (
        PPOConfig()
        .environment("textgym:GridWorld-v0", env_config={"map": "4x4"})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=4, env_to_module_connector=one_hot)
        .training(train_batch_size_per_learner=2000)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        returns = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(10)]
    finally:
        algo.stop()
    assert returns[0] < 0.5 and max(returns) >= 0.9, returns


def test_stock_ppo_runs_textgen_on_the_native_vector_env(local_ray, tiny_gpt2):
    """One `TextGenVectorEnv` per env runner (gymnasium's vector_entry_point mode): one
    reference model and one batched KV cache for all its rows."""
    env_config = {"model": str(tiny_gpt2), "max_new_tokens": 4, "action_mode": "topk"}
    config = (
        PPOConfig()
        .environment("textgym:TextGen-v0", env_config=env_config)
        .env_runners(
            num_env_runners=1,
            num_envs_per_env_runner=8,
            gym_env_vectorize_mode="vector_entry_point",
            env_to_module_connector=one_hot,
        )
        .training(train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        kinds = algo.env_runner_group.foreach_env_runner(
            lambda runner: type(runner.env.unwrapped).__name__, local_env_runner=False
        )
        result = algo.train()
    finally:
        algo.stop()
    assert kinds == ["TextGenVectorEnv"]
    runners = result["env_runners"]
    assert runners["num_env_steps_sampled_lifetime"] >= 128
    assert runners["num_episodes"] > 0 and runners["episode_len_mean"] <= 4


# ---------------------------------------------------------------------------- textgym's backend
from ray.rllib.core.columns import Columns  # noqa: E402

from textgym.kl import kl_estimate  # noqa: E402
from textgym_agents.backends import rllib as tg_rllib  # noqa: E402
from textgym_agents.training.evaluation import evaluate_run  # noqa: E402
from textgym_agents.training.train import train  # noqa: E402


def _sample(algo, steps: int):
    """Episodes sampled by the first remote env runner (explore, as in training)."""
    return algo.env_runner_group.foreach_env_runner(
        lambda runner: runner.sample(num_timesteps=steps, random_actions=False),
        local_env_runner=False,
    )[0]


def _perturb(agent, scale: float = 0.05) -> None:
    """Move the learner's module away from the reference and send it to the runners."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in agent.module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    agent.algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=agent.algo.learner_group, inference_only=True
    )


@pytest.mark.parametrize("action_mode", ["vocab", "topk"])
def test_gpt_module_starts_as_the_reference(local_ray, tiny_gpt2, action_mode):
    env_kwargs = {"model": str(tiny_gpt2), "max_new_tokens": 6, "action_mode": action_mode}
    agent = tg_rllib.RLlibAgent(
        tg_rllib.rllib_config(
            "TextGen-v0", "gpt", env_kwargs=env_kwargs, num_env_runners=1, n_envs=4
        )
    )
    try:
        episodes = [e for e in _sample(agent.algo, 48) if e.is_done]
    finally:
        agent.close()
    kls = [info["kl"] for e in episodes for info in e.get_infos()[1:]]
    assert episodes and len(kls) >= 24
    assert max(abs(k) for k in kls) < 1e-4, kls


@pytest.mark.parametrize(
    ("agent_name", "env_kwargs"),
    [
        ("gpt", {"action_mode": "vocab", "kl_estimator": "k3"}),
        ("gpt", {"action_mode": "topk", "kl_estimator": "k1"}),
        ("ppo", {"kl_estimator": "k2"}),  # ReferencePriorPolicy on the topk candidates
    ],
)
def test_rewards_rllib_trains_on_are_the_exact_kl_rewards(
    local_ray, tiny_gpt2, agent_name, env_kwargs
):
    """For a fixed policy away from the reference: every step reward RLlib records equals
    -beta * k(log pi, log pi_ref) + RM + EOS penalty, with log pi RLlib's own log-prob of the
    action under the distribution that sampled it (ACTION_LOGP), within 1e-5."""
    env_kwargs = {"model": str(tiny_gpt2), "max_new_tokens": 6, "kl_coef": 0.3, **env_kwargs}
    config = tg_rllib.rllib_config(
        "TextGen-v0", agent_name, env_kwargs=env_kwargs, num_env_runners=1, n_envs=4
    )
    agent = tg_rllib.RLlibAgent(config)
    try:
        _perturb(agent)
        episodes = _sample(agent.algo, 64)
    finally:
        agent.close()
    checked, kl_total = 0, 0.0
    for episode in episodes:
        rewards = np.asarray(episode.get_rewards())
        logp = np.asarray(episode.get_extra_model_outputs(Columns.ACTION_LOGP))
        infos = episode.get_infos()[1:]  # infos[0] is the reset's
        ref = np.array([info["ref_logprob"] for info in infos])
        beta = np.array([info["kl_coef"] for info in infos])
        extra = np.array([info["rm_score"] - info["eos_penalty"] for info in infos])
        expected = -beta * kl_estimate(logp, ref, env_kwargs["kl_estimator"]) + extra
        np.testing.assert_allclose(rewards, expected, atol=1e-5)
        np.testing.assert_allclose([info["policy_logprob"] for info in infos], logp, atol=1e-5)
        checked += len(rewards)
        kl_total += float(np.abs(logp - ref).sum())
    assert checked >= 48
    assert kl_total > 0.1  # the policy is not the reference: the test can fail


class _Runner:
    def __init__(self, env, module=None):
        self.env = env
        self.module = module


class _Group:
    def __init__(self, runners):
        self.runners = runners

    def foreach_env_runner(self, func, **kwargs):
        return [func(runner) for runner in self.runners]


class _Algorithm:
    def __init__(self, runners):
        self.env_runner_group = _Group(runners)


class _UniformModule:
    """A runner module whose policy is uniform over the actions, not the reference."""

    def __init__(self, actions: int):
        self.actions = actions

    def score(self, obs):
        return np.full((len(obs["input_ids"]), self.actions), -np.log(self.actions))


def _finished_episode(kl: float):
    """A finished one-step episode whose last info carries its summed KL, as TextGen's does."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    return SingleAgentEpisode(
        observations=[0, 0],
        actions=[0],
        rewards=[0.0],
        infos=[{}, {"episode_kl": kl}],
        terminated=True,
        len_lookback_buffer=0,
    )


def test_adaptive_kl_coef_is_one_controller_over_every_runners_episodes(tiny_gpt2):
    """The driver applies one Ziegler update over the union of the episodes the runners
    finished (KL: their summed KL over their count, n: their count) and sends it to every
    runner; the runners' envs pay it and never step it themselves."""
    import gymnasium as gym

    from textgym.kl import AdaptiveKLController

    kwargs = {"model": str(tiny_gpt2), "kl_coef": 0.1, "kl_target": 2.0, "kl_horizon": 100}
    callbacks = tg_rllib.TextGymCallbacks()
    env = gym.make("TextGen-v0", max_new_tokens=3, kl_estimator="k3", **kwargs)
    runners = [_Runner(env, _UniformModule(int(env.action_space.n)))]
    runners.append(_Runner(gym.make("TextGen-v0", **kwargs)))
    for runner in runners:
        callbacks.on_environment_created(env_runner=runner, env=runner.env.unwrapped)
    algorithm = _Algorithm(runners)
    callbacks.on_algorithm_init(algorithm=algorithm)
    assert tg_rllib.synchronise_kl_coef(algorithm) == 0.1  # no episodes: no update

    # A whole episode on a runner, away from the reference: its env pays 0.1 throughout.
    env.reset(seed=0)
    terminated, paid = False, []
    while not terminated:
        _, _, terminated, _, info = env.step(0)
        paid.append(info["kl_coef"])
    assert info["episode_kl"] > 0 and paid == [0.1] * len(paid)
    assert env.unwrapped.kl_coef == 0.1

    kls = [[5.0] * 6 + [4.0, 3.0], [0.5, 0.25, 1.0]]  # the episodes each runner finished
    for runner, episodes in zip(runners, kls):
        callbacks.on_sample_end(
            env_runner=runner, samples=[_finished_episode(kl) for kl in episodes]
        )
    callbacks.on_train_result(algorithm=algorithm, result={})
    union = [kl for episodes in kls for kl in episodes]
    one = AdaptiveKLController(0.1, 2.0, 100)
    one.update(sum(union) / len(union), len(union))
    sequential = AdaptiveKLController(0.1, 2.0, 100)  # the runners' batches one after another
    for episodes in kls:
        sequential.update(sum(episodes) / len(episodes), len(episodes))
    assert algorithm.textgym_kl_controller.value == pytest.approx(one.value, rel=1e-12)
    assert one.value == pytest.approx(0.1022) and sequential.value != pytest.approx(one.value)
    assert [runner.env.unwrapped.kl_coef for runner in runners] == [one.value] * 2

    # The reports were taken: the next iteration without episodes leaves beta alone, and a
    # recreated runner (its env at the starting 0.1) is sent the current one.
    assert tg_rllib.synchronise_kl_coef(algorithm) == pytest.approx(one.value, rel=1e-12)
    runners.append(_Runner(gym.make("TextGen-v0", **kwargs)))
    callbacks.on_environment_created(env_runner=runners[2], env=runners[2].env.unwrapped)
    assert runners[2].env.unwrapped.kl_coef == 0.1
    callbacks.on_env_runners_recreated(
        algorithm=algorithm,
        env_runner_group=algorithm.env_runner_group,
        env_runner_indices=[3],
        is_evaluation=False,
    )
    assert runners[2].env.unwrapped.kl_coef == algorithm.textgym_kl_controller.value


def test_adaptive_kl_coef_on_two_runners_is_one_controller_per_iteration(local_ray, tiny_gpt2):
    """Through RLlib: every episode finished in an iteration, on either runner, paid the
    coefficient the driver sent before it, and the next one is one update of
    `AdaptiveKLController` over all of them."""
    from textgym.envs.textgen_core import core_of
    from textgym.kl import AdaptiveKLController

    env_kwargs = {
        "model": str(tiny_gpt2),
        "max_new_tokens": 4,
        "kl_target": 0.01,
        "kl_horizon": 100,
    }
    config = tg_rllib.rllib_config(
        "TextGen-v0",
        "gpt",
        env_kwargs=env_kwargs,
        num_env_runners=2,
        n_envs=8,
        train_batch_size_per_learner=64,
        minibatch_size=32,
        num_epochs=1,
        lr=1e-3,
    )
    agent = tg_rllib.RLlibAgent(config)
    iterations = []
    try:
        start = agent.kl_coef
        agent.learn(192, callback=lambda a, stats: iterations.append((stats.episodes, a.kl_coef)))
        paid = agent.algo.env_runner_group.foreach_env_runner(
            lambda runner: core_of(runner.env).kl_controller.value, local_env_runner=False
        )
    finally:
        agent.close()
    assert len(iterations) >= 3
    before = start
    for episodes, after in iterations:
        assert episodes and {row["kl_coef"] for row in episodes} == {before}
        one = AdaptiveKLController(before, 0.01, 100)
        one.update(sum(row["kl"] for row in episodes) / len(episodes), len(episodes))
        assert after == pytest.approx(one.value, rel=1e-12) and after != before
        before = after
    assert paid == [before, before]


@pytest.mark.parametrize(
    ("env_id", "agent_name", "env_kwargs", "steps"),
    [
        ("GridWorld-v1", "ppo", None, 512),
        ("GridWorld-v0", "ppo", {"map": "4x4"}, 512),
        ("GridWorld-v0", "gpt", {"map": "4x4"}, 256),
        ("TextGen-v0", "gpt", None, 256),
        ("TextGen-v0", "ppo", None, 256),
    ],
)
def test_train_backend_rllib_writes_the_run_directory(
    local_ray, tiny_gpt2, tmp_path, env_id, agent_name, env_kwargs, steps
):
    """A couple of iterations through `train`: the same run directory as the SB3 backend,
    and `textgym eval` repeats the evaluation after training exactly."""
    if env_id == "TextGen-v0":
        env_kwargs = {"model": str(tiny_gpt2), "max_new_tokens": 4}
    small = {"train_batch_size_per_learner": 128, "minibatch_size": 64, "num_epochs": 1}
    summary = train(
        env_id,
        agent_name,
        steps=steps,
        env_kwargs=env_kwargs,
        out=tmp_path / "run",
        progress=False,
        eval_episodes=8,
        n_envs=8,
        backend="rllib",
        num_env_runners=1,
        checkpoint_every=steps // 2,
        **small,
    )
    run = tmp_path / "run"
    for name in ("config.json", "summary.json", "model.zip", "episodes.csv", "logs/progress.csv"):
        assert (run / name).exists(), name
    assert list((run / "logs").glob("events.out.tfevents.*"))
    assert sorted(p.suffix for p in (run / "checkpoints").iterdir()).count(".json") >= 2
    assert summary["training"]["steps"] >= steps and summary["training"]["episodes"] > 0
    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == "rllib" and config["num_env_runners"] == 1
    assert evaluate_run(run)["after"] == summary["after"]
    if env_id == "TextGen-v0":
        assert abs(summary["before"]["mean_kl_per_sequence"]) < 1e-3  # starts as the reference


def test_the_zoos_ppo_on_gridworld_v1_is_rllibs_default_ppo():
    """What scripts/stock_defaults.py --library rllib measures is what the zoo trains."""
    from textgym_agents.backends.rllib import rllib_config

    zoo, stock = rllib_config("GridWorld-v1", "ppo"), PPOConfig()
    names = ("lr", "gamma", "lambda_", "num_epochs", "minibatch_size", "entropy_coeff")
    names += ("train_batch_size_per_learner", "use_kl_loss", "kl_coeff", "clip_param")
    names += ("vf_loss_coeff", "vf_clip_param", "grad_clip", "use_gae")
    for name in names:
        assert getattr(zoo, name) == getattr(stock, name), name
    assert (zoo.num_env_runners, zoo.num_envs_per_env_runner) == (2, 1)
    assert zoo.env_config == {} and zoo.env == "textgym:GridWorld-v1"


def test_a_killed_rllib_run_resumes_from_its_checkpoint(local_ray, tmp_path, monkeypatch):
    from textgym_agents.training import recorder as train_module

    arguments = {
        "steps": 4096,
        "env_kwargs": {"map": "4x4"},
        "out": tmp_path / "run",
        "progress": False,
        "eval_episodes": 4,
        "backend": "rllib",
        "num_env_runners": 1,
        "checkpoint_every": 2048,
    }
    advance = train_module._Recorder.advance

    def crash_after_checkpoint(self, step):
        advance(self, step)
        if step > 2048 + 1024:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(train_module._Recorder, "advance", crash_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train("GridWorld-v0", "ppo", **arguments)
    monkeypatch.setattr(train_module._Recorder, "advance", advance)
    run = tmp_path / "run"
    assert not (run / "summary.json").exists()
    checkpoints = sorted(
        int(p.stem.removeprefix("step_")) for p in (run / "checkpoints").glob("*.json")
    )
    assert checkpoints and checkpoints[-1] >= 2048
    summary = train("GridWorld-v0", "ppo", resume=True, **arguments)
    assert summary["training"]["steps"] >= 4096
    steps = [
        float(row.split(",")[0]) for row in (run / "episodes.csv").read_text().splitlines()[1:]
    ]
    assert steps == sorted(steps) and steps[0] <= checkpoints[-1] < steps[-1]


def test_rllib_backend_refuses_an_agent_it_does_not_have(tmp_path):
    with pytest.raises(ValueError, match=r"agent='a2c' has no RLlib backend: expected one of"):
        train("GridWorld-v0", "a2c", backend="rllib", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_episode_rows_sum_the_chunks_rllib_samples_them_in(local_ray):
    """RLlib samples 100-step GridWorld episodes in chunks of 64 steps per env: each row of
    the episode log is the whole episode (an untrained walk that times out has length 100)."""
    config = tg_rllib.rllib_config(
        "GridWorld-v0", "ppo", num_env_runners=1, n_envs=4, train_batch_size_per_learner=256
    )
    agent = tg_rllib.RLlibAgent(config)
    rows = []
    try:
        agent.learn(1024, callback=lambda _, stats: rows.extend(stats.episodes))
    finally:
        agent.close()
    assert rows and all(1 <= row["length"] <= 100 for row in rows)
    timed_out = [row for row in rows if row["return"] == 0.0]
    assert timed_out and all(row["length"] == 100 for row in timed_out), timed_out
    assert all(row["return"] in (-1.0, 0.0, 1.0) for row in rows)


def test_compare_puts_both_backends_in_one_table(local_ray, tmp_path):
    from textgym_agents.training.compare import compare

    table = compare(
        ["GridWorld-v0"],
        ["ppo", "rllib:ppo"],
        [0],
        out=tmp_path / "cmp",
        steps=512,
        env_kwargs={"map": "4x4"},
        eval_episodes=4,
        progress=False,
    )
    rows = [line for line in table.splitlines() if line.startswith("| GridWorld-v0")]
    assert [row.split("|")[2].strip() for row in rows] == ["ppo", "rllib:ppo"]
    config = json.loads((tmp_path / "cmp/GridWorld-v0/rllib-ppo/seed_0/config.json").read_text())
    assert config["backend"] == "rllib" and config["agent"] == "ppo"
    assert "backend" not in json.loads(
        (tmp_path / "cmp/GridWorld-v0/ppo/seed_0/config.json").read_text()
    )


def test_the_driver_reads_the_gpt_architecture_on_the_cpu_for_gpu_runners(tiny_gpt2):
    """With runners on GPUs (device="cuda" in the env arguments) the driver, which may have
    none, still builds the module spec: its probe env loads the reference on the CPU."""
    spec = tg_rllib.module_spec("TextGen-v0", "gpt", {"model": str(tiny_gpt2), "device": "cuda"})
    assert spec.module_class is tg_rllib.SB3PolicyModule
    assert spec.model_config["policy_kwargs"]["init_from"] == str(tiny_gpt2)


@pytest.mark.parametrize(
    ("folder", "init"),
    [("textgym", False), ("textgym", True), ("textgym_agents", True)],
    ids=["a-clone-of-the-repository", "another-textgym", "another-textgym_agents"],
)
def test_rllib_refuses_a_working_directory_whose_folder_the_runners_would_import(
    tmp_path, monkeypatch, folder, init
):
    """Ray puts the working directory first on its env runners' import path: a folder there
    named like textgym's packages (a clone of the repository: ``textgym/`` without
    ``__init__.py``, which shadows the editable install) would replace the installed package
    in every runner, which then fails to find the envs. Refused before any runner starts,
    naming the folder; from the repository root (its textgym is the installed one) it runs."""
    from pathlib import Path

    (tmp_path / folder / "textgym").mkdir(parents=True)
    if init:
        (tmp_path / folder / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ValueError,
        match=f"the working directory '{tmp_path}' holds '{tmp_path / folder}', which Ray's "
        f"env runners, .* may import as '{folder}' instead of the installed package: .* run "
        "from another directory",
    ):
        tg_rllib.rllib_config("GridWorld-v0", "ppo")
    with pytest.raises(ValueError, match="run from another directory"):  # before Ray starts
        train("GridWorld-v0", "ppo", backend="rllib", out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    monkeypatch.chdir(Path(textgym.__file__).parents[1])
    assert tg_rllib.rllib_config("GridWorld-v0", "ppo").env == "textgym:GridWorld-v0"
