"""textgym benchmarks: every figure is a ratio to a baseline measured in the same run.

    python benchmarks/run.py                 # all benchmarks, table + benchmarks/results.json
    python benchmarks/run.py --only grid     # a subset: single, batched, grid, memory, training,
                                             # branch
    python benchmarks/run.py --device cuda   # the TextGen benchmarks on a GPU

Against TRL (needs the ``bench`` extra, in its own environment): benchmarks/trl_compare.py.

Absolute times on shared machines drift; ratios measured back to back in one process hold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from provenance import provenance  # benchmarks/provenance.py

import textgym  # noqa: F401  (registers the envs)
from textgym.runfiles import write_json


@dataclass
class Args:
    """Benchmark settings."""

    only: str = "single,batched,grid,memory,training,branch"  # comma-separated subset to run
    device: str = "cpu"  # where the TextGen models run
    threads: int = 0  # torch threads (0: torch's default)
    repeats: int = 5  # timing repeats; the best (least disturbed) is kept
    out: str = "benchmarks/results.json"  # where the JSON figures go


def best_of(repeats: int, *fns) -> list[float]:
    """The smallest of ``repeats`` timings of each of ``fns`` (seconds), the calls interleaved
    so that a slow spell of a shared machine hits every function alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [min(record) for record in times]


# ---------------------------------------------------------------- single TextGen step


def bench_single(args: Args) -> dict:
    """TextGen step (random actions, default task) / one raw KV-cached forward at batch 1."""
    import torch

    from textgym.kv_cache import cache_keyword, output_cache

    env = gym.make("TextGen-v0", device=args.device)
    env.unwrapped.attach_policy(None)
    model = env.unwrapped.reference_model
    keyword = cache_keyword(model)
    tokens = env.unwrapped.core.max_new_tokens
    rng = np.random.default_rng(0)
    vocab = env.action_space.n
    eos = env.unwrapped.tokenizer.eos_token_id
    prompt = torch.tensor([env.unwrapped.core._prompt_ids[0]], device=model.device)

    def env_episode() -> float:
        env.reset(seed=int(rng.integers(1 << 30)))
        actions = rng.integers(0, vocab, size=tokens)
        actions[actions == eos] = 3  # full-length episodes, like the raw loop
        start = time.perf_counter()
        for action in actions:
            env.step(int(action))
        return time.perf_counter() - start

    @torch.inference_mode()
    def raw_episode() -> float:
        out = model(input_ids=prompt, use_cache=True)
        cache = output_cache(out)
        ids = torch.as_tensor(rng.integers(0, vocab, size=(tokens, 1, 1)), device=model.device)
        start = time.perf_counter()
        # The env needs no forward after the last token, so the raw loop does tokens - 1.
        for t in range(tokens - 1):
            out = model(input_ids=ids[t], **{keyword: cache}, use_cache=True)
            cache = output_cache(out)
        _sync(model)
        return time.perf_counter() - start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            env_episode(), raw_episode()  # warm up
        env_t, raw_t = [], []
        for _ in range(args.repeats * 8):
            env_t.append(env_episode())
            raw_t.append(raw_episode())
    env_step = float(np.median(env_t)) / tokens
    raw_step = float(np.median(raw_t)) / (tokens - 1)
    return {
        "env_step_us": env_step * 1e6,
        "raw_forward_us": raw_step * 1e6,
        "ratio": env_step / raw_step,
        "target": "<= 1.15",
    }


