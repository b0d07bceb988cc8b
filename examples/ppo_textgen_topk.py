"""stable-baselines3 PPO on TextGen-v0: steer the bundled model towards positive reviews.

SB3's PPO reads the token observation through `textgym_agents.TokenExtractor`. The zoo
runs it in "topk" mode: action i is the reference model's i-th most likely next token, so the
policy chooses among 10 plausible tokens rather than the whole vocabulary. Its policy,
`textgym_agents.ReferencePriorPolicy`, is SB3's "MultiInputPolicy" with the reference's
log-probs of the candidates added to its logits, so it starts as the reference (KL 0).
`make_agent` attaches the policy as the env's KL scorer, so every step's KL penalty is
measured against the policy that acts. The script prints the mean
reward-model (VADER sentiment) score of sampled texts before and after training.

    python examples/ppo_textgen_topk.py                # the zoo's budget (100,000 steps, ~3 min)
    python examples/ppo_textgen_topk.py --steps 20000  # a quick look
"""

import argparse

from textgym_agents.backends.sb3.zoo import agent_env_kwargs, default_budget, make_agent
from textgym_agents.training.evaluation import evaluate

ENV_ID = "TextGen-v0"


def main() -> None:
    parser = argparse.ArgumentParser(description="PPO on TextGen-v0 in topk mode")
    parser.add_argument(
        "--steps", type=int, default=default_budget("ppo", ENV_ID), help="tokens to generate"
    )
    parser.add_argument("--episodes", type=int, default=256, help="evaluation episodes")
    parser.add_argument("--n-envs", type=int, help="sequences per batch (default: the zoo's 16)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per episode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and its envs")
    args = parser.parse_args()

    env_kwargs = agent_env_kwargs("ppo", ENV_ID, {"max_new_tokens": args.max_new_tokens})
    print(f"env arguments: {env_kwargs}")  # the zoo adds action_mode="topk"
    model = make_agent("ppo", ENV_ID, seed=args.seed, n_envs=args.n_envs, env_kwargs=env_kwargs)

    def score() -> dict:
        return evaluate(
            model, ENV_ID, episodes=args.episodes, seed=1000, env_kwargs=env_kwargs, samples=2
        )

    before = score()
    model.learn(args.steps)
    after = score()
    for name, result in (
        ("before training", before),
        (f"after {model.num_timesteps} steps", after),
    ):
        print(
            f"{name}: mean RM score {result['mean_rm_score']:+.3f}, "
            f"positive {result['positive_share']:.0%}, "
            f"KL per sequence {result['mean_kl_per_sequence']:.2f}"
        )
    for sample in after["samples"]:
        print(f"  [{sample['prompt']}]{sample['text']}  (RM {sample['rm_score']:+.2f})")


if __name__ == "__main__":
    main()
