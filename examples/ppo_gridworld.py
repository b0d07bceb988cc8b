"""stable-baselines3 PPO on GridWorld-v1, with the agent zoo's settings.

Shows the zoo's three calls: `make_agent` builds PPO configured for an env id (on v1: SB3's
defaults), `default_budget` is the number of steps it was measured with, and `evaluate` plays
fresh episodes and reports the share that reached the diamond. Then one greedy episode is drawn.

    python examples/ppo_gridworld.py                # the zoo's budget (100,000 steps, ~1 min)
    python examples/ppo_gridworld.py --steps 20000  # a quick look
"""

import argparse

import gymnasium as gym

import textgym  # noqa: F401  (registers GridWorld-v1)
from textgym_agents.backends.sb3.zoo import default_budget, make_agent
from textgym_agents.training.evaluation import evaluate

ENV_ID = "GridWorld-v1"


def main() -> None:
    parser = argparse.ArgumentParser(description="PPO on GridWorld-v1")
    parser.add_argument(
        "--steps", type=int, default=default_budget("ppo", ENV_ID), help="env steps to train"
    )
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and its envs")
    args = parser.parse_args()

    model = make_agent("ppo", ENV_ID, seed=args.seed)
    # Evaluation envs get seeds the training envs never saw.
    before = evaluate(model, ENV_ID, episodes=args.episodes, seed=1000)
    model.learn(args.steps)
    after = evaluate(model, ENV_ID, episodes=args.episodes, seed=1000)
    print(f"success rate before training: {before['success_rate']:.2f}")
    print(f"success rate after {model.num_timesteps} steps: {after['success_rate']:.2f}")
    print(f"mean episode length after training: {after['mean_length']:.1f}")

    # One greedy episode, drawn at its last step ("R" is the robot).
    env = gym.make(ENV_ID, render_mode="ansi")
    obs, _ = env.reset(seed=1000)
    done, total = False, 0.0
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        done = terminated or truncated
    print(env.render())
    # v1's rewards include the shaping toward the diamond; the game's own is the task reward.
    print(f"final task reward: {info['task_reward']:+.0f} (diamond +1, fire -1, timeout 0)")
    print(f"return with the shaping: {total:+.3f}")


if __name__ == "__main__":
    main()
