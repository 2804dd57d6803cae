"""Number codecs: write a target value as a fixed-length sequence of number symbols.

A codec owns three things: the scaling of ``y`` learned from the training targets, the
grammar (which symbols may appear at each of the ``length`` positions) and the exact maps
between values and symbol sequences. Symbols are single characters (digits, ``+``, ``-``);
:mod:`llmregressor.backbones` maps each one to exactly one token of the language model.

Both codecs work in *standardized* target space ``z = (y - mean) / std`` so that the
same grammar suits targets of any scale, and rewards and metrics can be computed there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["CODECS", "NormalizedCodec", "NumberCodec", "ScientificCodec", "make_codec"]

_DIGITS = "0123456789"


class NumberCodec(ABC):
    """Interface of a number codec.

    Attributes
    ----------
    symbols : tuple of str
        The codec's vocabulary; each symbol is one character and one LM token.
    length : int
        Number of symbols per encoded value (``K``).
    mean_, scale_ : float
        Standardization of ``y`` learned by :meth:`fit` (``scale_`` is 1 for constant y).
    constant_ : bool
        True when the training targets were all equal: :meth:`decode` then returns that
        value whatever the symbols, so a constant target is predicted exactly.
    """

    symbols: tuple[str, ...]
    length: int

    def fit(self, y: np.ndarray) -> NumberCodec:
        """Learn the standardization (and any range) from training targets.

        Parameters
        ----------
        y : ndarray of shape (n_samples,)
            Finite training targets.

        Returns
        -------
        self : NumberCodec
        """
        y = np.asarray(y, dtype=np.float64)
        with np.errstate(over="ignore"):
            self.constant_ = bool(np.ptp(y) == 0.0)
            mean, std = float(y.mean()), float(y.std())
        if not (np.isfinite(mean) and np.isfinite(std)):
            # The mean sums y and the std squares it: both overflow from magnitudes near
            # 1e154, which made every prediction NaN. Divided by the largest magnitude first,
            # neither can exceed it.
            peak = float(np.abs(y).max())
            mean, std = float((y / peak).mean()) * peak, float((y / peak).std()) * peak
        # For a constant target the mean is that value exactly (y.mean() may round).
        self.mean_ = float(y[0]) if self.constant_ else mean
        self.scale_ = 1.0 if self.constant_ or std == 0.0 else std
        self._fit_standardized(self.standardize(y))
        return self

    def standardize(self, y: np.ndarray) -> np.ndarray:
        """Map raw targets to standardized space ``(y - mean_) / scale_``."""
        return (np.asarray(y, dtype=np.float64) - self.mean_) / self.scale_

    def unstandardize(self, z: np.ndarray) -> np.ndarray:
        """Map standardized values back to the raw target scale."""
        return np.asarray(z, dtype=np.float64) * self.scale_ + self.mean_

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Encode raw targets as symbol indices.

        Parameters
        ----------
        y : array-like of shape (n,)
            Raw target values.

        Returns
        -------
        tokens : ndarray of shape (n, length), dtype int64
            Indices into :attr:`symbols`.
        """
        return self._encode_standardized(self.standardize(np.ravel(y)))

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Decode symbol indices of shape ``(..., length)`` to raw target values."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.shape[-1] != self.length:
            raise ValueError(f"expected {self.length} symbols per value, got {tokens.shape[-1]}")
        if self.constant_:
            return np.full(tokens.shape[:-1], self.mean_)
        return self.unstandardize(self._decode_standardized(tokens))

    def allowed_mask(self) -> np.ndarray:
        """Grammar as a boolean matrix of shape ``(length, len(symbols))``."""
        mask = np.zeros((self.length, len(self.symbols)), dtype=bool)
        for position in range(self.length):
            mask[position, [self.symbols.index(s) for s in self._allowed(position)]] = True
        return mask

    def expert_targets(self, tokens: np.ndarray, true_tokens: np.ndarray) -> np.ndarray:
        """Best next symbol after each prefix of sampled sequences (GenRe^2 expert).

        At position ``k`` of a sampled sequence the target is the first symbol of the
        grammatical continuation of ``tokens[:, :k]`` whose value is closest to the true
        code's value. Ties go to the true symbol when it is among the best, else to the
        lowest symbol index. For the normalized codec this is the rule of the paper: the
        true digit while the prefix matches, then 0 after a too-large prefix and
        ``base - 1`` after a too-small one.

        Parameters
        ----------
        tokens : ndarray of shape (n, length)
            Sampled symbol indices.
        true_tokens : ndarray of shape (n, length)
            Encoded true targets.

        Returns
        -------
        targets : ndarray of shape (n, length)
            Symbol indices.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        true_tokens = np.asarray(true_tokens, dtype=np.int64)
        target_value = self._decode_standardized(true_tokens)
        mask = self.allowed_mask()
        rows = np.arange(len(tokens))
        targets = np.empty_like(tokens)
        for position in range(self.length):
            candidates = np.flatnonzero(mask[position])
            distances = np.stack(
                [
                    self._completion_distance(
                        np.column_stack([tokens[:, :position], np.full(len(tokens), symbol)]),
                        target_value,
                    )
                    for symbol in candidates
                ],
                axis=1,
            )
            best = distances.min(axis=1, keepdims=True)
            optimal = distances <= best + 1e-9 * np.maximum(1.0, np.abs(target_value))[:, None]
            true_slot = np.searchsorted(candidates, true_tokens[:, position])
            true_is_optimal = optimal[rows, true_slot]
            targets[:, position] = np.where(
                true_is_optimal, true_tokens[:, position], candidates[optimal.argmax(axis=1)]
            )
        return targets

    def to_symbols(self, tokens: np.ndarray) -> str:
        """Render one encoded value as its symbol string (for logs and docs)."""
        return "".join(self.symbols[int(t)] for t in tokens)

    @abstractmethod
    def _allowed(self, position: int) -> str:
        """Symbols the grammar allows at ``position``."""

    @abstractmethod
    def _fit_standardized(self, z: np.ndarray) -> None:
        """Learn codec-specific statistics from standardized targets."""

    @abstractmethod
    def _encode_standardized(self, z: np.ndarray) -> np.ndarray:
        """Encode standardized values."""

    @abstractmethod
    def _decode_standardized(self, tokens: np.ndarray) -> np.ndarray:
        """Decode to standardized values."""

    @abstractmethod
    def _completion_distance(self, prefix: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Smallest ``|value - target|`` over grammatical completions of each prefix.

        ``prefix`` has shape (n, j) with 1 <= j <= length; values are standardized.
        """


