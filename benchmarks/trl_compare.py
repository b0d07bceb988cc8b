"""textgym's GPT-policy training against TRL's RLOOTrainer: tokens/s and reward, same task.

    /work/venv-trl/bin/python benchmarks/trl_compare.py               # docs/benchmarks.md's figures
    /work/venv-trl/bin/python benchmarks/trl_compare.py --updates 3   # a quick look
    /work/venv-trl/bin/python benchmarks/trl_compare.py --group-size 4 --advantage rloo

TRL is not a dependency of textgym: install the ``bench`` extra in a separate environment
(``pip install -e .[bench]``, or ``pip install trl==1.16.0`` in a virtualenv made with
``--system-site-packages``). Both trainers run in this one process on the CPU, on one torch
thread, one update each in turn (TRL, textgym, TRL, textgym, ...), so a slow spell of a shared
machine hits both alike; the ratio is what holds, absolute rates drift.

What is the same on both sides: the bundled model (policy and frozen reference), the bundled
prompts, VADER on the continuation as the reward, ``kl_coef`` = ``beta`` with the k1 estimator
summed over the sequence, up to 24 new tokens (EOS ends a completion on both sides; the
tokens actually generated are counted), episodes per update, minibatch size, epochs (PPO
epochs = RLOO's ``num_iterations``), learning rate (constant), Adam epsilon, max grad norm,
clip range, fp32, sampling at temperature 1 without filtering. TRL normalises its advantages
(``normalize_advantages=True``: whitened over the update's sequences) unless textgym's
``normalize_advantage`` is ``"none"``. What differs by default is the algorithm (PPO with a
value head and GAE on per-token rewards, whitened over tokens, against RLOO's leave-one-out
baseline over ``num_generations`` samples of a prompt, a sequence-level ratio and no value
head) and how prompts are drawn; benchmarks/README.md, "textgym against TRL", has the list.

``--group-size k --advantage rloo`` with ``k`` = ``--num_generations`` (4 by default) runs
textgym like for like: `SequencePPO` samples ``k`` texts of each prompt (the env's groups) and
gives every token of a text the RLOO advantage, its KL-regularised return minus the mean
return of the other ``k - 1`` (as TRL's ``reward - beta * kl``), with no value head
(``vf_coef=0``), and neither side normalises it (SequencePPO's default for RLOO, TRL's
default). ``--normalize-advantage batch`` whitens it over sequences on both sides. What still
differs is printed under the table and stored under ``differences`` (see `differences`): the ratio
and clipping are per token in textgym, per sequence in TRL, among others. Either of
``--group-size`` and ``--advantage`` alone works too (``--group-size k``: groups with GAE).
Options take ``-`` or ``_`` alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):  # run from anywhere, without an install
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

import textgym  # noqa: E402, F401  (registers the envs)
from textgym.runfiles import write_json  # noqa: E402


@dataclass
class Args:
    """Benchmark settings (the same on both sides unless the name says otherwise)."""

    updates: int = 20  # collect + update cycles per trainer; the first `warmup` are not timed
    warmup: int = 1  # updates per trainer left out of the timing (first forwards, allocator)
    episodes: int = 64  # episodes (completions) per update
    num_generations: int = 4  # TRL: completions per prompt (RLOO's k); episodes / k prompts
    group_size: int = 1  # textgym: completions per prompt (like for like: num_generations)
    advantage: str = "gae"  # textgym: "gae" (value head) or "rloo" (TRL's baseline, no value head)
    # textgym's normalize_advantage ("": SequencePPO's default, "token" with gae, "none" with
    # rloo); TRL whitens over sequences (normalize_advantages=True) unless it is "none"
    normalize_advantage: str = ""
    minibatch: int = 16  # episodes per gradient step
    epochs: int = 4  # passes over an update's episodes (TRL: num_iterations)
    learning_rate: float = 3e-5  # the zoo's rate for the GPT policy, constant on both sides
    kl_coef: float = 0.05  # textgym's kl_coef = TRL's beta (k1, summed over the sequence)
    max_new_tokens: int = 24  # textgym's max_new_tokens = TRL's max_completion_length
    max_grad_norm: float = 1.0
    clip_range: float = 0.2  # textgym's clip_range = TRL's epsilon
    seed: int = 0
    threads: int = 1  # torch threads (the machine is shared; 0: torch's default)
    eval_samples: int = 2  # completions per bundled prompt after training (0: no evaluation)
    out: str = "benchmarks/results.json"  # merged under `result_key` ("" to skip)
    profile: str = ""  # "textgym" or "trl": cProfile that side's timed updates, print the top


def result_key(args: Args) -> str:
    """The key of ``results.json`` a run goes under: ``"trl"`` for textgym's PPO with GAE
    without groups, ``"trl_rloo"`` for the like-for-like run (groups and RLOO's baseline); a
    ``--normalize-advantage`` given adds its value."""
    norm = f"_{args.normalize_advantage}" if args.normalize_advantage else ""
    if args.advantage == "gae" and args.group_size == 1:
        return "trl" + norm
    group = f"_g{args.group_size}" if args.group_size != 4 else ""
    return f"trl_{args.advantage}{group}{norm}"


# ---------------------------------------------------------------- the two trainers


def make_textgym(args: Args):
    """The zoo's ``gpt`` agent (SequencePPO through the batched TextGen env), one row per
    episode of an update; with ``advantage="rloo"`` without a value head, as TRL's RLOO."""
    from textgym_agents.backends.sb3.zoo import make_agent

    no_value_head = {"vf_coef": 0.0} if args.advantage == "rloo" else {}

    return make_agent(
        "gpt",
        "TextGen-v0",
        seed=args.seed,
        n_envs=args.episodes,
        env_kwargs={"max_new_tokens": args.max_new_tokens, "kl_coef": args.kl_coef},
        episodes_per_update=args.episodes,
        minibatch_episodes=args.minibatch,
        n_epochs=args.epochs,
        learning_rate=args.learning_rate,
        max_grad_norm=args.max_grad_norm,
        clip_range=args.clip_range,
        group_size=args.group_size,
        advantage=args.advantage,
        normalize_advantage=args.normalize_advantage or None,
        **no_value_head,
    )


def make_trl(args: Args, output_dir: str, callback, normalize_advantages: bool):
    """TRL's RLOOTrainer on the same model, prompts and reward, with the matched settings.

    :param normalize_advantages: TRL's option: whiten the advantages over the update's
        sequences (False: TRL's default, RLOO's advantages as they are).
    """
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    from textgym.lm import BUNDLED_MODEL, load_tokenizer
    from textgym.prompts import load_prompts
    from textgym.rewards import VaderSentiment

    rm = VaderSentiment()

    def vader(prompts, completions, **_):
        return rm.score(prompts, completions).tolist()

    if args.episodes % args.minibatch or args.episodes % args.num_generations:
        raise ValueError(
            f"episodes={args.episodes} must be a multiple of minibatch={args.minibatch} and "
            f"of num_generations={args.num_generations}"
        )
    config = RLOOConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,  # RLOOConfig's default is bf16; textgym trains in fp32
        fp16=False,
        gradient_checkpointing=False,  # RLOOConfig's default is on; it only saves memory
        model_init_kwargs={"dtype": torch.float32},
        disable_dropout=True,  # the bundled model has none anyway
        # One update: `episodes` completions (episodes / k prompts, k each), split into
        # minibatches of `minibatch`, each reused `epochs` times (num_iterations).
        per_device_train_batch_size=args.minibatch,
        gradient_accumulation_steps=1,
        steps_per_generation=args.episodes // args.minibatch,
        num_generations=args.num_generations,
        num_iterations=args.epochs,
        max_steps=args.updates * steps_per_update(args),
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        use_vllm=False,
        beta=args.kl_coef,
        epsilon=args.clip_range,
        normalize_advantages=normalize_advantages,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,  # AdamW without decay = SequencePPO's Adam
        adam_epsilon=1e-5,  # SequencePPO's (SB3's) Adam epsilon
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        data_seed=args.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=10**9,  # no logging I/O inside the timed loop
        disable_tqdm=True,
        dataloader_num_workers=0,
        log_completions=False,
    )
    dataset = Dataset.from_dict({"prompt": load_prompts(None)})
    trainer = _trainer_class(RLOOTrainer)(
        model=str(BUNDLED_MODEL),
        reward_funcs=vader,
        args=config,
        train_dataset=dataset,
        processing_class=load_tokenizer(None),
        callbacks=[callback],
    )
    return trainer


