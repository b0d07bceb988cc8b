"""One GPT policy, two environments: TextGen-v0 and GridWorld-v1 through the same zoo calls.

`make_agent("gpt", env_id)` picks the right trainer for each env:

- TextGen-v0: `textgym_agents.SequencePPO`, PPO over whole sequences for
  `GPTActorCriticPolicy`, whose trunk starts as a copy of the env's reference model (so the
  KL penalty starts at zero). Its `learn` calls `callback(trainer, stats)` after each update,
  used here to print the progress.
- GridWorld-v1: stable-baselines3's PPO with the same policy class, a small fresh GPT that
  reads the grid as tokens (`obs_mode="tokens"`, added by `agent_env_kwargs`).

Both are evaluated by `textgym_agents.evaluate`: the mean reward-model score of sampled texts
on TextGen, the share of episodes that reach the diamond on GridWorld.

    python examples/gpt_policy.py --env TextGen-v0  # the zoo's budget, 100,000 tokens (~6 min)
    python examples/gpt_policy.py --env GridWorld-v1 --steps 20000  # a quick look
    python examples/gpt_policy.py  # both at the zoo's budgets (GridWorld's 100,000: ~4 min)
"""

import argparse

import numpy as np

from textgym_agents.backends.sb3.zoo import agent_env_kwargs, default_budget, make_agent
from textgym_agents.trainers.episodes import UpdateStats
from textgym_agents.trainers.sequence_ppo import SequencePPO
from textgym_agents.training.evaluation import evaluate

METRIC = {"TextGen-v0": "mean_rm_score", "GridWorld-v1": "success_rate"}


def report(trainer: SequencePPO, stats: UpdateStats) -> None:
    """SequencePPO's callback: one line per update."""
    rm_score = np.mean([episode.rm_score for episode in stats.episodes])
    kl = np.mean([episode.kl for episode in stats.episodes])
    print(f"  {stats.timesteps:>7} tokens: mean RM score {rm_score:+.3f}, KL per sequence {kl:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="The GPT policy on TextGen-v0 and GridWorld-v1")
    parser.add_argument("--env", nargs="+", default=list(METRIC), choices=list(METRIC), help="envs")
    parser.add_argument("--steps", type=int, help="env steps per env (default: the zoo's budget)")
    parser.add_argument("--episodes", type=int, default=128, help="evaluation episodes")
    parser.add_argument("--n-envs", type=int, help="envs acting at once (default: the zoo's)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="TextGen tokens per episode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and its envs")
    args = parser.parse_args()

    for env_id in args.env:
        extra = {"max_new_tokens": args.max_new_tokens} if env_id == "TextGen-v0" else None
        env_kwargs = agent_env_kwargs("gpt", env_id, extra)
        model = make_agent("gpt", env_id, seed=args.seed, n_envs=args.n_envs, env_kwargs=env_kwargs)
        steps = args.steps or default_budget("gpt", env_id)
        print(f"{env_id}: {type(model).__name__}, env arguments {env_kwargs}, {steps} steps")

        evaluation = {"episodes": args.episodes, "seed": 1000, "env_kwargs": env_kwargs}
        before = evaluate(model, env_id, **evaluation)[METRIC[env_id]]
        if isinstance(model, SequencePPO):
            model.learn(steps, callback=report)
        else:
            model.learn(steps)
        after = evaluate(model, env_id, **evaluation)[METRIC[env_id]]
        print(f"{env_id}: {METRIC[env_id]} before {before:+.3f}, after {after:+.3f}")


if __name__ == "__main__":
    main()
