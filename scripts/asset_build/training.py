"""Training the tiny GPT-2: documents packed into blocks, the learning-rate schedule, the
loop under a wall-clock or step budget, and the held-out perplexity."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

# ---------------------------------------------------------------------------
# Model training
# ---------------------------------------------------------------------------


def encode_docs(tokenizer, docs: Sequence[str], max_length: int) -> list[list[int]]:
    """``<|bos|> doc <|endoftext|>`` token ids (the post-processor adds BOS)."""
    encodings = tokenizer.backend_tokenizer.encode_batch(list(docs))
    eos = tokenizer.eos_token_id
    return [[*enc.ids[: max_length - 1], eos] for enc in encodings]


def pack_blocks(seqs: Sequence[list[int]], block: int, pad_id: int, bos_id: int):
    """Greedily pack whole documents into ``block``-token rows (right padded).

    Returns ``(input_ids, labels)``; labels are -100 on padding and on BOS
    (which is never a prediction target: every text starts with it).
    """
    import torch

    rows: list[list[int]] = []
    current: list[int] = []
    for seq in seqs:
        if current and len(current) + len(seq) > block:
            rows.append(current)
            current = []
        current = current + seq
    if current:
        rows.append(current)
    input_ids = torch.full((len(rows), block), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    labels = input_ids.clone()
    labels[(input_ids == pad_id) | (input_ids == bos_id)] = -100
    return input_ids, labels


def lr_at(progress: float, step: int, peak: float, warmup: int, floor: float) -> float:
    """Linear warmup (in steps), then cosine decay to ``floor * peak`` (in progress)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return peak * (floor + (1.0 - floor) * cosine)


def train_model(model, input_ids, labels, args) -> dict:
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    generator = torch.Generator().manual_seed(args.seed)
    n_rows = input_ids.shape[0]
    order = torch.randperm(n_rows, generator=generator)
    cursor, epoch = 0, 0
    budget = args.minutes * 60.0
    start = time.time()
    step, tokens, ema = 0, 0, None
    model.train()
    while True:
        elapsed = time.time() - start
        progress = step / args.steps if args.steps else elapsed / budget
        if progress >= 1.0:
            break
        if cursor + args.batch_size > n_rows:
            order = torch.randperm(n_rows, generator=generator)
            cursor, epoch = 0, epoch + 1
        idx = order[cursor : cursor + args.batch_size]
        cursor += args.batch_size
        lr = lr_at(progress, step, args.lr, args.warmup, args.lr_floor)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # An all-ones mask is enough (and keeps the fast causal path): padding only
        # trails each row, so causal attention never lets a real token see it, and
        # its labels are -100.
        batch = input_ids[idx]
        loss = model(
            input_ids=batch, attention_mask=torch.ones_like(batch), labels=labels[idx]
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens += int((labels[idx] != -100).sum())
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % args.log_every == 0:
            rate = tokens / (time.time() - start)
            print(
                f"step {step:5d}  loss {ema:.3f}  lr {lr:.2e}  epoch {epoch}  "
                f"{time.time() - start:6.0f}s  {rate:,.0f} tok/s",
                flush=True,
            )
    seconds = time.time() - start
    return {
        "steps": step,
        "target_tokens": tokens,
        "epochs": round(epoch + cursor / n_rows, 3),
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / max(seconds, 1e-9)),
        "final_train_loss_ema": round(float(ema), 4) if ema is not None else None,
    }


def heldout_perplexity(model, seqs: Sequence[list[int]], pad_id: int, batch_size: int = 64):
    """Per-token perplexity over held-out docs (each scored on its own)."""
    import torch

    model.eval()
    total_nll, total_tokens = 0.0, 0
    ordered = sorted(seqs, key=len)
    with torch.no_grad():
        for i in range(0, len(ordered), batch_size):
            batch = ordered[i : i + batch_size]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, s in enumerate(batch):
                ids[j, : len(s)] = torch.tensor(s)
                mask[j, : len(s)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                targets.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total_nll += float(nll)
            total_tokens += int((targets != -100).sum())
    return math.exp(total_nll / total_tokens), total_tokens