def differences(args: Args, normalisation: str) -> list[str]:
    """What still differs between the two sides, given the settings and textgym's resolved
    ``normalize_advantage`` (TRL 1.16.0's ``RLOOTrainer``, read from its source)."""
    found = []
    if args.advantage == "gae":
        found.append(
            "algorithm: textgym runs PPO with a value head (vf_coef 0.1) and GAE (lambda 0.95, "
            "gamma 1) on per-token rewards; TRL runs RLOO's leave-one-out baseline, no value head"
        )
    if args.group_size != args.num_generations:
        found.append(
            f"samples per prompt: textgym {args.group_size} (group_size), TRL "
            f"{args.num_generations} (num_generations)"
        )
    found.append(
        "ratio and clipping: textgym's ratio is per token and clipped per token; TRL's is the "
        "sequence's (exp of the summed log-prob change) and clipped per sequence"
    )
    found.append(
        "loss average: textgym averages the clipped objective over a minibatch's tokens (a "
        "longer text weighs more); TRL over its sequences"
    )
    normalised = {
        "token": "textgym whitens the advantages over the update's tokens, TRL over its sequences",
        "batch": "both whiten over the update's sequences; TRL adds 1e-4 to the std, textgym 1e-8",
        "group": "textgym divides each advantage by its group's return std (GRPO's scale), TRL "
        "whitens over the update's sequences",
    }
    if normalisation in normalised:
        found.append(f"advantage normalisation: {normalised[normalisation]}")
    found += [
        "prompts: the env draws each group's prompt at random (with replacement); TRL shuffles "
        "the prompt set",
        "minibatches: TRL reuses one split for its num_iterations passes; SequencePPO "
        "reshuffles every epoch",
        "old log-probs: TRL recomputes them in a forward pass after generation (its KL uses "
        "them too); SequencePPO keeps those of the acting forward",
    ]
    return found