def bench_branch(args: Args, generated: int = 20) -> dict:
    """Restoring a snapshot (``restore(state)``) / re-encoding the same sequence (one forward
    over prompt + generated tokens) / replaying it (reset, then a step per token), batch 1."""
    from textgym.kv_cache import IncrementalLM

    env = gym.make("TextGen-v0", device=args.device, max_new_tokens=generated + 4)
    core = env.unwrapped.core
    env.reset(seed=0, options={"prompt_index": 1})
    rng = np.random.default_rng(0)
    for _ in range(generated):
        mask = core.action_masks([0])[0]
        mask[core.eos_token_id] = False
        env.step(int(rng.choice(np.flatnonzero(mask))))
    state = env.unwrapped.snapshot()
    tokens = state.tokens.tolist()

    def restore() -> None:
        env.unwrapped.restore(state)
        _sync(core.reference_model)

    def reencode() -> None:
        logits = core._forward(IncrementalLM.start, [0], [tokens])
        core._set_next(np.array([0]), logits)
        _sync(core.reference_model)

    def replay() -> None:
        env.reset(options={"prompt_index": 1})
        for token in state.generated:
            env.step(int(token))
        _sync(core.reference_model)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in (restore, reencode, replay):
            fn()  # warm up
        restore_t, reencode_t, replay_t = best_of(args.repeats * 10, restore, reencode, replay)
    return {
        "sequence_tokens": len(tokens),
        "restore_us": restore_t * 1e6,
        "reencode_us": reencode_t * 1e6,
        "replay_us": replay_t * 1e6,
        "ratio_reencode": restore_t / reencode_t,
        "ratio_replay": restore_t / replay_t,
        "target": "< 1",
    }


def _sync(model) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- batched TextGen vs generate


def bench_batched(args: Args, sizes=(1, 8, 64)) -> dict:
    """Batched TextGen tokens/s / HF generate tokens/s, same model, batch and new tokens."""
    results = {f"N={n}": _batched_vs_generate(args, n) for n in sizes}
    results["target"] = ">= 1.0 at N=64"
    return results


def _batched_vs_generate(args: Args, n: int) -> dict:
    import torch

    from textgym.envs.textgen_vector import TextGenVectorEnv

    venv = TextGenVectorEnv(n, device=args.device)
    core = venv.core
    model, tokens = core.reference_model, core.max_new_tokens
    vocab, eos = venv.single_action_space.n, core.eos_token_id
    rng = np.random.default_rng(n)
    plan = rng.integers(0, vocab, size=(tokens, n))
    plan[plan == eos] = 3
    venv.reset(seed=0)
    for t in range(tokens):  # every row ends on the last step
        venv.step(plan[t])

    def env_run() -> None:
        # NEXT_STEP autoreset: the first call restarts every row (the prompt forward, like
        # generate's prefill), then `tokens` steps generate N x tokens tokens and end all rows.
        venv.step(plan[0])
        for t in range(tokens):
            venv.step(plan[t])
        _sync(model)

    prompts = [core._prompt_ids[i] for i in rng.integers(len(core.prompts), size=n)]
    width = max(map(len, prompts))
    ids = torch.full((n, width), core.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
    ids, mask = ids.to(model.device), mask.to(model.device)

    def generate_run() -> None:
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                top_k=0,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                pad_token_id=core.pad_token_id,
            )
        _sync(model)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            env_run(), generate_run()
        env_t, gen_t = best_of(args.repeats, env_run, generate_run)
    return {
        "env_tokens_per_s": n * tokens / env_t,
        "generate_tokens_per_s": n * tokens / gen_t,
        "ratio": gen_t / env_t,
    }


# ---------------------------------------------------------------- GridWorld vs FrozenLake


def _stepping(env, steps: int, seed: int = 0):
    """A function that plays ``steps`` random steps of ``env``, resetting as episodes end."""
    actions = np.random.default_rng(seed).integers(0, 4, size=steps).tolist()
    env.reset(seed=seed)

    def run() -> None:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    return run


