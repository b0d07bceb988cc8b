"""TextGen-v0 with your own reward model: any Python function `reward(prompts, texts)`.

The function gets the prompts and the generated continuations (without the prompt) of every
episode that finished on a step, and returns one number per text; TextGen wraps it in
`textgym.rewards.CallableRewardModel`. Here it rewards brevity, and the GPT policy (which
starts as the bundled model) learns to end its reviews after one short sentence, while the
KL penalty keeps the sentence fluent. The script prints the mean reward after every update.

    python examples/custom_reward_model.py                # 20,000 tokens (~1.5 min)
    python examples/custom_reward_model.py --steps 5000   # a quick look
"""

import argparse

import numpy as np

from textgym_agents.backends.sb3.zoo import agent_env_kwargs, make_agent
from textgym_agents.trainers.episodes import UpdateStats
from textgym_agents.trainers.sequence_ppo import SequencePPO
from textgym_agents.training.evaluation import evaluate


def brevity(prompts: list[str], texts: list[str]) -> list[float]:
    """1 for an empty continuation, 0 at 100 characters, negative beyond."""
    return [1.0 - len(text) / 100 for text in texts]


def report(trainer: SequencePPO, stats: UpdateStats) -> None:
    """SequencePPO's callback: one line per update."""
    reward = np.mean([episode.rm_score for episode in stats.episodes])
    length = np.mean([len(episode.tokens) for episode in stats.episodes])
    print(f"  {stats.timesteps:>6} tokens: mean reward {reward:+.3f}, {length:.1f} tokens a text")


def main() -> None:
    parser = argparse.ArgumentParser(description="TextGen-v0 with a reward model of your own")
    parser.add_argument("--steps", type=int, default=20_000, help="tokens to generate")
    parser.add_argument("--episodes", type=int, default=128, help="evaluation episodes")
    parser.add_argument("--n-envs", type=int, help="sequences per batch (default: the zoo's 64)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per episode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and its envs")
    args = parser.parse_args()

    env_kwargs = {"reward_model": brevity, "max_new_tokens": args.max_new_tokens}
    agent = make_agent(
        "gpt", "TextGen-v0", seed=args.seed, n_envs=args.n_envs, env_kwargs=env_kwargs
    )

    def score() -> dict:
        return evaluate(
            agent,
            "TextGen-v0",
            episodes=args.episodes,
            seed=1000,
            env_kwargs=agent_env_kwargs("gpt", "TextGen-v0", env_kwargs),
            samples=2,
        )

    before = score()
    agent.learn(args.steps, callback=report)
    after = score()
    for name, result in (
        ("before training", before),
        (f"after training ({agent.num_timesteps} tokens)", after),
    ):
        print(f"{name}: mean reward {result['mean_rm_score']:+.3f}")
        for sample in result["samples"]:
            print(f"  [{sample['prompt']}]{sample['text']}")


if __name__ == "__main__":
    main()
