"""Branching rollouts: the Monte-Carlo value of a prefix and the best of n continuations.

One row of the batched TextGen env writes a prefix; ``fork`` copies its state (tokens, the
rewards so far, the reference's KV cache) into every other row, and the n rows continue it
in one batched rollout. The mean return of the n continuations estimates the prefix's value
under the sampling policy; the best one is a best-of-n answer.

    python examples/branching.py --n 16 --prefix-tokens 4
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers TextGen-v0)
from textgym.reference import ReferencePolicy

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--n", type=int, default=16, help="continuations of the prefix")
parser.add_argument("--prefix-tokens", type=int, default=4)
parser.add_argument("--max-new-tokens", type=int, default=24)
parser.add_argument("--prompt-index", type=int, default=0)
parser.add_argument("--temperature", type=float, default=1.0, help="of the sampling policy")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

venv = gym.make_vec(
    "TextGen-v0",
    num_envs=args.n,
    vectorization_mode="vector_entry_point",
    max_new_tokens=args.max_new_tokens,
)
env = venv.unwrapped
policy = ReferencePolicy(env.core, temperature=args.temperature, seed=args.seed)
env.attach_policy(policy)  # the KL rewards are those of the policy that samples
venv.reset(seed=args.seed, options={"prompt_index": args.prompt_index})

# The prefix: row 0 takes the reference's most likely tokens other than EOS.
eos = env.core.eos_token_id
for _ in range(args.prefix_tokens):
    actions = policy.act()
    logprobs = env.core.reference_logprobs([0])[0]
    logprobs[eos] = -np.inf
    actions[0] = int(np.argmax(logprobs))
    venv.step(actions)
prefix = env.snapshot(0)
print(f"prefix: {prefix.prompt!r} + {env.tokenizer.decode(prefix.generated)!r}")

# Every row continues the prefix; each episode's return is summed until it terminates.
env.fork(0, range(1, args.n))
returns, done, texts = np.zeros(args.n), np.zeros(args.n, dtype=bool), [""] * args.n
returns += prefix.kl_rewards.sum()  # what the prefix's tokens earned already
while not done.all():
    _, rewards, terminated, _, infos = venv.step(policy.act())
    returns += np.where(done, 0.0, rewards)  # a finished row's next episode is not ours
    for row in np.flatnonzero(terminated & ~done):
        texts[row] = infos["text"][row]
    done |= terminated

stderr = returns.std(ddof=1) / np.sqrt(args.n)
print(f"Monte-Carlo value of the prefix over {args.n} continuations: {returns.mean():+.3f}")
print(f"standard error: {stderr:.3f}")
best = int(np.argmax(returns))
print(f"best of {args.n}: return {returns[best]:+.3f} {texts[best]!r}")
print(f"worst of {args.n}: return {returns.min():+.3f} {texts[int(np.argmin(returns))]!r}")