def bench_grid(args: Args, steps: int = 20_000, num_envs: int = 1024) -> dict:
    """GridWorld steps/s vs FrozenLake-v1 steps/s (both via gym.make); vectorised at N=1024."""
    venv = gym.make_vec("GridWorld-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    venv.reset(seed=0)
    vec_actions = np.random.default_rng(0).integers(0, 4, size=(200, num_envs))

    def vec_run() -> None:
        for row in vec_actions:
            venv.step(row)

    frozen_t, grid_t, vec_t = best_of(
        args.repeats,
        _stepping(gym.make("FrozenLake-v1"), steps),
        _stepping(gym.make("GridWorld-v1"), steps),
        vec_run,
    )
    frozen, grid = steps / frozen_t, steps / grid_t
    vec = vec_actions.size / vec_t
    return {
        "frozenlake_steps_per_s": frozen,
        "gridworld_steps_per_s": grid,
        "gridworld_ratio": grid / frozen,
        "gridworld_target": ">= 1.0",
        f"vector_N={num_envs}_steps_per_s": vec,
        "vector_ratio": vec / frozen,
        "vector_target": ">= 50",
    }


# ---------------------------------------------------------------- memory over a long run


MEMORY_CHILD = """
import resource, sys, warnings
import numpy as np
from textgym.envs.textgen_vector import TextGenVectorEnv
warnings.simplefilter("ignore")
steps, n, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
venv = TextGenVectorEnv(n, device=device)
venv.reset(seed=0)
rng = np.random.default_rng(0)
vocab, eos = venv.single_action_space.n, venv.core.eos_token_id
for t in range(steps):
    actions = rng.integers(0, vocab, size=n)
    actions[rng.random(n) < 0.08] = eos  # episodes of many lengths, rows reset at different steps
    venv.step(actions)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, venv.core._lm.cache_length)
"""


def bench_memory(args: Args, short: int = 5_000, long: int = 50_000, n: int = 8) -> dict:
    """Peak RSS of a 50,000-step batched run / a 5,000-step run (fresh processes)."""
    out = {}
    for steps in (short, long):
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(steps), str(n), args.device],
            capture_output=True,
            text=True,
            check=True,
        )
        peak_kb, cache = proc.stdout.split()[-2:]
        out[steps] = (int(peak_kb) / 1024, int(cache))
    return {
        "num_envs": n,
        f"peak_rss_mb_{short}": out[short][0],
        f"peak_rss_mb_{long}": out[long][0],
        "ratio": out[long][0] / out[short][0],
        f"cache_columns_at_end_{long}": out[long][1],
        "target": "<= 1.10",
    }


# ---------------------------------------------------------------- GPT policy training


