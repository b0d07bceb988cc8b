#!/usr/bin/env python
"""Build textgym's bundled default task assets, reproducibly, with one script.

The default task (continue a short movie-review opening, be rewarded by a
sentiment scorer) needs a small causal language model, its tokenizer and a set
of prompts.  Nothing can be downloaded at build or test time, so all of them are
built from scratch here:

1. a synthetic corpus of short English movie reviews (1-3 sentences, 15-45
   words) generated from a compositional grammar, with positive, negative and
   neutral/mixed reviews in equal thirds.  It lives in memory only (use
   ``--dump-corpus /tmp/...`` to inspect it) and is never written into the repo;
2. ``prompts.txt``: sentiment-neutral review openings that stop mid-sentence.
   They are built from *held-out* slot fillers: combinations of known words the
   corpus never uses (names, characters, topics, viewing contexts), genres and
   relatives in frames the corpus never puts them in, and opening phrases the
   corpus never uses at all.  Every prompt is checked to occur nowhere in the
   corpus (case-insensitive substring search) and to contain no word VADER
   scores, so the model has to generalise, not recite, and the continuation
   alone decides the sentiment;
3. a byte-level BPE tokenizer (``tokenizers``) with distinct ``<|bos|>``,
   ``<|endoftext|>`` (EOS) and ``<|pad|>`` tokens whose post-processor prepends
   ``<|bos|>`` to every encoded text, saved as a ``PreTrainedTokenizerFast``;
4. a tiny GPT-2 (about 2.3M parameters) trained on ``<|bos|> review
   <|endoftext|>`` documents packed into 128-token blocks, under a wall-clock
   budget on CPU;
5. ``REPORT.json``: corpus statistics, VADER class means, held-out perplexity
   and sampled continuations of the bundled prompts with their VADER scores.

Output layout (``--out``, default ``textgym/assets``)::

    model/      config.json, generation_config.json, model.safetensors,
                tokenizer.json, tokenizer_config.json (+ special_tokens_map.json)
    prompts.txt
    REPORT.json

The corpus, prompts and tokenizer depend only on ``--seed`` (and the sizes) and
are rebuilt byte for byte.  Training stops after ``--minutes`` of wall-clock
time, with the cosine learning-rate schedule driven by elapsed time, so the
number of steps (recorded in ``REPORT.json``) and hence the weights depend on
the machine's speed.  ``--steps N`` instead trains exactly N steps with a
step-driven schedule, which makes the weights bit-reproducible on CPU for the
same seed and thread count.

The parts live in ``scripts/asset_build/``, a module a job: ``vocabulary`` and ``grammar``
(the corpus), ``prompts``, ``tokenizer``, ``training`` and ``report``; this script runs them
in order (``tests/test_build_assets.py`` checks that a small build gives the same bytes).

Usage::

    python scripts/build_assets.py                      # full build, ~15 min
    python scripts/build_assets.py --minutes 1 --out /tmp/assets   # smoke run
    python scripts/build_assets.py --task exact         # TextGenExact-v0's, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections.abc import Sequence
from pathlib import Path

from asset_build.exact import build_exact
from asset_build.grammar import build_corpus, split_fillers
from asset_build.prompts import build_prompts
from asset_build.report import check_saved_assets, sample_continuations, vader_summary
from asset_build.tokenizer import train_tokenizer
from asset_build.training import encode_docs, heldout_perplexity, pack_blocks, train_model
from asset_build.vocabulary import LABELS

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "textgym" / "assets",
        help="output folder (default: textgym/assets in this checkout)",
    )
    p.add_argument(
        "--task",
        choices=["default", "exact"],
        default="default",
        help="default: TextGen-v0's model, tokenizer, prompts and report (OUT/model, ...); "
        "exact: TextGenExact-v0's tokenizer and model (OUT/exact), seconds",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--minutes",
        type=float,
        default=12.0,
        help="wall-clock training budget in minutes (default 12)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="train exactly this many steps instead of a time budget",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--n-docs", type=int, default=100_000)
    p.add_argument("--heldout-frac", type=float, default=0.02)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="resid/embd/attn dropout (default 0: training is under one epoch)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="rows of --block-size tokens")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-floor", type=float, default=0.1, help="final lr as a fraction of --lr")
    p.add_argument("--warmup", type=int, default=60, help="warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-prompts", type=int, default=200)
    p.add_argument("--samples-per-prompt", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument(
        "--dump-corpus",
        type=Path,
        default=None,
        help="also write the corpus (label<TAB>text) here, e.g. under /tmp",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.task == "exact":
        report = build_exact(args.out.resolve() / "exact", args.seed, args.steps or 400)
        print(json.dumps(report, indent=2))
        return report
    import transformers
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    t0 = time.time()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    analyzer = SentimentIntensityAnalyzer()
    out = args.out.resolve()
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)

    # 1. corpus ---------------------------------------------------------------
    train_fillers, held_fillers = split_fillers(args.seed)
    docs, labels, n_sentences = build_corpus(rng, args.n_docs, train_fillers)
    if args.dump_corpus:
        args.dump_corpus.write_text(
            "".join(f"{lab}\t{d}\n" for lab, d in zip(labels, docs, strict=True))
        )
    words = [len(d.split()) for d in docs]
    class_vader = {}
    for label in LABELS:
        scores = [
            analyzer.polarity_scores(d)["compound"]
            for d, lab in zip(docs, labels, strict=True)
            if lab == label
        ]
        class_vader[label] = vader_summary(scores)
    corpus_info = {
        "documents": len(docs),
        "distinct_documents": len(set(docs)),
        "distinct_sentences": n_sentences,
        "label_counts": {lab: labels.count(lab) for lab in LABELS},
        "words_per_doc": {
            "min": min(words),
            "mean": round(sum(words) / len(words), 2),
            "max": max(words),
        },
        "vader_by_class": class_vader,
        "examples": {
            lab: next(d for d, lb in zip(docs, labels, strict=True) if lb == lab) for lab in LABELS
        },
    }
    print(json.dumps(corpus_info, indent=2), flush=True)

    # 2. prompts ---------------------------------------------------------------
    prompts, prompt_stats = build_prompts(rng, docs, held_fillers, analyzer)
    (out / "prompts.txt").write_text("\n".join(prompts) + "\n")
    print(f"prompts: {prompt_stats}", flush=True)

    # 3. tokenizer -------------------------------------------------------------
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_heldout = max(1, round(len(docs) * args.heldout_frac))
    heldout_docs = [docs[i] for i in order[:n_heldout]]
    train_docs = [docs[i] for i in order[n_heldout:]]
    tokenizer = train_tokenizer(train_docs, args.vocab_size, args.block_size)
    tokenizer.save_pretrained(model_dir)
    # transformers 5 records its own class name ("TokenizersBackend"); the generic
    # name loads with both transformers 4.x and 5.x.
    tok_config_path = model_dir / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config_path.write_text(json.dumps(tok_config, indent=2) + "\n")
    print(f"tokenizer: vocab {len(tokenizer)}", flush=True)

    # 4. model -----------------------------------------------------------------
    train_seqs = encode_docs(tokenizer, train_docs, args.block_size)
    heldout_seqs = encode_docs(tokenizer, heldout_docs, args.block_size)
    input_ids, target_ids = pack_blocks(
        train_seqs, args.block_size, tokenizer.pad_token_id, tokenizer.bos_token_id
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.block_size,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {n_params:,} parameters; {input_ids.shape[0]:,} packed rows of "
        f"{args.block_size}; {sum(map(len, train_seqs)):,} train tokens",
        flush=True,
    )
    training = train_model(model, input_ids, target_ids, args)
    ppl, heldout_tokens = heldout_perplexity(model, heldout_seqs, tokenizer.pad_token_id)
    print(f"held-out perplexity {ppl:.3f} over {heldout_tokens:,} tokens", flush=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=args.max_new_tokens,
    )
    model.save_pretrained(model_dir, safe_serialization=True)
    for path in model_dir.iterdir():
        path.chmod(0o644)  # safetensors may be written owner-only

    # 5. evaluate the saved assets ----------------------------------------------
    model, tokenizer, token_ids = check_saved_assets(model_dir)
    eval_prompts = prompts[: args.eval_prompts]
    samples = sample_continuations(
        model, tokenizer, eval_prompts, args.samples_per_prompt, args.max_new_tokens, args.seed
    )
    scores = [analyzer.polarity_scores(cont)["compound"] for _, cont in samples]
    shown = [
        {"prompt": p, "continuation": c, "vader": analyzer.polarity_scores(c)["compound"]}
        for p, c in samples[:: args.samples_per_prompt][:5]
    ]
    files = {f.name: f.stat().st_size for f in sorted(model_dir.iterdir()) if f.is_file()}
    report = {
        "command": "python scripts/build_assets.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in sorted(vars(args).items())
            if k not in {"out", "dump_corpus"}
        ),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "corpus": corpus_info,
        "prompts": {
            **prompt_stats,
            "file": "prompts.txt",
            "vader_all_neutral": all(analyzer.polarity_scores(p)["neu"] == 1.0 for p in prompts),
        },
        "tokenizer": {
            "vocab_size": len(tokenizer),
            "type": "byte-level BPE",
            "model_max_length": tokenizer.model_max_length,
            **token_ids,
        },
        "model": {
            "parameters": n_params,
            "n_embd": args.n_embd,
            "n_layer": args.n_layer,
            "n_head": args.n_head,
            "n_positions": args.block_size,
            "dropout": args.dropout,
            "files_bytes": files,
            "size_on_disk_bytes": sum(files.values()),
        },
        "training": {
            **training,
            "threads": args.threads,
            "batch_rows": args.batch_size,
            "block_size": args.block_size,
            "lr": args.lr,
            "warmup": args.warmup,
            "train_docs": len(train_docs),
            "heldout_docs": len(heldout_docs),
        },
        "heldout": {"perplexity": round(ppl, 4), "tokens": heldout_tokens},
        "reference_continuations": {
            "prompts": len(eval_prompts),
            "samples_per_prompt": args.samples_per_prompt,
            "max_new_tokens": args.max_new_tokens,
            "sampling": "temperature 1.0, no top-k/top-p",
            "vader_compound_of_continuation": vader_summary(scores),
            "examples": shown,
        },
        "build_seconds": round(time.time() - t0, 1),
    }
    (out / "REPORT.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {k: report[k] for k in ("heldout", "reference_continuations", "model")}, indent=2
        )
    )
    return report


if __name__ == "__main__":
    main()
