r"""Token-level SFT losses: cross-entropy plus an optional number-aware term.

Cross-entropy treats every wrong digit as equally wrong. The number-aware terms, the
token-level baselines of Chen et al. (arXiv 2512.06533), add a penalty that grows with
the distance between digit values, at each digit position ``k`` with masked distribution
``p_k`` over the symbols, true digit ``d_k`` and symbol values ``v``:

- NTL-MSE (Zausinger et al., 2025): :math:`(\sum_s p_k(s) v_s - d_k)^2`, weight 0.5;
- NTL-WAS (Zausinger et al., 2025): :math:`\sum_s p_k(s) |v_s - d_k|`, the Wasserstein-1
  distance to the one-hot true digit, weight 0.5;
- DIST: :math:`KL(q_k \| p_k)` with the soft target
  :math:`q_k(s) \propto \exp(-(v_s - d_k)^2 / T)` over the allowed symbols, T = 1, weight 0.1.

Each is added to cross-entropy (``CE + weight * term``). Only positions whose allowed
symbols are all digits get the term: the sign positions of the scientific codec get plain
cross-entropy. The functions below are pure functions of masked log-probability tensors
(``-inf`` where the grammar forbids a symbol).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "DEFAULT_WEIGHTS",
    "SFT_LOSSES",
    "SFTLoss",
    "cross_entropy",
    "digit_positions",
    "dist_kl",
    "make_sft_loss",
    "ntl_mse",
    "ntl_was",
    "symbol_values",
]

SFT_LOSSES = ("ce", "ntl-mse", "ntl-was", "dist")
# The weights of the paper's token-level baselines.
DEFAULT_WEIGHTS = {"ntl-mse": 0.5, "ntl-was": 0.5, "dist": 0.1}
DIST_TEMPERATURE = 1.0


def cross_entropy(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-probability of the target symbols.

    Parameters
    ----------
    log_probs : Tensor of shape (..., n_symbols)
        Masked log-probabilities.
    targets : Tensor of shape (...), int64
        Target symbol indices.

    Returns
    -------
    loss : scalar Tensor
    """
    return -log_probs.gather(-1, targets[..., None]).mean()