def bench_training(args: Args, n: int = 16, updates: int = 3) -> dict:
    """Training tokens/s of the GPT policy: the sequence-level trainer (``gpt``) / the same
    policy under SB3's PPO (``gpt-sb3``), on the default task with equal work per update:
    16 rows, about 32 episodes (768 tokens) per update, 4 epochs, minibatches of about 384
    tokens (16 episodes)."""
    from textgym_agents.backends.sb3.zoo import make_agent

    env_kwargs = {"device": args.device}
    sequence = make_agent(
        "gpt",
        "TextGen-v0",
        n_envs=n,
        env_kwargs=env_kwargs,
        episodes_per_update=2 * n,
        minibatch_episodes=n,
        n_epochs=4,
    )
    sb3 = make_agent(
        "gpt-sb3",
        "TextGen-v0",
        n_envs=n,
        env_kwargs=env_kwargs,
        n_steps=48,
        batch_size=384,
        n_epochs=4,
    )
    tokens = updates * 2 * n * 24
    counted = {}

    def run(name, model):
        def fn():
            start = model.num_timesteps
            model.learn(tokens, **({"reset_num_timesteps": False} if name == "sb3" else {}))
            counted[name] = model.num_timesteps - start

        return fn

    fns = [run("sequence", sequence), run("sb3", sb3)]
    fns[0](), fns[1]()  # warm-up: first forwards, allocator
    t_seq, t_sb3 = best_of(max(1, args.repeats // 2), *fns)
    seq_rate, sb3_rate = counted["sequence"] / t_seq, counted["sb3"] / t_sb3
    return {
        "num_envs": n,
        "sequence_tokens_per_s": seq_rate,
        "sb3_tokens_per_s": sb3_rate,
        "ratio": seq_rate / sb3_rate,
        "target": "> 1 (the point of the sequence-level trainer)",
    }


# ---------------------------------------------------------------- main


def table(results: dict) -> str:
    rows = ["| benchmark | measured | baseline | ratio | target |", "|---|---|---|---|---|"]
    if "single" in results:
        r = results["single"]
        rows.append(
            f"| TextGen step / raw KV-cached forward (batch 1) | {r['env_step_us']:.0f} us "
            f"| {r['raw_forward_us']:.0f} us | {r['ratio']:.3f} | {r['target']} |"
        )
    if "batched" in results:
        for key, r in results["batched"].items():
            if key.startswith("N="):
                rows.append(
                    f"| batched TextGen tokens/s, {key} / HF generate | "
                    f"{r['env_tokens_per_s']:,.0f} | {r['generate_tokens_per_s']:,.0f} | "
                    f"{r['ratio']:.2f} | {results['batched']['target']} |"
                )
    if "grid" in results:
        r = results["grid"]
        frozen = f"{r['frozenlake_steps_per_s']:,.0f}"
        rows.append(
            "| GridWorld-v1 steps/s / FrozenLake-v1 (gym.make) "
            f"| {r['gridworld_steps_per_s']:,.0f} | {frozen} | {r['gridworld_ratio']:.2f} "
            f"| {r['gridworld_target']} |"
        )
        vec_key = next(k for k in r if k.startswith("vector_N="))
        rows.append(
            f"| vector GridWorld steps/s, {vec_key[7:13]} / FrozenLake-v1 | {r[vec_key]:,.0f} "
            f"| {frozen} | {r['vector_ratio']:.1f} | {r['vector_target']} |"
        )
    if "memory" in results:
        r = results["memory"]
        keys = [k for k in r if k.startswith("peak_rss_mb_")]
        rows.append(
            f"| peak RSS, 50,000 / 5,000 batched steps (N={r['num_envs']}) | {r[keys[1]]:.0f} MB "
            f"| {r[keys[0]]:.0f} MB | {r['ratio']:.3f} | {r['target']} |"
        )
    if "training" in results:
        r = results["training"]
        rows.append(
            f"| GPT policy training tokens/s, sequence-level (gpt) / SB3 PPO (gpt-sb3), "
            f"N={r['num_envs']} | {r['sequence_tokens_per_s']:,.0f} | "
            f"{r['sb3_tokens_per_s']:,.0f} | {r['ratio']:.1f} | {r['target']} |"
        )
    if "branch" in results:
        r = results["branch"]
        for name in ("reencode", "replay"):
            rows.append(
                f"| restore a snapshot / {name} the {r['sequence_tokens']}-token sequence "
                f"(batch 1) | {r['restore_us']:,.0f} us | {r[f'{name}_us']:,.0f} us | "
                f"{r[f'ratio_{name}']:.3f} | {r['target']} |"
            )
    # Measured by benchmarks/trl_compare.py (TRL in its own environment): PPO with GAE, and
    # like for like (groups of 4 and RLOO's baseline).
    for key, what in (("trl", "PPO + GAE"), ("trl_rloo", "groups + RLOO")):
        if key in results:
            r = results[key]
            rows.append(
                f"| GPT policy training tokens/s, textgym (SequencePPO, {what}) / TRL "
                f"(RLOOTrainer) | {r['textgym']['tokens_per_s']:,.0f} | "
                f"{r['trl']['tokens_per_s']:,.0f} | {r['ratio']:.2f} | {r['target']} |"
            )
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Args()).items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    args = Args(**vars(parser.parse_args(argv)))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    benches = {
        "single": bench_single,
        "batched": bench_batched,
        "grid": bench_grid,
        "memory": bench_memory,
        "training": bench_training,
        "branch": bench_branch,
    }
    # Figures not measured this time keep their earlier values.
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in args.only.split(","):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = benches[name](args)
        import torch

        results[name]["measured"] = provenance(torch.get_num_threads(), args.device)
    results.pop("machine", None)  # before each entry carried its own ``measured``
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