def steps_per_update(args: Args) -> int:
    """Gradient steps per update: minibatches per update x epochs (the same on both sides)."""
    return args.episodes // args.minibatch * args.epochs


def _trainer_class(base):
    class Recorded(base):
        """RLOOTrainer that records, per generation batch, what the figures need: tokens
        generated, mean RM score, mean KL per sequence, and the rollout's wall time."""

        batches: list[dict] = []

        def _generate_and_score_completions(self, inputs):
            start = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            metrics = self._metrics["train"]
            tokens = int(out["completion_mask"].sum())
            n = int(out["completion_mask"].shape[0])
            # TRL logs the KL per token (sum over the batch / tokens): x tokens / n = per sequence.
            kl = metrics["kl"][-1] * tokens / n if self.beta else 0.0
            self.batches.append(
                {
                    "tokens": tokens,
                    "episode_tokens": tokens,
                    "episodes": n,
                    "rm_score": metrics["reward"][-1],
                    "kl": kl,
                    "return": metrics["reward"][-1] - self.beta * kl,
                    "rollout_s": time.perf_counter() - start,
                }
            )
            return out

    Recorded.batches = []
    return Recorded


# ---------------------------------------------------------------- the run


class _Timer:
    """The alternation: TRL's trainer drives, and after each of its updates this callback
    runs one textgym update. Each side's wall time is taken around its own work only; with a
    profiler, TRL's timed updates (everything between two callbacks) are profiled."""

    def __init__(self, steps_per_update: int, other, profiler=None, warmup: int = 0):
        from transformers import TrainerCallback

        timer = self

        def profile(on: bool) -> None:
            if profiler is not None and len(timer.trl_seconds) >= warmup:
                profiler.enable() if on else profiler.disable()

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.mark = time.perf_counter()
                profile(True)

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % steps_per_update == 0:
                    profile(False)
                    timer.trl_seconds.append(time.perf_counter() - timer.mark)
                    other()
                    timer.mark = time.perf_counter()
                    if state.global_step < state.max_steps:
                        profile(True)

        self.callback = Callback()
        self.trl_seconds: list[float] = []
        self.mark = 0.0


