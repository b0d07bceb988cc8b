"""sb3-contrib MaskablePPO on TextGen-v0 in "vocab" mode, masked to the reference's top-k tokens.

Here an action is a token id out of the whole vocabulary, and `env.action_masks()` allows
only the reference model's 10 most likely next tokens (plus end-of-sequence). MaskablePPO
reads the masks at every step, and `make_agent` attaches its *masked* distribution as the
env's KL scorer. The script prints the mean reward-model (VADER sentiment) score of sampled
texts before and after training.

    python examples/maskable_ppo_textgen.py  # the zoo's budget (100,000 steps, ~5 min)
    python examples/maskable_ppo_textgen.py --steps 20000  # a quick look
"""

import argparse

from textgym_agents.backends.sb3.zoo import agent_env_kwargs, default_budget, make_agent
from textgym_agents.training.evaluation import evaluate

ENV_ID = "TextGen-v0"


def main() -> None:
    parser = argparse.ArgumentParser(description="MaskablePPO on TextGen-v0 in vocab mode")
    parser.add_argument(
        "--steps",
        type=int,
        default=default_budget("maskable_ppo", ENV_ID),
        help="tokens to generate",
    )
    parser.add_argument("--episodes", type=int, default=256, help="evaluation episodes")
    parser.add_argument("--n-envs", type=int, help="sequences per batch (default: the zoo's 16)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per episode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and its envs")
    args = parser.parse_args()

    env_kwargs = agent_env_kwargs("maskable_ppo", ENV_ID, {"max_new_tokens": args.max_new_tokens})
    model = make_agent(
        "maskable_ppo", ENV_ID, seed=args.seed, n_envs=args.n_envs, env_kwargs=env_kwargs
    )
    venv = model.get_env()
    venv.reset()
    mask = venv.env_method("action_masks", indices=0)[0]  # (V,) bool, for row 0
    print(f"action space: {venv.action_space}, allowed in the first state: {mask.sum()}")

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
