"""The GPT policy's forward passes over whole observations: the trunk's own forward read at
chosen positions (`causal_lm_forward`), one pass for the rows that share a prompt
(`prefix_groups`, `shared_prompt_forward`), and the memory of the last pass that answers the
env's KL scorer (`ForwardMemory`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from textgym.kv_cache import cache_keyword, cache_layers, output_cache


class ForwardMemory:
    """The token ids a policy's last forward pass read and the log-probs it gave, so a KL
    scorer call for the same rows (the env's, right after the policy acted) is answered from
    it rather than by a second forward pass."""

    def __init__(self) -> None:
        self.last: tuple[np.ndarray, np.ndarray] | None = None  # (ids (B, L), log-probs (B, A))
        self.misses = 0  # recalls it could not answer

    def remember(self, input_ids: torch.Tensor, logits: torch.Tensor) -> None:
        self.last = (
            input_ids.long().cpu().numpy(),
            torch.log_softmax(logits.detach().float(), -1).cpu().numpy(),
        )

    def recall(self, obs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The remembered log-probs of the rows of ``obs`` (each row matched by its token ids),
        or None when some row was not in the last forward pass."""
        ids = np.asarray(obs["input_ids"])
        if self.last is not None:
            seen_ids, seen_logprobs = self.last
            if seen_ids.shape == ids.shape and np.array_equal(seen_ids, ids):
                return seen_logprobs
            if seen_ids.shape[1] == ids.shape[1]:
                match = (seen_ids[None, :, :] == ids[:, None, :]).all(-1)  # (b, B)
                if match.any(1).all():
                    return seen_logprobs[match.argmax(1)]
        self.misses += 1
        return None


def prefix_groups(ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a right-padded batch grouped under the longest rows that extend them.

    :param ids: ``(B, L)`` token ids.
    :param lengths: ``(B,)`` real tokens per row.
    :return: ``leaders`` ``(G,)``, the rows whose forward passes are run, and ``slots``
        ``(G, T)``, the rows read from each leader's pass (the leader first; ``-1`` pads a
        shorter group). Every row is in exactly one slot.
    """
    ids_np = ids.detach().cpu().numpy()
    lengths_np = lengths.detach().cpu().numpy()
    owner: dict[bytes, int] = {}  # a prefix -> the group whose leader holds it
    groups: list[list[int]] = []
    for row in np.argsort(-lengths_np, kind="stable"):
        n = int(lengths_np[row])
        key = ids_np[row, :n].tobytes()
        if key in owner:
            groups[owner[key]].append(int(row))
            continue
        owner.update({ids_np[row, :p].tobytes(): len(groups) for p in range(1, n + 1)})
        groups.append([int(row)])
    width = max(len(group) for group in groups)
    slots = np.full((len(groups), width), -1, dtype=np.int64)
    for g, group in enumerate(groups):
        slots[g, : len(group)] = group
    leaders = torch.as_tensor(slots[:, 0], device=ids.device)
    return leaders, torch.as_tensor(slots, device=ids.device)


def causal_lm_forward(
    trunk: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The trunk's own forward pass, read at ``positions``.

    :param trunk: an ``AutoModelForCausalLM``.
    :param input_ids: ``(B, W)`` token ids.
    :param attention_mask: ``(B, W)``.
    :param positions: ``(B, T)`` the positions whose next-token logits are wanted.
    :return: the next-token logits ``(B, T, V)``, after every logit transform of the model's
        family, and the last hidden states ``(B, T, H)`` that the LM head read there.
    """
    logits, hidden, _ = _read_at(
        trunk, positions, input_ids=input_ids, attention_mask=attention_mask
    )
    return logits, hidden


def shared_prompt_forward(
    trunk: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    pick: torch.Tensor,
    tokens: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`causal_lm_forward` of B sequences ``prompt + tokens`` read at the state before each
    generated token, when many share a prompt (the samples of a group): one forward over the
    U distinct prompts, whose keys and values (indexed by ``pick``, so their gradients sum over
    the rows that share them) the B continuations then attend to. The same logits and
    gradients as one forward over every full sequence, without encoding a prompt twice.

    :param prompt_ids: ``(U, P)`` left-padded prompts; ``prompt_mask`` ``(U, P)``.
    :param pick: ``(B,)`` each sequence's prompt.
    :param tokens: ``(B, T)`` generated ids, right-padded (padding is never read).
    :return: the next-token logits ``(B, T, V)`` and last hidden states ``(B, T, H)``.
    """
    count, width = prompt_ids.shape
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    last = torch.full((count, 1), width - 1, device=prompt_ids.device)
    logits, hidden, out = _read_at(
        trunk,
        last,
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=positions,
        use_cache=True,
    )
    logits, hidden = logits[pick], hidden[pick]
    steps = tokens.shape[1]
    if steps == 1:
        return logits, hidden
    cache = output_cache(out)
    for layer in cache_layers(cache):
        layer.keys, layer.values = layer.keys[pick], layer.values[pick]
    fed = tokens[:, :-1]  # the state before token t >= 1 ends with token t - 1
    lengths = prompt_mask.sum(-1)[pick]
    rest_logits, rest_hidden, _ = _read_at(
        trunk,
        torch.arange(steps - 1, device=tokens.device).expand(len(tokens), -1),
        input_ids=fed,
        attention_mask=torch.cat([prompt_mask[pick], torch.ones_like(fed)], dim=1),
        position_ids=lengths[:, None] + torch.arange(steps - 1, device=tokens.device),
        **{cache_keyword(trunk): cache},
    )
    return torch.cat([logits, rest_logits], dim=1), torch.cat([hidden, rest_hidden], dim=1)


def _read_at(
    trunk: PreTrainedModel, positions: torch.Tensor, **inputs: Any
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The trunk's forward on ``inputs``, its logits and last hidden states read at
    ``positions`` ``(B, T)`` only, and its output."""
    # The model's forward computes the logits: rebuilding them from ``base_model`` and the
    # output embeddings would skip its family's transforms (scaling, softcapping). A hook lets
    # only the wanted positions reach the LM head (``logits_to_keep`` takes positions per row
    # only since transformers 5.2x; 5.20 has one set for all rows), and the value head reads
    # what the LM head read.
    index = positions.long()[..., None]
    read: list[torch.Tensor] = []

    def at_positions(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0].gather(1, index.expand(-1, -1, args[0].shape[-1]))  # (B, T, H)
        read.append(hidden)
        return (hidden, *args[1:])

    hook = trunk.get_output_embeddings().register_forward_pre_hook(at_positions)
    try:
        out = trunk(**inputs)
    finally:
        hook.remove()
    if len(read) != 1 or out.logits.shape[:2] != positions.shape:
        raise TypeError(
            f"{type(trunk).__name__} did not compute its logits with its output embeddings "
            "once per forward pass: expected a causal LM whose forward applies its LM head"
        )
    return out.logits, read[0], out