class NormalizedCodec(NumberCodec):
    """Bounded codec: min-max normalized value written as ``digits`` base-``base`` digits.

    The standardized target is mapped to ``u`` in [0, 1] with the training range of ``z``,
    then quantized to ``k = round(u * (base**digits - 1))`` and written in base ``base`` with
    zero padding. Both ends of the training range are representable and the round-trip
    error is at most half a grid step, ``range / (2 * (base**digits - 1))``. Values outside
    the training range are clipped: this codec cannot extrapolate.

    Parameters
    ----------
    base : int, default=10
        Digit base, 2 to 10.
    digits : int, default=3
        Number of digits (``K``).
    """

    def __init__(self, base: int = 10, digits: int = 3) -> None:
        self.base = base
        self.digits = digits
        self.symbols = tuple(_DIGITS[:base])
        self.length = digits
        self._levels = base**digits - 1

    def _allowed(self, position: int) -> str:
        return _DIGITS[: self.base]

    def _fit_standardized(self, z: np.ndarray) -> None:
        self.z_min_ = float(z.min())
        self.z_max_ = float(z.max())

    def _encode_standardized(self, z: np.ndarray) -> np.ndarray:
        span = self.z_max_ - self.z_min_
        u = np.zeros_like(z) if span == 0 else np.clip((z - self.z_min_) / span, 0.0, 1.0)
        k = np.rint(u * self._levels).astype(np.int64)
        powers = self.base ** np.arange(self.digits - 1, -1, -1, dtype=np.int64)
        return (k[:, None] // powers) % self.base

    def _decode_standardized(self, tokens: np.ndarray) -> np.ndarray:
        powers = self.base ** np.arange(self.digits - 1, -1, -1, dtype=np.int64)
        k = (tokens * powers).sum(axis=-1)
        return self.z_min_ + (k / self._levels) * (self.z_max_ - self.z_min_)

    def _completion_distance(self, prefix: np.ndarray, target: np.ndarray) -> np.ndarray:
        span = self.z_max_ - self.z_min_
        if span == 0:
            return np.abs(self.z_min_ - target)
        # A prefix fixes the leading digits, so completions cover one contiguous block of
        # grid indices; the closest is the target's grid position clipped to that block.
        remaining = self.digits - prefix.shape[1]
        powers = self.base ** np.arange(prefix.shape[1] - 1, -1, -1, dtype=np.int64)
        low = (prefix * powers).sum(axis=1) * self.base**remaining
        high = low + self.base**remaining - 1
        position = (target - self.z_min_) / span * self._levels
        closest = np.clip(np.rint(position), low, high)
        return np.abs(closest - position) * span / self._levels


class ScientificCodec(NumberCodec):
    """Unbounded codec: ``[sign][exponent sign][exponent digits][mantissa digits]`` in base 10.

    A standardized value ``z`` is written as ``±m × 10^(±e)`` with a normalized mantissa
    ``m = d1.d2...dM`` (``d1 != 0`` except for zero). Magnitudes beyond the largest exponent
    saturate at ``9.99…e+(10^E - 1)``; magnitudes below the smallest underflow to zero.
    Every symbol sequence the grammar allows decodes to a finite number.

    Parameters
    ----------
    exponent_digits : int, default=1
        Number of exponent digits ``E``.
    mantissa_digits : int, default=3
        Number of mantissa digits ``M``.
    """

    symbols = (*_DIGITS, "+", "-")

    def __init__(self, exponent_digits: int = 1, mantissa_digits: int = 3) -> None:
        self.exponent_digits = exponent_digits
        self.mantissa_digits = mantissa_digits
        self.length = 2 + exponent_digits + mantissa_digits
        self._max_exponent = 10**exponent_digits - 1

    def _allowed(self, position: int) -> str:
        return "+-" if position < 2 else _DIGITS

    def _fit_standardized(self, z: np.ndarray) -> None:
        """Nothing to learn beyond the standardization."""

    def _encode_standardized(self, z: np.ndarray) -> np.ndarray:
        n_mant = self.mantissa_digits
        magnitude = np.abs(z)
        nonzero = magnitude > 0
        exponent = np.zeros(z.shape, dtype=np.int64)
        exponent[nonzero] = np.floor(np.log10(magnitude[nonzero])).astype(np.int64)
        mantissa = np.zeros(z.shape, dtype=np.int64)
        mantissa[nonzero] = np.rint(
            magnitude[nonzero] / 10.0 ** exponent[nonzero] * 10 ** (n_mant - 1)
        ).astype(np.int64)
        # Rounding can carry into a new decade (9.996 -> 10.00): renormalize.
        carry = mantissa >= 10**n_mant
        mantissa[carry] //= 10
        exponent[carry] += 1
        overflow = exponent > self._max_exponent
        mantissa[overflow] = 10**n_mant - 1
        exponent[overflow] = self._max_exponent
        underflow = exponent < -self._max_exponent
        mantissa[underflow] = 0
        exponent[underflow] = 0
        is_zero = mantissa == 0
        exponent[is_zero] = 0

        plus, minus = self.symbols.index("+"), self.symbols.index("-")
        tokens = np.empty((z.shape[0], self.length), dtype=np.int64)
        tokens[:, 0] = np.where((z < 0) & ~is_zero, minus, plus)
        tokens[:, 1] = np.where(exponent < 0, minus, plus)
        e_pow = 10 ** np.arange(self.exponent_digits - 1, -1, -1, dtype=np.int64)
        m_pow = 10 ** np.arange(n_mant - 1, -1, -1, dtype=np.int64)
        tokens[:, 2 : 2 + self.exponent_digits] = (np.abs(exponent)[:, None] // e_pow) % 10
        tokens[:, 2 + self.exponent_digits :] = (mantissa[:, None] // m_pow) % 10
        return tokens

    def _decode_standardized(self, tokens: np.ndarray) -> np.ndarray:
        minus = self.symbols.index("-")
        sign = np.where(tokens[..., 0] == minus, -1.0, 1.0)
        exp_sign = np.where(tokens[..., 1] == minus, -1, 1)
        e_tokens = tokens[..., 2 : 2 + self.exponent_digits]
        m_tokens = tokens[..., 2 + self.exponent_digits :]
        if (e_tokens > 9).any() or (m_tokens > 9).any():
            raise ValueError("sign symbol found at a digit position")
        e_pow = 10 ** np.arange(self.exponent_digits - 1, -1, -1, dtype=np.int64)
        m_pow = 10 ** np.arange(self.mantissa_digits - 1, -1, -1, dtype=np.int64)
        exponent = exp_sign * (e_tokens * e_pow).sum(axis=-1)
        mantissa = (m_tokens * m_pow).sum(axis=-1) / 10 ** (self.mantissa_digits - 1)
        return sign * mantissa * 10.0**exponent

    def _completion_distance(self, prefix: np.ndarray, target: np.ndarray) -> np.ndarray:
        n, fixed = prefix.shape
        n_exp, n_mant = self.exponent_digits, self.mantissa_digits
        plus, minus = self.symbols.index("+"), self.symbols.index("-")

        def sign_options(position: int) -> np.ndarray:
            # (n, 2) validity of (+, -) at a sign position.
            if fixed <= position:
                return np.ones((n, 2), dtype=bool)
            return np.column_stack([prefix[:, position] == plus, prefix[:, position] == minus])

        def digit_range(start: int, width: int) -> tuple[np.ndarray, np.ndarray]:
            # Integer range of a digit field whose leading digits the prefix may fix.
            known = int(np.clip(fixed - start, 0, width))
            powers = 10 ** np.arange(known - 1, -1, -1, dtype=np.int64)
            low = (prefix[:, start : start + known] * powers).sum(axis=1) * 10 ** (width - known)
            return low, low + 10 ** (width - known) - 1

        e_low, e_high = digit_range(2, n_exp)
        m_low, m_high = digit_range(2 + n_exp, n_mant)
        # Enumerate sign x exponent sign x exponent; within each, the value is linear in the
        # mantissa integer, so the best mantissa is the target's, clipped to its range.
        exps = np.arange(10**n_exp)
        signs = np.array([1.0, -1.0])
        sign_ok, exp_sign_ok = sign_options(0), sign_options(1)
        best = np.full(n, np.inf)
        for s_index, sign in enumerate(signs):
            for es_index, exp_sign in enumerate(signs):
                valid = (
                    sign_ok[:, s_index, None]
                    & exp_sign_ok[:, es_index, None]
                    & (exps >= e_low[:, None])
                    & (exps <= e_high[:, None])
                )
                unit = sign * 10.0 ** (exp_sign * exps - (n_mant - 1))  # value of mantissa 1
                mantissa = np.clip(np.rint(target[:, None] / unit), m_low[:, None], m_high[:, None])
                distance = np.where(valid, np.abs(mantissa * unit - target[:, None]), np.inf)
                best = np.minimum(best, distance.min(axis=1))
        return best


# The codecs by the estimator's ``number_format`` value: the one list that validation,
# the command line and the save format read.
CODECS: dict[str, type[NumberCodec]] = {
    "normalized": NormalizedCodec,
    "scientific": ScientificCodec,
}


def make_codec(
    number_format: str,
    *,
    base: int = 10,
    digits: int = 3,
    exponent_digits: int = 1,
    mantissa_digits: int = 3,
) -> NumberCodec:
    """Build an unfitted codec from the estimator's parameters.

    Parameters
    ----------
    number_format : {"normalized", "scientific"}
        Which codec (a key of :data:`CODECS`).
    base, digits : int
        Parameters of :class:`NormalizedCodec`.
    exponent_digits, mantissa_digits : int
        Parameters of :class:`ScientificCodec`.

    Returns
    -------
    codec : NumberCodec
    """
    if number_format == "normalized":
        return NormalizedCodec(base=base, digits=digits)
    if number_format == "scientific":
        return ScientificCodec(exponent_digits=exponent_digits, mantissa_digits=mantissa_digits)
    raise ValueError(f"number_format must be one of {sorted(CODECS)}, got {number_format!r}")
