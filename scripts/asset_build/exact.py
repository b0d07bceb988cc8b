"""The exact task's assets (`TextGenExact-v0`): a word-level tokenizer of 12 tokens and a tiny
GPT-2 trained on short sentiment phrases, small enough that every sequence the env can
generate is enumerated (see `textgym.exact`).

The corpus is ``SUBJECT PHRASE [PHRASE [PHRASE]]``, a phrase being an optional ``not`` or
``very`` before a sentiment word (`textgym.rewards.lexicon`), so the reference writes mixed
reviews, and the training makes its next-token distributions far from uniform. Everything is
seeded: the same seed and thread count give the same bytes on one machine, and weights equal
to float32 rounding on another.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from asset_build.tokenizer import BOS, EOS, PAD, fast_tokenizer
from textgym.rewards.lexicon import INTENSIFIER, NEGATION, SENTIMENT, SUBJECTS

UNK = "<|unk|>"
SPECIAL = (PAD, BOS, EOS, UNK)
WORDS = (*SUBJECTS, NEGATION, INTENSIFIER, *SENTIMENT)
MAX_LENGTH = 16  # positions: the env's prompts and continuations are a few tokens


def phrase(rng: random.Random) -> list[str]:
    modifier = rng.choices([[], [NEGATION], [INTENSIFIER]], weights=[6, 2, 2])[0]
    return [*modifier, rng.choice(sorted(SENTIMENT))]


def build_corpus(rng: random.Random, n_docs: int) -> list[str]:
    docs = []
    for _ in range(n_docs):
        words = [rng.choice(SUBJECTS)]
        for _ in range(rng.choices([1, 2, 3], weights=[10, 7, 3])[0]):
            words += phrase(rng)
        docs.append(" ".join(words))
    return docs


def build_tokenizer():
    """Word level: one id per word, BOS prepended to every encoded text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate((*SPECIAL, *WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, vocab[BOS])]
    )
    return fast_tokenizer(tok, MAX_LENGTH, unk_token=UNK)


def build_exact(out: Path, seed: int = 0, steps: int = 400, n_docs: int = 4000) -> dict:
    """Write the tokenizer and the trained model to ``out`` (an HF model directory) and
    return the build's figures (also written to ``out/REPORT.json``)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"  # the generic class loads on 4.x and 5.x
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")

    docs = build_corpus(rng, n_docs)
    rows = [tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id] for doc in docs]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
    labels = input_ids.clone()
    labels[(input_ids == tokenizer.pad_token_id) | (input_ids == tokenizer.bos_token_id)] = -100

    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=MAX_LENGTH,
            n_embd=32,
            n_layer=2,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # Trained in float64 and saved in float32, so that CPUs whose float32 kernels round
    # differently still save (nearly always) the same weights.
    model.double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        batch = torch.randint(len(rows), (64,), generator=generator)
        loss = model(input_ids=input_ids[batch], labels=labels[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval().float()
    model.save_pretrained(out, safe_serialization=True)
    for path in out.iterdir():
        path.chmod(0o644)  # safetensors may be written owner-only
    report = {
        "corpus": {"documents": len(docs), "examples": docs[:5]},
        "tokenizer": {"vocab": [*SPECIAL, *WORDS]},
        "model": {"parameters": sum(p.numel() for p in model.parameters())},
        "training": {
            "steps": steps,
            "batch": 64,
            "seed": seed,
            "first_loss": round(losses[0], 4),
            "final_loss": round(sum(losses[-20:]) / 20, 4),
        },
    }
    (out / "REPORT.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
