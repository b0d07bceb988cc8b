#!/usr/bin/env python
"""Build the bundled synthetic preference set of the default task, reproducibly.

A learned reward model needs preference pairs. Real ones come from people; here the gold
judge of the default task (VADER compound sentiment, `textgym.rewards.VaderSentiment`)
plays the annotator, with human-like label noise, so that the RM trained on the pairs is a
realistic, imperfect proxy of the gold score:

1. For every bundled prompt, ``--samples-per-prompt`` continuations are sampled from the
   bundled reference model exactly as the TextGen env's reference policy produces them:
   the env core of the default task (``max_new_tokens=24``, temperature 1, no filtering),
   every step's token drawn from the reference's next-token distribution, the finished text
   decoded by the env itself.
2. The samples of a prompt are paired in the order drawn (1st with 2nd, 3rd with 4th, ...).
   Pairs whose gold scores tie exactly (mostly two texts without a sentiment word, VADER 0)
   carry no preference and are dropped, as an annotator would skip them.
3. Each pair is labelled by Bradley-Terry sampling from the gold scores: text ``a`` is
   chosen over ``b`` with probability ``sigmoid((gold(a) - gold(b)) / tau)``. Near-ties are
   thus close to coin flips and clear differences are rarely flipped, as with people;
   ``tau`` sets the noise level.

Outputs (``--out``, default ``textgym/assets``):

- ``preferences.jsonl``: one ``{"prompt", "chosen", "rejected"}`` object per line, the
  pairs shuffled;
- ``preferences.json``: the settings, counts, gold-score statistics, the share of labels
  that agree with the gold judge (``label_agreement``) and its expectation under the noise
  model (``expected_agreement``: the best pairwise accuracy a perfect proxy of the gold
  judge could reach on these labels), and the jsonl's sha256.

Everything depends only on ``--seed``, the sizes and the bundled model, and is rebuilt byte
for byte on CPU with one thread.

Usage::

    python scripts/make_preferences.py                  # the bundled set, ~40 s
    python scripts/make_preferences.py --out /tmp/prefs --samples-per-prompt 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from textgym.runfiles import write_json

REPO_ROOT = Path(__file__).resolve().parent.parent


def sample_continuations(
    samples_per_prompt: int, max_new_tokens: int, seed: int
) -> tuple[list[str], list[list[str]], list[list[float]]]:
    """Reference-policy continuations of every bundled prompt and their gold scores.

    :return: the prompts, ``texts[p][s]`` (sample ``s`` of prompt ``p``) and their VADER scores.
    """
    import transformers

    from textgym.envs.textgen_core import TextGenCore
    from textgym.prompts import load_prompts

    transformers.logging.set_verbosity_error()
    prompts = load_prompts()
    # One row per prompt: each round draws one more continuation of every prompt.
    core = TextGenCore(
        len(prompts), reward_model="sentiment", kl_coef=0.0, max_new_tokens=max_new_tokens
    )
    rng = np.random.default_rng(seed)
    texts: list[list[str]] = [[] for _ in prompts]
    gold: list[list[float]] = [[] for _ in prompts]
    rows = np.arange(len(prompts))
    with warnings.catch_warnings():
        # No policy scorer: the reference acts, and the KL part of the reward is unused here.
        warnings.filterwarnings("ignore", message="no policy scorer is attached")
        for _ in range(samples_per_prompt):
            core.start_rows(rows, prompt_indices=rows)
            while core.active.any():
                live = np.flatnonzero(core.active)
                logprobs = core.reference_logprobs(live).astype(np.float64)  # (n, V)
                # Gumbel-max: an exact draw from softmax(logprobs), vectorised over rows.
                draws = np.argmax(logprobs + rng.gumbel(size=logprobs.shape), axis=1)
                actions = np.zeros(len(prompts), dtype=np.int64)
                actions[live] = draws
                result = core.step(actions, rows=core.active.copy())
                for row, info in result.finished.items():
                    texts[row].append(info["text"])
                    gold[row].append(info["rm_score"])
    return prompts, texts, gold


def label_pairs(
    prompts: list[str], texts: list[list[str]], gold: list[list[float]], tau: float, seed: int
) -> tuple[list[dict[str, str]], dict[str, float | int]]:
    """Pair each prompt's samples in order, drop exact ties, label by Bradley-Terry sampling."""
    rng = np.random.default_rng(seed + 1)
    records, agree, expected, gaps = [], 0, 0.0, []
    ties = 0
    for prompt, samples, scores in zip(prompts, texts, gold):
        for i in range(0, len(samples) - 1, 2):
            gap = scores[i] - scores[i + 1]
            if gap == 0.0:
                ties += 1
                continue
            p_first = 1.0 / (1.0 + math.exp(-gap / tau))
            first = rng.random() < p_first
            chosen, rejected = (i, i + 1) if first else (i + 1, i)
            records.append(
                {"prompt": prompt, "chosen": samples[chosen], "rejected": samples[rejected]}
            )
            agree += scores[chosen] > scores[rejected]
            expected += max(p_first, 1.0 - p_first)
            gaps.append(abs(gap))
    order = rng.permutation(len(records))
    records = [records[i] for i in order]
    stats = {
        "pairs": len(records),
        "ties_dropped": ties,
        "label_agreement": round(agree / len(records), 4),
        "expected_agreement": round(expected / len(records), 4),
        "mean_abs_gold_gap": round(float(np.mean(gaps)), 4),
    }
    return records, stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "textgym" / "assets")
    parser.add_argument("--samples-per-prompt", type=int, default=26, help="even; 2 per pair")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="the default task's")
    parser.add_argument(
        "--tau", type=float, default=0.25, help="Bradley-Terry label temperature (gold units)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.samples_per_prompt < 2 or args.samples_per_prompt % 2:
        raise SystemExit(f"--samples-per-prompt {args.samples_per_prompt}: expected an even int")
    if args.tau <= 0:
        raise SystemExit(f"--tau {args.tau}: expected a number > 0")
    torch.set_num_threads(1)  # bit-reproducible sampling on CPU

    start = time.perf_counter()
    prompts, texts, gold = sample_continuations(
        args.samples_per_prompt, args.max_new_tokens, args.seed
    )
    records, stats = label_pairs(prompts, texts, gold, args.tau, args.seed)
    flat = np.concatenate([np.asarray(g) for g in gold])

    args.out.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    (args.out / "preferences.jsonl").write_bytes(data)
    import transformers

    report = {
        "command": " ".join(
            ["python", "scripts/make_preferences.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "settings": {
            "seed": args.seed,
            "prompts": len(prompts),
            "samples_per_prompt": args.samples_per_prompt,
            "max_new_tokens": args.max_new_tokens,
            "temperature": 1.0,
            "gold_judge": "VADER compound of the continuation (textgym.rewards.VaderSentiment)",
            "label_noise": "Bradley-Terry: P(a chosen over b) = sigmoid((gold(a) - gold(b)) / tau)",
            "tau": args.tau,
        },
        "samples": {
            "count": int(flat.size),
            "gold_mean": round(float(flat.mean()), 4),
            "gold_std": round(float(flat.std()), 4),
            "share_zero": round(float(np.mean(flat == 0.0)), 4),
            "share_positive": round(float(np.mean(flat > 0.0)), 4),
        },
        **stats,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "seconds": round(time.perf_counter() - start, 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    write_json(args.out / "preferences.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
