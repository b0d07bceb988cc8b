"""Which GridWorld map do stock agents learn at their library's defaults?

Each agent is built with its library's defaults (nothing tuned: only what the env needs to be
read at all), trained for ``--steps`` env steps on each named map, then acts greedily for 100
episodes; printed: the share of those that reach the diamond, and the mean return.

    python scripts/stock_defaults.py                       # SB3 PPO and DQN (the main env)
    python scripts/stock_defaults.py --library rllib       # RLlib PPO (pip install -e ".[rllib]")
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the envs)

MAPS = ("4x4", "6x6", "8x8")


def greedy_success(act, map_name: str, episodes: int = 100) -> tuple[float, float]:
    """Share of ``episodes`` greedy episodes that reach the diamond, and the mean return."""
    env = gym.make("GridWorld-v0", map=map_name)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=10_000 + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(np.array(returns) > 0)), float(np.mean(returns))


def sb3(name: str, map_name: str, steps: int, seed: int):
    from stable_baselines3 import DQN, PPO

    env = gym.make("GridWorld-v0", map=map_name)
    model = {"ppo": PPO, "dqn": DQN}[name]("MlpPolicy", env, seed=seed)  # SB3 one-hots Discrete
    model.learn(steps)
    return lambda obs: int(model.predict(obs, deterministic=True)[0])


def rllib_ppo(map_name: str, steps: int, seed: int):
    import ray
    import torch
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import FlattenObservations
    from ray.rllib.core.columns import Columns

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    config = (
        PPOConfig()
        .environment("textgym:GridWorld-v0", env_config={"map": map_name})
        # RLlib's default module has no encoder for a Discrete observation: one-hot it.
        .env_runners(
            num_env_runners=2,
            env_to_module_connector=lambda *args, **kwargs: FlattenObservations(),
        )
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    for _ in range(-(-steps // config.train_batch_size_per_learner)):  # 4,000 env steps each
        algo.train()
    module = algo.get_module()
    n_cells = module.observation_space.shape[0]
    algo.stop()

    def act(obs: int) -> int:
        one_hot = torch.zeros(1, n_cells)
        one_hot[0, obs] = 1.0
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: one_hot})[Columns.ACTION_DIST_INPUTS]
        return int(logits.argmax(-1))

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=["sb3", "rllib"], default="sb3")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    agents = ["ppo", "dqn"] if args.library == "sb3" else ["ppo"]
    print(f"| {args.library} agent, {args.steps:,} steps | " + " | ".join(MAPS) + " |")
    print("|---|" + "---|" * len(MAPS))
    for name in agents:
        cells = []
        for map_name in MAPS:
            if args.library == "sb3":
                act = sb3(name, map_name, args.steps, args.seed)
            else:
                act = rllib_ppo(map_name, args.steps, args.seed)
            success, mean_return = greedy_success(act, map_name)
            cells.append(f"{success:.0%} ({mean_return:+.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
