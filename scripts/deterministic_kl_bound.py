#!/usr/bin/env python
"""How little KL a deterministic policy can pay on the default TextGen task (topk mode).

A deterministic policy puts probability 1 on its token, so its k1 KL per sequence is the
reference's negative log-likelihood of the text it writes, ``sum_t -log pi_ref(a_t | s_t)``
(renormalised over the top-k candidates in ``"topk"`` mode). The least it can pay on a prompt
is that of the reference's most likely complete continuation (ending with EOS, or cut at
``max_new_tokens``), which a beam search approximates from above. With ``kl_coef`` 0.05 and
a reward model in [-1, 1] (VADER), ``1 - kl_coef * bound`` caps the return of any
deterministic policy, whatever it learns: the ceiling DQN's near-greedy policy works under.

    python scripts/deterministic_kl_bound.py --prompts 60 --beam 16
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch

import textgym  # noqa: F401  (registers TextGen-v0)


def least_nll(core, prompt: list[int], beam: int) -> tuple[float, int]:
    """Beam search for the reference's most likely complete continuation of ``prompt``
    among the top-k candidates: its summed negative log-likelihood and its length."""
    model = core.reference_model
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    finished: list[tuple[float, list[int]]] = []
    for _ in range(core.max_new_tokens):
        ids = torch.tensor([prompt + tokens for _, tokens in beams], device=model.device)
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[:, -1].float(), -1)
        top = logprobs.topk(core.top_k, dim=-1)
        renormalised = top.values - torch.logsumexp(top.values, -1, keepdim=True)
        grown = []
        for (cost, tokens), values, indices in zip(beams, renormalised, top.indices):
            for value, token in zip(values.tolist(), indices.tolist()):
                target = finished if token == core.eos_token_id else grown
                target.append((cost - value, tokens + [token]))
        beams = sorted(grown, key=lambda item: item[0])[:beam]
    cost, tokens = min(finished + beams, key=lambda item: item[0])
    return cost, len(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=60, help="prompts (env seeds 0..N-1)")
    parser.add_argument("--beam", type=int, default=16, help="beam width")
    args = parser.parse_args()
    torch.manual_seed(0)
    env = gym.make("TextGen-v0", action_mode="topk")
    core = env.unwrapped.core
    costs, lengths = [], []
    for seed in range(args.prompts):
        obs, _ = env.reset(seed=seed)
        prompt = obs["input_ids"][: int(obs["attention_mask"].sum())].tolist()
        cost, length = least_nll(core, prompt, args.beam)
        costs.append(cost)
        lengths.append(length)
    bound = float(np.mean(costs))
    print(
        json.dumps(
            {
                "prompts": args.prompts,
                "beam": args.beam,
                "least_kl_per_sequence": round(bound, 2),
                "mean_length": round(float(np.mean(lengths)), 1),
                "kl_coef": core.kl_controller.value,
                "return_ceiling": round(1.0 - core.kl_controller.value * bound, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