def run(args: Args) -> dict:
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("trl").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    profiler = _profiler(args.profile)

    agent = make_textgym(args)
    textgym_updates: list[dict] = []

    def record(_agent, stats) -> None:
        textgym_updates[-1].update(
            rm_score=float(np.mean([e.rm_score for e in stats.episodes])),
            kl=float(np.mean([e.kl for e in stats.episodes])),
            episodes=len(stats.episodes),
            episode_tokens=stats.tokens,  # of the finished episodes (`tokens`: all generated)
            rollout_s=stats.collect_seconds,
            **{"return": float(np.mean([e.episode_return for e in stats.episodes]))},
        )

    def textgym_update() -> None:
        timed = len(textgym_updates) >= args.warmup and args.profile == "textgym"
        before = agent.num_timesteps
        textgym_updates.append({})
        if timed:
            profiler.enable()
        start = time.perf_counter()
        agent.learn(1, callback=record)  # 1 token to go: exactly one collect + update
        seconds = time.perf_counter() - start
        if timed:
            profiler.disable()
        textgym_updates[-1].update(tokens=agent.num_timesteps - before, seconds=seconds)
        ours, theirs = textgym_updates[-1], type(trainer).batches[-1]
        trl_rate = theirs["tokens"] / timer.trl_seconds[-1]
        print(
            f"update {len(textgym_updates)}/{args.updates}: tokens/s textgym "
            f"{ours['tokens'] / seconds:,.0f}, TRL {trl_rate:,.0f}; "
            f"return textgym {ours['return']:+.3f}, TRL {theirs['return']:+.3f}",
            file=sys.stderr,
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trl_profiler = profiler if args.profile == "trl" else None
        timer = _Timer(steps_per_update(args), textgym_update, trl_profiler, args.warmup)
        trainer = make_trl(args, tmp, timer.callback, agent.normalize_advantage != "none")
        trainer.remove_callback(PrinterCallback)  # no log lines inside the timed loop
        trainer.train()
    trl_updates = [
        {**batch, "seconds": seconds}
        for batch, seconds in zip(type(trainer).batches, timer.trl_seconds, strict=True)
    ]
    if profiler is not None:
        _print_profile(profiler, args.profile)

    result = summarise(args, textgym_updates, trl_updates)
    result["normalize_advantage"] = {
        "textgym": agent.normalize_advantage,
        "trl": trainer.args.normalize_advantages,
    }
    result["differences"] = differences(args, agent.normalize_advantage)
    if args.eval_samples:
        result["after_training"] = evaluate_both(args, agent.policy.trunk, trainer.model)
    result["settings"] = asdict(args)
    result["measured"] = provenance(
        torch.get_num_threads(), distributions=("trl", "accelerate", "datasets")
    )
    return result


def summarise(args: Args, textgym_updates: list[dict], trl_updates: list[dict]) -> dict:
    """Tokens/s over the timed updates, per-pair ratios, training rewards per update."""
    timed = slice(args.warmup, None)
    keys = ("rm_score", "kl", "return")

    def side(updates: list[dict]) -> dict:
        tokens = sum(u["tokens"] for u in updates[timed])
        seconds = sum(u["seconds"] for u in updates[timed])
        rollout = sum(u["rollout_s"] for u in updates[timed])
        last = updates[-min(3, len(updates)) :]
        return {
            "tokens_per_s": tokens / seconds,
            "timed_tokens": tokens,
            "timed_seconds": seconds,
            "rollout_share": rollout / seconds,
            "episodes": sum(u["episodes"] for u in updates),
            "tokens": sum(u["tokens"] for u in updates),
            "mean_completion_tokens": sum(u["episode_tokens"] for u in updates)
            / sum(u["episodes"] for u in updates),
            # the training batches' means: the first update, and the last three updates
            "first_update": {k: updates[0][k] for k in keys},
            "last_updates": {k: float(np.mean([u[k] for u in last])) for k in keys},
            "per_update": updates,
        }

    ours, theirs = side(textgym_updates), side(trl_updates)
    pairs = [
        (a["tokens"] / a["seconds"]) / (b["tokens"] / b["seconds"])
        for a, b in zip(textgym_updates[timed], trl_updates[timed])
    ]
    return {
        "textgym": ours,
        "trl": theirs,
        "ratio": ours["tokens_per_s"] / theirs["tokens_per_s"],
        "pair_ratios_median": float(np.median(pairs)),
        "pair_ratios_range": [float(min(pairs)), float(max(pairs))],
        "target": ">= 1.2",
    }


# ---------------------------------------------------------------- one evaluation for both


@torch.no_grad()
def evaluate(lm, reference, tokenizer, rm, args: Args, seed: int = 1234) -> dict:
    """Sample ``eval_samples`` completions per bundled prompt from ``lm`` (temperature 1, no
    filtering, up to ``max_new_tokens``, EOS ends one), score them with VADER and the k1 KL
    against ``reference`` summed over the completion. Same code and same random numbers for
    every policy, so the policies are compared on equal terms."""
    from textgym.prompts import load_prompts

    prompts = load_prompts(None) * args.eval_samples
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, encoded))
    ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :], mask[i, width - len(e) :] = torch.tensor(e), 1
    was_training = lm.training
    lm.eval()
    torch.manual_seed(seed)
    out = lm.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=args.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    completion = out[:, width:]
    eos = completion == tokenizer.eos_token_id
    ends = torch.where(eos.any(1), eos.int().argmax(1) + 1, completion.shape[1])
    comp_mask = (torch.arange(completion.shape[1]) < ends[:, None]).long()
    texts = tokenizer.batch_decode(
        [c[: int(n)] for c, n in zip(completion, ends)], skip_special_tokens=True
    )
    scores = rm.score(prompts, texts)

    full = torch.cat([ids, completion * comp_mask], 1)
    full_mask = torch.cat([mask, comp_mask], 1)
    positions = (full_mask.cumsum(1) - 1).clamp(min=0)

    def logprobs(model):
        logits = model(input_ids=full, attention_mask=full_mask, position_ids=positions).logits
        logp = torch.log_softmax(logits[:, width - 1 : -1].float(), -1)
        return logp.gather(2, completion[..., None]).squeeze(-1)

    kl = ((logprobs(lm) - logprobs(reference)) * comp_mask).sum(1).numpy()
    lm.train(was_training)
    returns = scores - args.kl_coef * kl
    return {
        "episodes": len(prompts),
        "rm_score": float(scores.mean()),
        "positive_share": float((scores > 0.05).mean()),
        "kl": float(kl.mean()),
        "return": float(returns.mean()),
        "return_sem": float(returns.std() / np.sqrt(len(returns))),
        "mean_completion_tokens": float(ends.float().mean()),
    }