def ntl_mse(log_probs: torch.Tensor, targets: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the expected digit value and the true digit.

    Parameters
    ----------
    log_probs : Tensor of shape (..., n_symbols)
        Masked log-probabilities at digit positions.
    targets : Tensor of shape (...), int64
        True symbol indices.
    values : Tensor of shape (n_symbols,)
        Numeric value of each symbol (any finite value where the probability is 0).

    Returns
    -------
    loss : scalar Tensor
    """
    expected = (log_probs.exp() * values).sum(-1)
    return torch.square(expected - values[targets]).mean()


def ntl_was(log_probs: torch.Tensor, targets: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mean expected absolute distance between the sampled and the true digit value.

    For a one-hot target this is the Wasserstein-1 distance between the two distributions
    on the number line.

    Parameters
    ----------
    log_probs : Tensor of shape (..., n_symbols)
        Masked log-probabilities at digit positions.
    targets : Tensor of shape (...), int64
        True symbol indices.
    values : Tensor of shape (n_symbols,)
        Numeric value of each symbol (any finite value where the probability is 0).

    Returns
    -------
    loss : scalar Tensor
    """
    distance = torch.abs(values - values[targets][..., None])
    return (log_probs.exp() * distance).sum(-1).mean()


def dist_kl(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    values: torch.Tensor,
    temperature: float = DIST_TEMPERATURE,
) -> torch.Tensor:
    """Mean KL divergence from a Gaussian-shaped soft target to the policy.

    The soft target is ``q(s) ∝ exp(-(v_s - v_target)^2 / temperature)`` over the symbols
    the grammar allows (those with a finite log-probability).

    Parameters
    ----------
    log_probs : Tensor of shape (..., n_symbols)
        Masked log-probabilities at digit positions.
    targets : Tensor of shape (...), int64
        True symbol indices.
    values : Tensor of shape (n_symbols,)
        Numeric value of each symbol.
    temperature : float, default=1.0
        Width of the soft target.

    Returns
    -------
    loss : scalar Tensor
        ``mean KL(q || p)``.
    """
    allowed = torch.isfinite(log_probs)
    closeness = -torch.square(values - values[targets][..., None]) / temperature
    soft_log = torch.log_softmax(closeness.masked_fill(~allowed, -torch.inf), dim=-1)
    # Forbidden symbols have q = 0 and contribute nothing (avoids 0 * -inf = nan).
    terms = torch.where(allowed, soft_log.exp() * (soft_log - log_probs), 0.0)
    return terms.sum(-1).mean()


_TERMS = {"ntl-mse": ntl_mse, "ntl-was": ntl_was, "dist": dist_kl}


def symbol_values(symbols: tuple[str, ...]) -> np.ndarray:
    """Numeric value of each codec symbol: the digit's value, 0 for signs.

    The value of a sign never counts: the losses only read digit positions, where the
    grammar gives signs probability 0.
    """
    return np.array([int(s) if s.isdigit() else 0 for s in symbols], dtype=np.float32)


def digit_positions(symbols: tuple[str, ...], allowed: np.ndarray) -> np.ndarray:
    """Positions of the grammar where only digits are allowed.

    Parameters
    ----------
    symbols : tuple of str
        The codec's symbols.
    allowed : ndarray of bool, shape (length, n_symbols)
        The codec grammar.

    Returns
    -------
    is_digit : ndarray of bool, shape (length,)
    """
    is_digit_symbol = np.array([s.isdigit() for s in symbols])
    return ~(allowed & ~is_digit_symbol).any(axis=1)


@dataclass(frozen=True)
class SFTLoss:
    """Cross-entropy plus ``weight`` times a number-aware term at digit positions.

    Parameters
    ----------
    name : {"ce", "ntl-mse", "ntl-was", "dist"}
        Which term; ``"ce"`` is cross-entropy alone.
    weight : float
        Weight of the term.
    values : ndarray of shape (n_symbols,)
        :func:`symbol_values` of the codec.
    is_digit_position : ndarray of bool, shape (length,)
        :func:`digit_positions` of the codec.
    """

    name: str
    weight: float
    values: np.ndarray
    is_digit_position: np.ndarray

    @property
    def has_term(self) -> bool:
        """Whether the loss adds a number-aware term (a name other than "ce" and digits)."""
        return self.name != "ce" and bool(self.is_digit_position.any())

    def __call__(
        self, table: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss of a batch.

        Parameters
        ----------
        table : Tensor of shape (..., length, n_symbols)
            Masked log-probabilities (:attr:`~llmregressor.decoding.TokenScores.table`).
        targets : Tensor of shape (..., length), int64
            True symbol indices.

        Returns
        -------
        loss : scalar Tensor
            Cross-entropy averaged over all positions, plus ``weight`` times the term
            averaged over digit positions.
        term : scalar Tensor or None
            The number-aware term alone (None for ``"ce"``).
        """
        loss = cross_entropy(table, targets)
        if not self.has_term:
            return loss, None
        positions = torch.as_tensor(self.is_digit_position, device=table.device)
        values = torch.as_tensor(self.values, device=table.device, dtype=table.dtype)
        term = _TERMS[self.name](table[..., positions, :], targets[..., positions], values)
        return loss + self.weight * term, term


def make_sft_loss(
    name: str, weight: float | None, symbols: tuple[str, ...], allowed: np.ndarray
) -> SFTLoss:
    """Build the SFT loss of a codec.

    Parameters
    ----------
    name : {"ce", "ntl-mse", "ntl-was", "dist"}
        The estimator's ``sft_loss``.
    weight : float or None
        The estimator's ``sft_loss_weight``; None takes :data:`DEFAULT_WEIGHTS`.
    symbols : tuple of str
        The codec's symbols.
    allowed : ndarray of bool, shape (length, n_symbols)
        The codec grammar.

    Returns
    -------
    loss : SFTLoss
    """
    if name not in SFT_LOSSES:
        raise ValueError(f"sft_loss must be one of {', '.join(SFT_LOSSES)}; got {name!r}")
    if weight is None:
        weight = DEFAULT_WEIGHTS.get(name, 0.0)
    return SFTLoss(name, float(weight), symbol_values(symbols), digit_positions(symbols, allowed))
