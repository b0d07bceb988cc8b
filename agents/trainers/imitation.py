"""Behaviour cloning before RL: an SB3 actor-critic agent learns an expert's moves first.

RLHF does not start its policy from scratch: it starts from a model fine-tuned on
demonstrations (the SFT model), and RL improves on that. `clone_expert` is that first stage
for the other envs: it plays the agent's own training env with an expert the env provides
(GridWorld's ``shortest_path_actions``), with some random moves mixed in so that the states
off the expert's path are seen too (Laskey et al.'s DART), and fits

- the policy to the expert's moves (the cross-entropy with the uniform distribution over
  the moves the expert allows: every shortest path counts), and
- the value head to the discounted returns of those episodes,

so that the RL stage that follows (``model.learn``) starts from a good policy and a critic
that already knows it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import obs_as_tensor
from tqdm.auto import tqdm, trange

from textgym._checks import check_int, is_number

__all__ = ["clone_expert"]


def clone_expert(
    model: OnPolicyAlgorithm,
    steps: int,
    *,
    expert: str = "shortest_path_actions",
    noise: float = 0.25,
    epochs: int = 8,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit ``model``'s policy and value head to an expert playing ``model``'s own env.

    :param model: an SB3 on-policy agent (PPO, A2C; e.g. ``make_agent("gpt", ...)``) whose
        env offers ``expert``.
    :param steps: env steps of demonstrations to collect (all rows together).
    :param expert: the env method that returns, per row, a boolean array over the actions:
        True for the moves the expert would make (none: the row is not used).
    :param noise: the probability of a uniformly random move instead of the expert's.
    :param epochs: passes over the demonstrations.
    :param batch_size: demonstrations per gradient step.
    :param learning_rate: Adam's learning rate (a fresh optimiser: the agent's own is left
        untouched for the RL stage).
    :param seed: seeds the random moves and the minibatch order.
    :param progress: show progress bars (demonstration steps, then gradient steps).
    :return: ``samples``; ``demonstration_return`` (the mean return of the demonstrated
        episodes, random moves included);
        ``agreement``, the share of demonstrations where the fitted policy's most likely move
        is one the expert allows (measured on the demonstrations after fitting).
    """
    check_int("steps", steps, 1)
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    if not (is_number(noise) and 0 <= noise <= 1):
        raise ValueError(f"noise={noise!r}: expected a probability in [0, 1]")
    if not (is_number(learning_rate) and 0 < learning_rate < np.inf):
        raise ValueError(f"learning_rate={learning_rate!r}: expected a finite number > 0")
    venv = model.get_env()
    if venv is None:
        raise ValueError(
            "model has no env: build it with an env "
            "(e.g. textgym_agents.backends.sb3.zoo.make_agent)"
        )
    if not venv.has_attr(expert):
        raise ValueError(
            f"expert={expert!r} is not a method of the env: expected an env that offers it "
            "(GridWorld-v1 and v0 have 'shortest_path_actions')"
        )
    rng = np.random.default_rng(seed)
    observations, targets, returns, episode_returns = _demonstrations(
        venv, steps, expert, noise, float(model.gamma), rng, progress
    )
    policy = model.policy
    policy.set_training_mode(True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    n = len(targets)
    bar = tqdm(
        total=epochs * -(-n // batch_size), desc="cloning", unit="batch", disable=not progress
    )
    for _ in range(epochs):
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            bar.update()
            obs = _tensors(observations, batch, policy.device)
            # One of the expert's moves per sample, drawn afresh each time: in expectation the
            # cross-entropy with the uniform distribution over them, in one forward pass.
            moves = torch.multinomial(targets[batch], 1, generator=generator).squeeze(-1)
            values, log_prob, _ = policy.evaluate_actions(obs, moves.to(policy.device))
            imitation = -log_prob.mean()
            value = torch.nn.functional.mse_loss(
                values.squeeze(-1), returns[batch].to(policy.device)
            )
            loss = imitation + model.vf_coef * value
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), model.max_grad_norm)
            optimizer.step()
    bar.close()
    policy.set_training_mode(False)
    agreed = 0
    with torch.no_grad():
        for batch in torch.arange(n).split(1024):
            dist = policy.get_distribution(_tensors(observations, batch, policy.device))
            best = dist.distribution.logits.argmax(-1).cpu()
            agreed += int((targets[batch].gather(1, best[:, None]) > 0).sum())
    return {
        "samples": n,
        "demonstration_return": float(np.mean(episode_returns)),
        "agreement": agreed / n,
    }


def _demonstrations(
    venv,
    steps: int,
    expert: str,
    noise: float,
    gamma: float,
    rng: np.random.Generator,
    progress: bool,
) -> tuple[dict[str, np.ndarray], torch.Tensor, torch.Tensor, list[float]]:
    """Play ``venv`` with the noisy expert: observations, expert targets (uniform over the
    allowed moves), discounted returns to go, and the return of every finished episode.
    Steps of episodes still running at the end are dropped (their returns are unknown)."""
    n_envs, n_actions = venv.num_envs, venv.action_space.n
    obs = venv.reset()
    kept_obs: list[Any] = []
    kept_targets: list[np.ndarray] = []
    kept_returns: list[float] = []
    episode_returns: list[float] = []
    running: list[list[tuple[Any, np.ndarray, float]]] = [[] for _ in range(n_envs)]
    for _ in trange(-(-steps // n_envs), desc="demonstrations", disable=not progress):
        allowed = np.asarray(venv.env_method(expert), dtype=bool)  # (N, A)
        if allowed.shape != (n_envs, n_actions):
            raise ValueError(
                f"expert={expert!r} returned shape {allowed.shape}: expected ({n_envs}, "
                f"{n_actions}) booleans"
            )
        choice = np.array([rng.choice(np.flatnonzero(row)) if row.any() else 0 for row in allowed])
        random = rng.random(n_envs) < noise
        actions = np.where(random, rng.integers(n_actions, size=n_envs), choice)
        next_obs, rewards, dones, _ = venv.step(actions)
        for i in range(n_envs):
            row_obs = {key: value[i].copy() for key, value in _as_dict(obs).items()}
            running[i].append((row_obs, allowed[i], float(rewards[i])))
            if dones[i]:
                total = 0.0
                for row_obs, row_allowed, reward in reversed(running[i]):
                    total = reward + gamma * total
                    if row_allowed.any():
                        kept_obs.append(row_obs)
                        kept_targets.append(row_allowed / row_allowed.sum())
                        kept_returns.append(total)
                episode_returns.append(sum(step[2] for step in running[i]))
                running[i] = []
        obs = next_obs
    if not kept_obs:
        raise ValueError(
            f"steps={steps} finished no episode with an expert move: expected more steps"
        )
    stacked = {key: np.stack([o[key] for o in kept_obs]) for key in kept_obs[0]}
    return (
        stacked,
        torch.as_tensor(np.stack(kept_targets), dtype=torch.float32),
        torch.as_tensor(kept_returns, dtype=torch.float32),
        episode_returns,
    )


def _as_dict(obs: Any) -> dict[str, np.ndarray]:
    """Dict observations as they are, others under the key ``""``."""
    return obs if isinstance(obs, dict) else {"": obs}


def _tensors(observations: dict[str, np.ndarray], batch: torch.Tensor, device) -> Any:
    """The observations ``batch`` selects, as the tensors SB3's policies take."""
    picked = {key: value[batch.numpy()] for key, value in observations.items()}
    return obs_as_tensor(picked[""] if list(picked) == [""] else picked, device)
