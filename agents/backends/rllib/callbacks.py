"""textgym's side of an RLlib run on the env runners and the driver: each runner's module is
its envs' KL scorer (`RunnerScorer`), finished episodes are gathered (`take_episodes`), and one
adaptive KL controller on the driver sets the coefficient every runner pays
(`synchronise_kl_coef`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.callbacks.callbacks import RLlibCallback

import textgym  # noqa: F401  (registers the envs)
from textgym.envs.textgen_core import core_of
from textgym.kl import FixedKLController


class RunnerScorer:
    """TextGen's policy scorer on an env runner: the runner's current module (read at every
    call: RLlib replaces its weights, not the module)."""

    def __init__(self, env_runner: Any) -> None:
        self.env_runner = env_runner

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        module = self.env_runner.module
        if not callable(getattr(module, "score", None)):
            raise TypeError(
                f"{type(module).__name__} cannot score TextGen's actions: expected a module "
                "with score(obs) -> log-probs, such as SB3PolicyModule"
            )
        return module.score(obs)

    def __repr__(self) -> str:
        return f"RunnerScorer({type(self.env_runner.module).__name__})"


class TextGymCallbacks(RLlibCallback):
    """textgym's side of an RLlib run.

    - On each env runner, its module becomes its TextGen envs' KL scorer (`RunnerScorer`).
    - Each finished episode (summed over the chunks RLlib samples it in) is kept on its
      runner as a row of ``episodes.csv`` (`take_episodes` collects them), and its summed KL
      (the ``episode_kl`` of its last step's info) goes into the runner's KL report.
    - Adaptive beta is one controller, on the driver (`synchronise_kl_coef`): each runner's
      envs pay the coefficient the driver sent last and never step it, and after each
      iteration the driver updates it once over the KL reports of every runner.
    """

    def on_environment_created(self, *, env_runner, env, **kwargs) -> None:
        core = core_of(env)
        if core is not None:
            core.attach_policy(RunnerScorer(env_runner))
            # The env's own controller (kl_coef, kl_target, kl_horizon) is the driver's to
            # step; the env pays a fixed coefficient, and a remade env the one sent last.
            env_runner.textgym_kl_controller = core.kl_controller
            value = getattr(env_runner, "textgym_kl_coef", core.kl_controller.value)
            core.kl_controller = FixedKLController(value)
        env_runner.textgym_episodes = []  # finished episodes, for `take_episodes`
        env_runner.textgym_partial = {}  # episode id -> (return, length) of earlier chunks
        env_runner.textgym_kl_report = [0.0, 0]  # finished episodes' summed KL and count

    def on_sample_end(self, *, env_runner=None, samples=(), **kwargs) -> None:
        # RLlib hands episodes over in chunks (one per sample call): an episode's return and
        # length are the sums over its chunks.
        if env_runner is None or not hasattr(env_runner, "textgym_partial"):
            return
        partial = env_runner.textgym_partial
        for chunk in samples:
            before_return, before_length = partial.pop(chunk.id_, (0.0, 0))
            episode_return = before_return + float(chunk.get_return())
            length = before_length + len(chunk)
            if not chunk.is_done:
                partial[chunk.id_] = (episode_return, length)
                continue
            info = chunk.get_infos(-1) or {}
            kl = _float_or_none(info.get("episode_kl"))
            if kl is not None:
                env_runner.textgym_kl_report[0] += kl
                env_runner.textgym_kl_report[1] += 1
            env_runner.textgym_episodes.append(
                {
                    "return": episode_return,
                    "length": length,
                    "rm_score": _float_or_none(info.get("rm_score")),
                    "kl": kl,
                    "kl_coef": _float_or_none(info.get("kl_coef")),
                }
            )

    def on_algorithm_init(self, *, algorithm: Algorithm, **kwargs) -> None:
        synchronise_kl_coef(algorithm)  # before any episode: the driver takes the controller

    def on_train_result(self, *, algorithm: Algorithm, result: dict, **kwargs) -> None:
        synchronise_kl_coef(algorithm)

    def on_env_runners_recreated(self, *, algorithm: Algorithm, **kwargs) -> None:
        # A recreated runner's envs start at the starting coefficient: send the current one.
        controller = getattr(algorithm, "textgym_kl_controller", None)
        if controller is not None:
            set_kl_coef(algorithm, controller.value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _take_kl_report(runner: Any) -> tuple[float, int]:
    kl_sum, count = getattr(runner, "textgym_kl_report", (0.0, 0))
    runner.textgym_kl_report = [0.0, 0]
    return kl_sum, count


def synchronise_kl_coef(algorithm: Algorithm) -> float | None:
    """One step of the driver's KL controller over the episodes every runner finished since
    the last call, sent to every runner; returns the coefficient (None without TextGen envs).

    With a ``kl_target`` this is Ziegler's update over the union of the runners' episodes:
    ``KL`` = their summed KL over their count ``n``, ``beta *= 1 + clip(KL / target - 1, -0.2,
    0.2) * n / horizon``. The first call takes the controller the runners' envs were built
    with as the driver's (`TextGymCallbacks`).
    """
    group = algorithm.env_runner_group
    controller = getattr(algorithm, "textgym_kl_controller", None)
    if controller is None:
        controllers = group.foreach_env_runner(
            lambda runner: getattr(runner, "textgym_kl_controller", None)
        )
        controllers = [c for c in controllers if c is not None]
        if not controllers:
            return None
        controller = algorithm.textgym_kl_controller = controllers[0]
    reports = group.foreach_env_runner(_take_kl_report)
    count = sum(n for _, n in reports)
    if count:
        controller.update(sum(kl for kl, _ in reports) / count, count)
    set_kl_coef(algorithm, controller.value)
    return controller.value


def set_kl_coef(algorithm: Algorithm, value: float) -> None:
    """Set the KL coefficient (adaptive or fixed) to ``value``: the driver's controller and
    the coefficient every runner's envs pay."""

    def assign(runner: Any) -> None:
        core = core_of(runner.env) if getattr(runner, "env", None) is not None else None
        if core is not None:
            core.kl_controller.value = value
            runner.textgym_kl_coef = value

    algorithm.env_runner_group.foreach_env_runner(assign)
    controller = getattr(algorithm, "textgym_kl_controller", None)
    if controller is not None:
        controller.value = value


def take_episodes(algorithm: Algorithm) -> list[dict[str, Any]]:
    """The episodes the runners finished since the last call (`TextGymCallbacks`)."""

    def take(runner: Any) -> list[dict[str, Any]]:
        rows = getattr(runner, "textgym_episodes", [])
        runner.textgym_episodes = []
        return rows

    return [row for rows in algorithm.env_runner_group.foreach_env_runner(take) for row in rows]
