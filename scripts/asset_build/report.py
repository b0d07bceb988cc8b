"""Checks and figures of the saved assets for REPORT.json: sampled continuations of the
prompts, their VADER scores, and the assets loaded back as textgym loads them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# ---------------------------------------------------------------------------
# Evaluation of the saved assets
# ---------------------------------------------------------------------------


def sample_continuations(model, tokenizer, prompts, per_prompt, max_new_tokens, seed):
    """Pure ancestral samples (temperature 1, no top-k/top-p) of each prompt."""
    import torch

    torch.manual_seed(seed)
    model.eval()
    out: list[tuple[str, str]] = []
    with torch.no_grad():
        for prompt in prompts:
            enc = tokenizer(prompt, return_tensors="pt")
            generated = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=per_prompt,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            n = enc["input_ids"].shape[1]
            for row in generated:
                out.append((prompt, tokenizer.decode(row[n:], skip_special_tokens=True)))
    return out


def vader_summary(scores: Sequence[float]) -> dict:
    n = max(len(scores), 1)
    return {
        "n": len(scores),
        "mean": round(sum(scores) / n, 4),
        "share_positive": round(sum(s > 0.05 for s in scores) / n, 4),
        "share_negative": round(sum(s < -0.05 for s in scores) / n, 4),
    }


def check_saved_assets(model_dir: Path) -> tuple[object, object, dict]:
    """Reload the saved model/tokenizer with the Auto classes and sanity-check them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer("The movie")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id, ids
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    text = "The acting was wonderful, but the plot felt thin."
    round_trip = tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)
    assert round_trip == text, round_trip
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.bos_token_id == tokenizer.bos_token_id
    return (
        model,
        tokenizer,
        {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "example_encoding_of_The_movie": ids,
        },
    )
