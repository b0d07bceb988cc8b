"""`IncrementalLM`'s cache operations: shared prompt encodings, row copies, snapshots.

Every check compares the cached logits with a full forward over the row's whole sequence."""

from __future__ import annotations

import pytest
import torch

from textgym.kv_cache import IncrementalLM
from textgym.lm import load_causal_lm

PAD = 0


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request, tiny_gpt2, tiny_llama):
    return load_causal_lm(tiny_gpt2 if request.param == "gpt2" else tiny_llama, device="cpu")


def full(model, sequence: list[int]) -> torch.Tensor:
    """The next-token logits after ``sequence``, from one forward over all of it."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([sequence])).logits[0, -1].float()


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_rows_with_the_same_prompt_share_one_encoding(model, monkeypatch):
    lm = IncrementalLM(model, 5, PAD)
    prompts = [[5, 6, 7], [9, 10], [5, 6, 7], [5, 6, 7], [9, 10]]
    batches = []
    forward = model.forward
    monkeypatch.setattr(
        model, "forward", lambda **kw: batches.append(kw["input_ids"].shape[0]) or forward(**kw)
    )
    logits = lm.start(range(5), prompts)
    assert batches == [2]  # two distinct prompts, one forward
    for row, prompt in enumerate(prompts):
        assert close(logits[row], full(model, prompt))
    # Restarting rows mid-run share too, and every row goes on exactly.
    lm.advance(torch.tensor([11, 12, 13, 14, 15]))
    logits = lm.start([1, 3], [[20, 21, 22, 23], [20, 21, 22, 23]])
    assert batches[-1] == 1
    tokens = torch.tensor([30, 31, 32, 33, 34])
    logits = lm.advance(tokens)
    sequences = [
        [5, 6, 7, 11, 30],
        [20, 21, 22, 23, 31],
        [5, 6, 7, 13, 32],
        [20, 21, 22, 23, 33],
        [9, 10, 15, 34],
    ]
    for row, sequence in enumerate(sequences):
        assert close(logits[row], full(model, sequence)), row


def test_a_snapshot_restores_into_any_row_of_any_cache(model):
    lm = IncrementalLM(model, 3, PAD)
    lm.start(range(3), [[5, 6, 7], [9, 10], [12]])
    lm.advance(torch.tensor([20, 21, 22]))
    state = lm.snapshot(1)
    assert state.length == 3
    before = lm.advance(torch.tensor([30, 31, 32]))[1]
    for _ in range(20):  # long enough for the cache to drop columns and change width
        lm.advance(torch.tensor([33, 34, 35]))
    lm.restore([0, 2], state)
    after = lm.advance(torch.tensor([31, 36, 31]))
    assert close(after[0], before) and close(after[2], before)
    assert close(after[1], full(model, [9, 10, 21, 31] + [34] * 20 + [36]))
    # Into another cache, shorter than the state: it grows to take it.
    other = IncrementalLM(model, 2, PAD)
    other.start(range(2), [[1], [2]])
    other.restore([1], state)
    assert close(other.advance(torch.tensor([3, 31]))[1], before)
