"""Evaluating agents and the reference policy: play episodes, summarise them.

`evaluate` plays a trained agent (any SB3 algorithm, `SequencePPO`, or a policy) on a fresh
env with its policy attached as TextGen's KL scorer; `evaluate_reference` plays the reference
policy, the baseline every TextGen agent is compared with; `play_text` returns TextGen
episodes token by token for `textgym render`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

import textgym  # noqa: F401  (registers the envs)
from textgym._checks import check_int
from textgym.reference import ReferencePolicy
from textgym.threads import torch_threads
from textgym.versions import version_drift
from textgym_agents.backends.sb3.vec_env import make_sb3_vec_env
from textgym_agents.policies.scorer import attach_sb3_policy
from textgym_agents.trainers.sequence_ppo import SequencePPO
from textgym_agents.training.rundir import EVAL_SEED_OFFSET, SAMPLES, load_agent, make_summary

__all__ = [
    "POSITIVE_THRESHOLD",
    "TextEpisode",
    "evaluate",
    "evaluate_reference",
    "play_text",
    "torch_seeded",
]

# VADER's convention: a compound score above 0.05 is positive.
POSITIVE_THRESHOLD = 0.05


def evaluate(
    model: BaseAlgorithm | SequencePPO | BasePolicy,
    env_id: str,
    *,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    deterministic: bool | None = None,
    n_envs: int = 16,
    samples: int = 0,
) -> dict[str, Any]:
    """Play ``episodes`` episodes of ``env_id`` with ``model``'s policy and summarise them.

    Action masks are passed to ``predict`` for `MaskablePPO`. The env is a fresh one, with
    the model's policy attached as its KL scorer on TextGen. ``n_envs`` rows play at once,
    each its share of the episodes (so short episodes are not over-represented).

    :param model: a trained agent (e.g. from `make_agent`), or an SB3 policy.
    :param env_id: the env to play.
    :param episodes: number of episodes.
    :param seed: seed of the evaluation env. The agent samples from torch's global
        generator, which this leaves as it is (in `textgym_agents.training.train.train` it continues
        the training's seeded stream); wrap the call in `torch_seeded` for a standalone reproducible
        evaluation.
    :param env_kwargs: constructor arguments of the env (use the training ones, e.g.
        `agent_env_kwargs`).
    :param deterministic: act greedily rather than sample. Default: greedy on GridWorld; on
        TextGen sample, because the policy *is* the distribution over texts (its KL to the
        reference, which the return includes, is that of the sampling policy).
    :param n_envs: rows playing at once (at most ``episodes``).
    :param samples: TextGen: also return the first ``samples`` episodes' prompt, text, RM
        score and KL.
    :return: ``deterministic`` (whether it acted greedily), ``mean_return``, ``std_return``,
        ``mean_length``; on GridWorld ``success_rate``
        (the share of episodes that reached the diamond); on TextGen ``mean_rm_score``,
        ``positive_share`` (RM score > 0.05: VADER's "positive"), ``reference_perplexity``
        (the reference model's perplexity of the generated tokens: fluency; in ``"topk"``
        mode among the candidates) and, with a scorer, ``mean_kl_per_sequence`` (the sampled
        estimate the reward uses) and ``mean_exact_kl_per_sequence`` (the exact KL summed over
        the action space at every state: the same quantity in expectation, without the
        sampling noise); ``samples`` if asked for.
    """
    is_text = env_id.startswith("TextGen")
    deterministic = not is_text if deterministic is None else deterministic
    venv = make_sb3_vec_env(env_id, n_envs=_rows(episodes, n_envs), seed=seed, **(env_kwargs or {}))
    act = _agent_policy(model, venv, deterministic)
    result = _summarise(_play(venv, act, env_id, episodes), env_id, episodes, samples)
    return {"deterministic": deterministic, **result}


@contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Seed torch's generators for the agent's sampling, so the same seed plays the same
    episodes; the caller's random state is restored afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _agent_policy(
    model: BaseAlgorithm | SequencePPO | BasePolicy, venv, deterministic: bool
) -> Callable[[Any], np.ndarray]:
    """``act(obs) -> actions`` of ``model`` on ``venv``, whose TextGen envs get the model's
    policy as their KL scorer."""
    policy = model if isinstance(model, BasePolicy) else model.policy
    attach_sb3_policy(model if isinstance(model, BaseAlgorithm) else policy, venv)
    if isinstance(model, MaskablePPO):

        def act(obs):
            masks = get_action_masks(venv)
            return model.predict(obs, deterministic=deterministic, action_masks=masks)[0]

    else:

        def act(obs):
            return model.predict(obs, deterministic=deterministic)[0]

    return act


def evaluate_reference(
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    *,
    n_envs: int = 16,
    samples: int = 0,
) -> dict[str, Any]:
    """`evaluate` for TextGen's reference policy: tokens sampled from the env's reference
    distribution (renormalised over the candidates in ``"topk"`` mode), attached as its own
    scorer, so the KL is 0 and the return is the mean RM score. The baseline every TextGen
    agent is measured against."""
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=_rows(episodes, n_envs), seed=seed, **(env_kwargs or {})
    )
    act = _reference_act(venv, 1.0, seed)
    return _summarise(_play(venv, act, "TextGen-v0", episodes), "TextGen-v0", episodes, samples)


def _reference_act(venv, temperature: float, seed: int) -> Callable[[Any], np.ndarray]:
    """``act(obs) -> actions`` of the reference policy of ``venv``'s TextGen core at
    ``temperature``, attached as its own scorer (so the KL is 0 at temperature 1)."""
    policy = ReferencePolicy(venv.unwrapped.core, temperature, seed)
    venv.env_method("attach_policy", policy, indices=[0])
    return policy.act


@dataclass
class TextEpisode:
    """One TextGen episode token by token, as `textgym.render` draws it."""

    prompt: str
    text: str  # the continuation as the env decoded and scored it
    tokens: list[str]  # the generated tokens, each decoded on its own
    step_rewards: list[float]  # the KL part of each token's reward
    rm_score: float
    penalty: float = 0.0  # the missing-EOS penalty paid at the end (0 if none)


def play_text(
    model: BaseAlgorithm | SequencePPO | BasePolicy | None,
    *,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    temperature: float = 1.0,
    n_envs: int = 16,
) -> list[TextEpisode]:
    """Play ``episodes`` TextGen episodes as `evaluate` plays them (sampling, with the acting
    policy attached as the KL scorer) and return them token by token (`textgym render`).

    :param model: a trained agent or policy, or None for the reference policy.
    :param episodes: number of episodes.
    :param seed: seed of the env (and of the reference policy's sampling).
    :param env_kwargs: constructor arguments of the env (use the training ones).
    :param temperature: the reference policy's sampling temperature (only with ``model=None``).
    :param n_envs: rows playing at once (at most ``episodes``).
    """
    if model is not None and temperature != 1.0:
        raise ValueError(
            f"temperature={temperature!r} applies to the reference policy (model=None) only: "
            "an agent samples from its own policy"
        )
    venv = make_sb3_vec_env(
        "TextGen-v0", n_envs=_rows(episodes, n_envs), seed=seed, **(env_kwargs or {})
    )
    tokenizer = venv.get_attr("tokenizer")[0]
    if model is None:
        act = _reference_act(venv, temperature, seed)
    else:
        act = _agent_policy(model, venv, deterministic=False)
    played = []
    with torch_seeded(seed):
        infos = _play(venv, act, "TextGen-v0", episodes)
    for info in infos:
        # The generated tokens are the last real ones of the final observation.
        final, steps = info["terminal_observation"], len(info["kl_rewards"])
        end = int(final["attention_mask"].sum())
        tokens = [tokenizer.decode([token]) for token in final["input_ids"][end - steps : end]]
        played.append(
            TextEpisode(
                info["prompt"],
                info["text"],
                tokens,
                info["kl_rewards"],
                info["rm_score"],
                info["eos_penalty"],
            )
        )
    return played


def _rows(episodes: int, n_envs: int) -> int:
    check_int("episodes", episodes, 1)
    return min(n_envs, episodes)


def _play(venv, act, env_id: str, episodes: int) -> list[dict[str, Any]]:
    """Play ``episodes`` episodes with ``act(obs) -> actions``: the last step's info of each,
    with ``last_reward`` and, on TextGen, ``kl_rewards`` (the KL part of every step's reward).
    """
    n_envs, is_text = venv.num_envs, env_id.startswith("TextGen")
    quota = [episodes // n_envs + (row < episodes % n_envs) for row in range(n_envs)]
    played = [[] for _ in range(n_envs)]
    ref_logprob_sum = np.zeros(n_envs)  # TextGen: log pi_ref of each row's episode so far
    kl_rewards = [[] for _ in range(n_envs)]  # TextGen: -beta * KL of each row's steps so far
    obs = venv.reset()
    while any(len(rows) < q for rows, q in zip(played, quota)):
        obs, rewards, dones, infos = venv.step(act(obs))
        if is_text:
            ref_logprob_sum += [info["ref_logprob"] for info in infos]
            for row, info in enumerate(infos):
                kl_rewards[row].append(info["kl_reward"])
        for row in np.flatnonzero(dones):
            if len(played[row]) < quota[row]:
                played[row].append(
                    {
                        **infos[row],
                        "last_reward": float(rewards[row]),
                        "ref_logprob_sum": ref_logprob_sum[row],
                        "kl_rewards": kl_rewards[row],
                    }
                )
            ref_logprob_sum[row] = 0.0
            kl_rewards[row] = []
    venv.close()
    # Row-major order: the first episodes of every row come first.
    return [row[i] for i in range(max(quota)) for row in played if i < len(row)]


def _summarise(
    done: list[dict[str, Any]], env_id: str, episodes: int, samples: int
) -> dict[str, Any]:
    """The summary `evaluate` returns of the episodes `_play` played."""
    is_text = env_id.startswith("TextGen")
    returns = [info["episode"]["r"] for info in done]
    result: dict[str, Any] = {
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean([info["episode"]["l"] for info in done])),
    }
    if env_id.startswith("GridWorld"):
        # v1 says so (is_success); on v0 only the diamond ends an episode with reward +1.
        result["success_rate"] = float(
            np.mean([info.get("is_success", info["last_reward"] == 1.0) for info in done])
        )
    if is_text:
        scores = np.array([info["rm_score"] for info in done])
        result["mean_rm_score"] = float(scores.mean())
        result["positive_share"] = float(np.mean(scores > POSITIVE_THRESHOLD))
        tokens = sum(info["episode"]["l"] for info in done)
        result["reference_perplexity"] = float(
            np.exp(-sum(info["ref_logprob_sum"] for info in done) / tokens)
        )
        if all("episode_kl" in info for info in done):
            result["mean_kl_per_sequence"] = float(np.mean([info["episode_kl"] for info in done]))
            result["mean_exact_kl_per_sequence"] = float(
                np.mean([info["episode_exact_kl"] for info in done])
            )
        if samples:
            result["samples"] = [
                {key: info.get(key) for key in ("prompt", "text", "rm_score", "episode_kl")}
                for info in done[:samples]
            ]
    return result


def evaluate_run(
    run_dir: str | Path,
    episodes: int | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    threads: int | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`textgym eval`: the summary of a saved agent, evaluated afresh. With the defaults it
    repeats the run's evaluation after training exactly (its ``summary.json``'s ``after``).

    :param episodes: episodes to play (default: as many as the run's evaluations).
    :param seed: seeds the env and the agent's sampling (default: the run's held-out
        evaluation seed).
    :param deterministic: act greedily or sample (default: `evaluate`'s: greedy on GridWorld,
        sampled on TextGen).
    :param threads: torch threads (default: the run's, from ``config.json``).
    :param allow_pickle: see `load_agent` (off: nothing in the run directory is unpickled).
    :param trust_remote_code: see `load_agent` (off: the run's config cannot turn it on).
    :param env_kwargs: env arguments on top of the run's; a run made with a Python object
        among them (a reward function) needs it again here (see `load_agent`).
    """
    model, config = load_agent(
        run_dir,
        env_kwargs=env_kwargs,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    seed = config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    episodes = config.get("eval_episodes", 100) if episodes is None else episodes
    with torch_threads(config.get("threads") if threads is None else threads), torch_seeded(seed):
        after = evaluate(
            model,
            config["env_id"],
            episodes=episodes,
            seed=seed,
            env_kwargs=config["env_kwargs"],
            deterministic=deterministic,
            samples=SAMPLES,
        )
    summary = make_summary(config, after, steps=_trained_steps(Path(run_dir)))
    drift = version_drift(config.get("versions"), Path(run_dir) / "config.json")
    if drift:
        summary["version_drift"] = drift
    return summary


def _trained_steps(run_dir: Path) -> int | None:
    """The steps the run's ``summary.json`` says were trained (None: no summary to read)."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("training", {}).get("steps")


def play_run(
    run_dir: str | Path,
    episodes: int = 3,
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    threads: int | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> list[TextEpisode]:
    """`textgym render`: episodes of a saved TextGen agent token by token, played as in
    evaluation (sampled, with the agent's policy as the KL scorer).

    :param seed: env seed (default: the run's held-out evaluation seed).
    :param env_kwargs: env arguments on top of the run's (e.g. other prompts).
    :param threads: torch threads (default: the run's, from ``config.json``).
    :param allow_pickle: see `load_agent`.
    :param trust_remote_code: see `load_agent`.
    """
    model, config = load_agent(
        run_dir,
        env_kwargs=env_kwargs,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    if not config["env_id"].startswith("TextGen"):
        raise ValueError(
            f"run_dir={str(run_dir)!r} holds a {config['env_id']} run: expected a TextGen-v0 "
            "run (only text episodes can be rendered token by token)"
        )
    seed = config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    with torch_threads(config.get("threads") if threads is None else threads):
        return play_text(
            model,
            episodes=episodes,
            seed=seed,
            env_kwargs=config["env_kwargs"],
        )
