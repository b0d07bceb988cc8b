"""A hand-written REINFORCE loop on TextGen-v0, using only Gymnasium's API and torch.

The loop knows textgym only by `import textgym` and the env id: it calls `reset` and `step`,
reads the observation and `info` dicts, and sizes its network from the observation space.
In "topk" mode the observation holds the reference model's 10 likeliest next tokens
(`candidate_ids`) and their log-probs (`candidate_logprobs`); action i picks candidate i.
The policy is the reference's log-probs plus a learned correction that starts at zero, and
`env.unwrapped.attach_policy(scorer)` gives the env its log-probs, so the KL penalty of
every step reward is measured against the policy that acts.

    python examples/policy_gradient_loop.py                 # 1,600 episodes (~2 min)
    python examples/policy_gradient_loop.py --episodes 320  # a quick look
"""

import argparse

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import textgym  # noqa: F401  (registers TextGen-v0)


class Policy(nn.Module):
    """Log-probs over the candidates: the reference's, plus a bag-of-tokens correction."""

    def __init__(self, vocab_size: int, dim: int = 16) -> None:
        super().__init__()
        self.context = nn.Embedding(vocab_size, dim)  # what the text so far is about
        self.candidate = nn.Embedding(vocab_size, dim)  # how each token fits a context
        self.bias = nn.Embedding(vocab_size, 1)  # how good each token is anywhere
        nn.init.zeros_(self.candidate.weight)  # zero correction: the policy is the reference
        nn.init.zeros_(self.bias.weight)

    def forward(self, input_ids, attention_mask, candidate_ids, candidate_logprobs):
        ids, cands = torch.as_tensor(input_ids), torch.as_tensor(candidate_ids)
        mask = torch.as_tensor(attention_mask, dtype=torch.float32)[..., None]  # (B, L, 1)
        context = (self.context(ids) * mask).sum(1) / mask.sum(1)  # (B, D)
        fit = (self.candidate(cands) @ context[..., None]).squeeze(-1)  # (B, k)
        logits = torch.as_tensor(candidate_logprobs) + fit + self.bias(cands).squeeze(-1)
        return torch.log_softmax(logits, dim=-1)  # (B, k)


def main() -> None:
    parser = argparse.ArgumentParser(description="REINFORCE on TextGen-v0")
    parser.add_argument("--episodes", type=int, default=1600, help="episodes to play")
    parser.add_argument("--batch", type=int, default=32, help="episodes per update")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam's learning rate")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per episode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the env and the policy")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    env = gym.make("TextGen-v0", action_mode="topk", max_new_tokens=args.max_new_tokens)
    policy = Policy(vocab_size=int(env.observation_space["input_ids"].high.max()) + 1)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.lr)

    @torch.no_grad()
    def scorer(obs):
        """The env's view of the policy: batched observations in, (B, k) log-probs out."""
        return policy(
            obs["input_ids"], obs["attention_mask"], obs["candidate_ids"], obs["candidate_logprobs"]
        )

    env.unwrapped.attach_policy(scorer)

    obs, _ = env.reset(seed=args.seed)
    returns = []
    for update in range(args.episodes // args.batch):
        played, batch_returns, rm_scores, kls = [], [], [], []
        for _ in range(args.batch):
            logprobs, rewards, done = [], [], False
            while not done:
                log_pi = policy(**{key: value[None] for key, value in obs.items()})[0]  # (k,)
                action = int(torch.multinomial(log_pi.exp(), 1))
                obs, reward, terminated, truncated, info = env.step(action)
                logprobs.append(log_pi[action])
                rewards.append(reward)
                done = terminated or truncated
            obs, _ = env.reset()
            # No discount: every token shapes the finished text equally.
            to_go = torch.as_tensor(np.cumsum(rewards[::-1])[::-1].copy(), dtype=torch.float32)
            played.append((torch.stack(logprobs), to_go))
            batch_returns.append(float(to_go[0]))
            rm_scores.append(info["rm_score"])
            kls.append(info["episode_kl"])
        # REINFORCE with the batch's mean return as the baseline.
        baseline = np.mean(batch_returns)
        loss = -sum((logp * (to_go - baseline)).sum() for logp, to_go in played) / args.batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        returns += batch_returns
        print(
            f"update {update:>3}: mean return {np.mean(batch_returns):+.3f}, "
            f"RM score {np.mean(rm_scores):+.3f}, KL per sequence {np.mean(kls):.2f}"
        )
    window = max(args.batch, len(returns) // 5)
    print(f"mean return, first {window} episodes: {np.mean(returns[:window]):+.3f}")
    print(f"mean return, last {window} episodes: {np.mean(returns[-window:]):+.3f}")


if __name__ == "__main__":
    main()