def evaluate_both(args: Args, textgym_lm, trl_lm) -> dict:
    from textgym.lm import load_causal_lm, load_tokenizer
    from textgym.rewards import VaderSentiment

    reference, tokenizer, rm = load_causal_lm(None), load_tokenizer(None), VaderSentiment()
    return {
        name: evaluate(lm, reference, tokenizer, rm, args)
        for name, lm in (("reference", reference), ("textgym", textgym_lm), ("trl", trl_lm))
    }


# ---------------------------------------------------------------- profiling, bookkeeping


def _profiler(which: str):
    if which not in ("", "textgym", "trl"):
        raise ValueError(f"--profile={which!r}: expected 'textgym', 'trl' or ''")
    if not which:
        return None
    import cProfile

    return cProfile.Profile()


def _print_profile(profiler, which: str) -> None:
    import pstats

    print(f"\n--- cProfile of {which}'s timed updates (cumulative) ---", file=sys.stderr)
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    print(f"--- {which}: own time (tottime) ---", file=sys.stderr)
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)


def report(result: dict) -> str:
    ours, theirs = result["textgym"], result["trl"]
    ev = result.get("after_training")
    n_ours, n_theirs = ours["episodes"], theirs["episodes"]
    lines = [
        "| | textgym (SequencePPO) | TRL (RLOOTrainer) | textgym / TRL |",
        "|---|---|---|---|",
        f"| training tokens/s (rollout + update) | {ours['tokens_per_s']:,.0f} "
        f"| {theirs['tokens_per_s']:,.0f} | **{result['ratio']:.2f}** "
        f"(pairs: median {result['pair_ratios_median']:.2f}, "
        f"{result['pair_ratios_range'][0]:.2f}-{result['pair_ratios_range'][1]:.2f}) |",
        f"| share of the time in the rollout | {ours['rollout_share']:.0%} "
        f"| {theirs['rollout_share']:.0%} | |",
        f"| episodes / generated tokens | {n_ours:,} / {ours['tokens']:,} "
        f"| {n_theirs:,} / {theirs['tokens']:,} | |",
        f"| mean completion length (tokens) | {ours['mean_completion_tokens']:.1f} "
        f"| {theirs['mean_completion_tokens']:.1f} | |",
    ]
    for key, label in (("first_update", "first update"), ("last_updates", "last 3 updates")):
        a, b = ours[key], theirs[key]
        lines.append(
            f"| training batch, {label}: RM / KL / return | {a['rm_score']:+.3f} / "
            f"{a['kl']:.2f} / {a['return']:+.3f} | {b['rm_score']:+.3f} / {b['kl']:.2f} / "
            f"{b['return']:+.3f} | |"
        )
    if ev:
        lines.append(
            f"| after training, {ev['textgym']['episodes']} samples: RM / positive / KL / "
            f"return | {_ev(ev['textgym'])} | {_ev(ev['trl'])} | reference: "
            f"{_ev(ev['reference'])} |"
        )
    norm = result.get("normalize_advantage")
    if norm:
        lines.append(
            f"\nAdvantage normalisation: textgym normalize_advantage={norm['textgym']!r}, "
            f"TRL normalize_advantages={norm['trl']}."
        )
    lines.append("\nWhat still differs:")
    lines += [f"- {line}" for line in result.get("differences", [])]
    return "\n".join(lines)


def _ev(r: dict) -> str:
    return (
        f"{r['rm_score']:+.3f} / {r['positive_share']:.0%} / {r['kl']:.2f} / "
        f"{r['return']:+.3f} ± {r['return_sem']:.3f}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Args()).items():
        spellings = dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))
        parser.add_argument(*spellings, type=type(default), default=default)
    args = Args(**vars(parser.parse_args(argv)))
    if not 0 <= args.warmup < args.updates:
        parser.error(f"--warmup={args.warmup} must be >= 0 and below --updates={args.updates}")
    try:
        import trl  # noqa: F401
    except ImportError:
        sys.exit(
            "trl is not installed: pip install -e '.[bench]' (in a separate environment), then "
            "run this script with that environment's python"
        )
    start = time.perf_counter()
    result = run(args)
    result["wall_s"] = time.perf_counter() - start
    print(report(result))
    if args.out:
        out = Path(args.out)
        results = json.loads(out.read_text()) if out.exists() else {}
        results[result_key(args)] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, results)
        print(f"wrote {args.out} (key {result_key(args)!r})", file=sys.stderr)


if __name__ == "__main__":
    main()
