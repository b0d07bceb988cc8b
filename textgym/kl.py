"""KL estimators and KL-coefficient controllers.

With ``log r = log pi_ref(a|s) - log pi(a|s)`` for an action sampled from pi, Schulman's
estimators of KL(pi || pi_ref) are (http://joschu.net/blog/kl-approx.html):

- ``k1 = -log r``: unbiased; as a detached per-token reward its policy gradient is the exact
  gradient of KL(pi || pi_ref), which is why it is the default.
- ``k2 = (log r)^2 / 2``: low variance, biased.
- ``k3 = (r - 1) - log r``: unbiased and never negative.
"""

from __future__ import annotations

import numpy as np

from textgym._checks import check_int, check_number

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(policy_logprob: np.ndarray, ref_logprob: np.ndarray, estimator: str) -> np.ndarray:
    """Per-token KL estimate ``k(log pi, log pi_ref)`` for the chosen estimator."""
    log_ratio = np.asarray(ref_logprob, dtype=np.float64) - np.asarray(
        policy_logprob, dtype=np.float64
    )
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return np.expm1(log_ratio) - log_ratio
    raise ValueError(f"kl_estimator={estimator!r} is not known: expected one of {KL_ESTIMATORS}")


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, kl_coef: float) -> None:
        self.value = check_number("kl_coef", kl_coef, at_least=0)

    def update(self, kl_per_sequence: float, n_sequences: int) -> None:
        """A fixed coefficient ignores the observed KL."""


class AdaptiveKLController:
    """Ziegler et al. (2019): steer beta so the KL per sequence tracks a target.

    ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon`` after each batch of ``n``
    finished sequences with mean KL per sequence ``KL``.

    :param init_kl_coef: starting beta.
    :param target: the KL per sequence (nats) to track, > 0.
    :param horizon: how many sequences a full correction is spread over, an int >= 1.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int = 10_000) -> None:
        self.value = check_number("init_kl_coef", init_kl_coef, at_least=0)
        self.target = check_number("target", target, above=0)
        check_int("horizon", horizon, low=1)
        self.horizon = int(horizon)

    def update(self, kl_per_sequence: float, n_sequences: int) -> None:
        error = float(np.clip(kl_per_sequence / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_sequences / self.horizon
