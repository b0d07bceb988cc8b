"""The reference model as the acting policy, at a temperature.

One object serves every place that acts with the reference: `textgym rollout` and `render`,
the reference policy's evaluation (the baseline every TextGen agent is compared with), and
`normalize_reward`'s reference samples (through `sample_tokens`, the one sampling rule). It
answers from the reference log-probs the env already computed, so acting with it costs no
forward pass beyond the env's own.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from textgym._checks import is_number


class ReferenceSource(Protocol):
    """What `ReferencePolicy` reads of a TextGen core (`TextGenCore` is one; the core imports
    `sample_tokens` from here, so this module names no class of the core's)."""

    scoring_rows: np.ndarray | None  # the rows a scorer call is about

    def reference_logprobs(self, rows: np.ndarray | None = None) -> np.ndarray: ...


def sample_tokens(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(B, A)`` logits (or log-probs) -> ``(B,)`` draws from ``softmax(logits / temperature)``,
    on the generator's device (the logits' without one).

    By inverting each row's cumulative distribution at one uniform draw: 20x faster than
    ``torch.multinomial`` at 64 x 2,356 on a CPU. Tokens of probability 0 are never drawn (nor
    those below float32's resolution of the cumulative sum, about 6e-8).
    """
    device = logits.device if generator is None else generator.device
    probs = torch.softmax(logits.to(device).float() / temperature, dim=-1)
    cdf = probs.cumsum(-1)
    draws = torch.rand(len(cdf), 1, generator=generator, device=device) * cdf[:, -1:]
    return torch.searchsorted(cdf, draws, right=True).squeeze(1).clamp(max=cdf.shape[-1] - 1)


class ReferencePolicy:
    """Acts as the reference model of a TextGen core at ``temperature``, and is its own KL scorer.

    ``act()`` samples one action per row of the core from the reference's log-probs over the
    action space (in ``"topk"`` mode renormalised over the candidates); attached with
    ``attach_policy(policy)``, it answers the env's scorer call with the same distribution,
    so at temperature 1 every KL step reward is 0 and the return is the RM score.

    :param core: the env's `TextGenCore` (``env.unwrapped.core``; for an SB3 VecEnv
        ``venv.unwrapped.core``).
    :param temperature: divides the reference's logits (1.0: the reference itself).
    :param seed: seeds the sampling (None: torch's global generator).
    """

    def __init__(
        self, core: ReferenceSource, temperature: float = 1.0, seed: int | None = None
    ) -> None:
        if not (is_number(temperature) and 0 < temperature < np.inf):
            raise ValueError(f"temperature={temperature!r}: expected a finite number > 0")
        self.core = core
        self.temperature = float(temperature)
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def logprobs(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``(rows, A)`` float64 log-probs of the policy over the action space (default: all)."""
        logprobs = self.core.reference_logprobs(rows).astype(np.float64)
        if self.temperature == 1.0:  # exactly the env's own: every KL step reward exactly 0
            return logprobs
        scaled = logprobs / self.temperature
        return scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)

    def act(self, obs: object = None) -> np.ndarray:
        """``(N,)`` actions, one per row of the core (``obs`` is not needed: the core holds
        the reference's log-probs of its current state)."""
        logits = torch.as_tensor(self.core.reference_logprobs())
        return sample_tokens(logits, self.temperature, self.generator).numpy()

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The scorer: log-probs of the rows the core is stepping."""
        return self.logprobs(self.core.scoring_rows)

    def __repr__(self) -> str:
        return f"ReferencePolicy(temperature={self.temperature:g})"
