"""The public training and sampling engine under :class:`~llmregressor.LLMRegressor`.

The estimator turns parameters and a table into these objects and calls them; benchmarks
and users who need more than ``fit``/``predict`` (score every epoch, continue RL from a
fitted SFT state, compare sampling schemes) use the same objects:

- :class:`Sampler` decodes rows into numbers (greedy, or stratified samples seeded per
  row) and :func:`aggregate` / :func:`sample_quantiles` reduce the draws;
- :class:`Trainer` runs a fit's phases on a policy: the validation split, SFT, RL, with
  :class:`Callback` hooks after every epoch;
- :func:`validation_rows` is the fit's validation split, :func:`calibration_rows` the rows
  whose draws calibrate its intervals (:mod:`llmregressor.conformal`).

A fitted estimator hands out its engine through
:meth:`~llmregressor.LLMRegressor.trainer`, so nothing needs to reach into private
attributes or patch functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import qmc
from tqdm.auto import tqdm

from ._checkpoint import FitCheckpoints
from ._distributed import DataParallel
from ._training import Phase, PhaseConfig, TrainingDivergedError, run_phase
from .backbone_protocol import EncodedRows, RowInputs
from .codecs import NumberCodec
from .decoding import NumberPolicy
from .rl import RewardFn, RLConfig, RLPhase
from .sft import SFTConfig, SFTPhase

__all__ = [
    "CALIBRATION_MIN_ROWS",
    "EARLY_STOPPING_MIN_ROWS",
    "EXACT_CALIBRATION_POINTS",
    "PREDICT_MODES",
    "EXACT",
    "MAX_EXACT_OUTCOMES",
    "Callback",
    "Sampler",
    "Trainer",
    "TrainingDivergedError",
    "aggregate",
    "calibration_rows",
    "check_exact_outcomes",
    "distribution_mean",
    "distribution_quantiles",
    "raw_bounds",
    "sample_quantiles",
    "validation_rows",
]

PREDICT_MODES = ("greedy", "mean", "median")
# ``n_samples`` value that replaces samples by the exact predictive distribution.
EXACT = "exact"
# Most outcomes a codec may have for the exact distribution (base-10 codecs of 3 digits have
# 1000; a scientific codec has tens of thousands, which the digit tree cannot afford).
MAX_EXACT_OUTCOMES = 4096
# Cumulative probability below which the tails of an exact distribution count as empty.
_CDF_TOLERANCE = 1e-9
# Points an exact distribution is reduced to for calibrated intervals: its quantiles at the
# midpoints of this many equal strata, as a perfectly stratified sample of that size would
# fall. Enough for the tails of a 99% interval, small enough to keep a model folder light.
EXACT_CALIBRATION_POINTS = 200


def _reduce_finite(reduce: Callable[[np.ndarray], np.ndarray], draws: np.ndarray) -> np.ndarray:
    """Apply ``reduce`` over each row's draws; rows it overflows are reduced scaled down.

    Draws near the float64 limit are each finite while their sum is not: those rows are
    divided by their largest magnitude first. Other rows keep the plain result, bit for bit.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = reduce(draws)
    if len(draws) == 0:  # a process's empty share of the validation rows
        return out
    finite = np.isfinite(out).reshape(len(draws), -1).all(axis=1)
    overflowed = ~finite & np.isfinite(draws).all(axis=1)
    if overflowed.any():
        rows = draws[overflowed]
        scale = np.abs(rows).max(axis=1, keepdims=True)
        scaled = reduce(rows / scale)
        with np.errstate(over="ignore"):
            out[overflowed] = scaled * (scale if scaled.ndim == 2 else scale[:, 0])
    return out


def aggregate(draws: np.ndarray, mode: str) -> np.ndarray:
    """Reduce each row's draws to one prediction.

    Parameters
    ----------
    draws : ndarray of shape (n_rows, n_draws)
        Raw-scale draws (one column for a greedy decode).
    mode : {"greedy", "mean", "median"}
        ``"median"`` takes each row's median, the others the mean (of one column for
        ``"greedy"``).

    Returns
    -------
    predictions : ndarray of shape (n_rows,)
    """
    if mode == "median":
        return _reduce_finite(lambda d: np.median(d, axis=1), draws)
    return _reduce_finite(lambda d: d.mean(axis=1), draws)


def sample_quantiles(draws: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Empirical quantiles of each row's draws (linear interpolation).

    Parameters
    ----------
    draws : ndarray of shape (n_rows, n_draws)
        Raw-scale draws.
    levels : sequence of float
        Levels in [0, 1].

    Returns
    -------
    q : ndarray of shape (n_rows, len(levels))
    """
    levels = np.asarray(levels, dtype=np.float64)
    return _reduce_finite(lambda d: np.quantile(d, levels, axis=1).T, draws)


def raw_bounds(draws: np.ndarray, levels: Sequence[float], center: str) -> np.ndarray:
    """Each row's raw interval from its draws, before conformal calibration.

    Parameters
    ----------
    draws : ndarray of shape (n_rows, n_draws)
        Raw-scale draws.
    levels : sequence of float
        The lower and upper quantile levels (:func:`~llmregressor.conformal.central_levels`).
    center : {"quantiles", "mean"}
        A :class:`~llmregressor.conformal.Calibration`'s ``center``: the draws' quantiles
        at ``levels``, or their mean as both bounds (``levels`` unused).

    Returns
    -------
    bounds : ndarray of shape (n_rows, 2)
    """
    if center == "mean":
        point = aggregate(draws, "mean")
        return np.column_stack([point, point])
    return sample_quantiles(draws, levels)


def check_exact_outcomes(n_outcomes: int) -> None:
    """Refuse an exact distribution over more than :data:`MAX_EXACT_OUTCOMES` numbers.

    Parameters
    ----------
    n_outcomes : int
        How many numbers the codec can write.

    Raises
    ------
    ValueError
        Naming the count and the remedies.
    """
    if n_outcomes > MAX_EXACT_OUTCOMES:
        raise ValueError(
            f"n_samples='exact' enumerates every number the codec can write; this codec "
            f"writes {n_outcomes}, more than {MAX_EXACT_OUTCOMES}: use a sample count, or a "
            "codec with fewer digits"
        )


def distribution_mean(values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mean of each row's discrete predictive distribution.

    Parameters
    ----------
    values : ndarray of shape (n_outcomes,)
        Raw-scale value of each outcome.
    probs : ndarray of shape (n_rows, n_outcomes)
        Each row's probabilities (rows sum to 1).

    Returns
    -------
    means : ndarray of shape (n_rows,)
    """
    # Scaled by the largest magnitude, so values near the float64 limit do not overflow;
    # renormalized, as float32 log-probabilities sum to 1 only to about 1e-7.
    scale = float(np.abs(values).max()) or 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        return (probs @ (values / scale)) / probs.sum(axis=1) * scale


def distribution_quantiles(
    values: np.ndarray, probs: np.ndarray, levels: Sequence[float]
) -> np.ndarray:
    """Quantiles of each row's discrete predictive distribution (its inverse CDF).

    The quantile at level ``q`` is the smallest outcome whose cumulative probability
    reaches ``q``; level 0 is the smallest outcome of positive probability.

    Parameters
    ----------
    values : ndarray of shape (n_outcomes,)
        Raw-scale value of each outcome.
    probs : ndarray of shape (n_rows, n_outcomes)
        Each row's probabilities (rows sum to 1).
    levels : sequence of float
        Levels in [0, 1].

    Returns
    -------
    q : ndarray of shape (n_rows, len(levels))
    """
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(probs[:, order], axis=1)
    cdf /= cdf[:, -1:]  # float rounding: the last entry is exactly 1
    # The first outcome whose CDF reaches the level, with the same tolerance for the
    # rounding of the sums at both ends: level 0 is the first outcome whose cumulative
    # probability exceeds it, level 1 the last one that adds more than it.
    targets = np.clip(np.asarray(levels, dtype=np.float64), _CDF_TOLERANCE, 1 - _CDF_TOLERANCE)
    index = (cdf[:, :, None] < targets[None, None, :] - _CDF_TOLERANCE / 2).sum(axis=1)
    index = np.minimum(index, len(values) - 1)
    return values[order][index]


@dataclass
class Sampler:
    """Decode rows into raw-scale numbers under the codec's grammar.

    Parameters
    ----------
    codec : NumberCodec
        The fitted codec.
    seed : int
        The fit's seed: with a row's key it seeds that row's samples.
    batch_size : int
        Rows per decoding batch.
    mode : {"greedy", "mean", "median"}, default="mean"
        What :meth:`predict` returns (``predict_mode``).
    n_samples : int or "exact", default=16
        Draws per row for ``"mean"`` and ``"median"``, and the default of :meth:`draw`;
        ``"exact"`` reduces the exact predictive distribution (:meth:`distribution`)
        instead of samples.
    stratified : bool, default=True
        Draw a row's samples as a Latin hypercube over the uniforms that drive each
        position's inverse-CDF draw (each draw still follows the predictive distribution,
        together they cover it evenly); False draws independent uniforms.
    verbose : int, default=0
        Progress bar over batches when > 0.
    """

    codec: NumberCodec
    seed: int
    batch_size: int
    mode: str = "mean"
    n_samples: int | str = 16
    stratified: bool = True
    verbose: int = 0

    def row_uniforms(self, key: int, n_samples: int) -> np.ndarray:
        """Uniforms of one row's samples.

        Seeded by the row's own key (a hash of its prompt or feature values): a row's
        samples do not depend on which other rows share its batch or on row order, so
        predictions are repeatable.

        Parameters
        ----------
        key : int
            The row's key (:class:`~llmregressor.backbone_protocol.EncodedRows`).
        n_samples : int
            Draws.

        Returns
        -------
        uniforms : ndarray of shape (n_samples, codec.length)
        """
        rng = np.random.default_rng([self.seed, int(key)])
        if not self.stratified:
            return rng.random((n_samples, self.codec.length))
        # The n draws split every position's CDF into n equal strata, one draw each, so
        # the leading symbol (most of a number's spread) is drawn in near-exact proportions.
        return qmc.LatinHypercube(d=self.codec.length, rng=rng).random(n_samples)

    def _batches(
        self, inputs: RowInputs, size: int, desc: str, progress: bool
    ) -> Iterator[tuple[np.ndarray, EncodedRows]]:
        """Consecutive batches of ``size`` rows, encoded a chunk ahead, never all at once."""
        batches = inputs.batches(
            np.arange(start, min(start + size, len(inputs)))
            for start in range(0, len(inputs), size)
        )
        return tqdm(
            batches,
            desc=desc,
            unit="batch",
            total=-(-len(inputs) // size),
            disable=self.verbose <= 0 or not progress,
        )

    def draw(
        self,
        policy: NumberPolicy,
        inputs: RowInputs,
        n_samples: int | None = None,
        greedy: bool | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Decode every row.

        Parameters
        ----------
        policy : NumberPolicy
            The policy to decode with.
        inputs : RowInputs
            The rows, encoded a batch ahead of decoding.
        n_samples : int, optional
            Draws per row; defaults to :attr:`n_samples`.
        greedy : bool, optional
            One greedy decode per row instead of samples; defaults to ``mode == "greedy"``.
        progress : bool, default=True
            Allow the progress bar (shown when :attr:`verbose` > 0).

        Returns
        -------
        draws : ndarray of shape (n_rows, n_samples) or (n_rows, 1) when greedy
        """
        greedy = self.mode == "greedy" if greedy is None else greedy
        n_samples = self.n_samples if n_samples is None else n_samples
        if not greedy and n_samples == EXACT:
            raise ValueError(
                "draw() samples: pass an int n_samples (distribution() gives the exact "
                "distribution that n_samples='exact' stands for)"
            )
        columns = 1 if greedy else n_samples
        if self.codec.constant_:
            return np.full((len(inputs), columns), self.codec.mean_)
        out = np.empty((len(inputs), columns))
        for rows, encoded in self._batches(inputs, self.batch_size, "predict", progress):
            batch = policy.backbone.collate(encoded.items)
            uniforms = None
            if not greedy:
                uniforms = torch.tensor(
                    np.stack([self.row_uniforms(k, n_samples) for k in encoded.keys]),
                    dtype=torch.float64,
                    device=policy.backbone.device,
                )
            rollout = policy.decode(batch, uniforms, greedy_columns=int(greedy))
            out[rows] = self.codec.decode(rollout.tokens.cpu().numpy())
        return out

    def _exact_probs(
        self, policy: NumberPolicy, inputs: RowInputs, progress: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each batch's rows and their exact probabilities of every outcome."""
        n_outcomes = policy.n_outcomes()
        check_exact_outcomes(n_outcomes)
        # The last level of the tree holds every prefix of each row of a batch, each with
        # its own copy of the row's encoding: keep a batch about as large as sampling's
        # ``batch_size`` rows x 16 draws (one row at least, whatever the codec).
        last_level = n_outcomes // int(policy.allowed[-1].sum())
        size = max(1, self.batch_size * 16 // last_level)
        for rows, encoded in self._batches(inputs, size, "predict (exact)", progress):
            _, probs = policy.exact_distribution(policy.backbone.collate(encoded.items))
            yield rows, probs.cpu().numpy()

    def _reduce_exact(
        self,
        policy: NumberPolicy,
        inputs: RowInputs,
        levels: Sequence[float] | None,
        progress: bool = True,
    ) -> np.ndarray:
        """Mean (``levels`` None) or quantiles of each row's exact distribution.

        Reduced batch by batch as the distributions come, never holding all rows' at once.
        """
        out = np.empty((len(inputs),) if levels is None else (len(inputs), len(levels)))
        if self.codec.constant_:
            out[:] = self.codec.mean_
            return out
        values = self.codec.decode(policy.outcome_codes().cpu().numpy())
        for rows, probs in self._exact_probs(policy, inputs, progress):
            if levels is None:
                out[rows] = distribution_mean(values, probs)
            else:
                out[rows] = distribution_quantiles(values, probs, levels)
        return out

    def distribution(
        self, policy: NumberPolicy, inputs: RowInputs, progress: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the exact predictive distribution of every row, from the digit tree.

        Parameters
        ----------
        policy : NumberPolicy
            The policy to evaluate
            (:meth:`~llmregressor.decoding.NumberPolicy.exact_distribution`).
        inputs : RowInputs
            The rows.
        progress : bool, default=True
            Allow the progress bar (shown when :attr:`verbose` > 0).

        Returns
        -------
        values : ndarray of shape (n_outcomes,)
            Raw-scale value of every outcome the codec can write.
        probs : ndarray of shape (n_rows, n_outcomes)
            Each row's probability of each outcome. :meth:`predict` and
            :meth:`quantiles` reduce it batch by batch instead of holding it whole.

        Raises
        ------
        ValueError
            If the codec has more than :data:`MAX_EXACT_OUTCOMES` outcomes.
        """
        if self.codec.constant_:
            return np.array([self.codec.mean_]), np.ones((len(inputs), 1))
        values = self.codec.decode(policy.outcome_codes().cpu().numpy())
        probs = np.empty((len(inputs), len(values)))
        for rows, batch_probs in self._exact_probs(policy, inputs, progress):
            probs[rows] = batch_probs
        return values, probs

    def predict(self, policy: NumberPolicy, inputs: RowInputs, progress: bool = True) -> np.ndarray:
        """Return one prediction per row.

        :meth:`draw` reduced by :func:`aggregate`; with ``n_samples="exact"`` (and a mode
        other than ``"greedy"``) the mean or median of the exact distribution.

        Parameters
        ----------
        policy : NumberPolicy
            The policy to decode with.
        inputs : RowInputs
            The rows.
        progress : bool, default=True
            Allow the progress bar (shown when :attr:`verbose` > 0).

        Returns
        -------
        predictions : ndarray of shape (n_rows,)
        """
        if self.n_samples == EXACT and self.mode != "greedy":
            if self.mode == "median":
                return self._reduce_exact(policy, inputs, [0.5], progress)[:, 0]
            return self._reduce_exact(policy, inputs, None, progress)
        return aggregate(self.draw(policy, inputs, progress=progress), self.mode)

    def quantiles(
        self, policy: NumberPolicy, inputs: RowInputs, levels: Sequence[float]
    ) -> np.ndarray:
        """Quantiles of each row's predictive distribution.

        Exact (:func:`distribution_quantiles`) with ``n_samples="exact"``, else empirical
        quantiles of :attr:`n_samples` draws (:func:`sample_quantiles`).

        Parameters
        ----------
        policy : NumberPolicy
            The policy to decode with.
        inputs : RowInputs
            The rows.
        levels : sequence of float
            Levels in [0, 1].

        Returns
        -------
        q : ndarray of shape (n_rows, len(levels))
        """
        if self.n_samples == EXACT:
            return self._reduce_exact(policy, inputs, levels)
        return sample_quantiles(self.draw(policy, inputs, greedy=False), levels)

    def calibration_draws(
        self, policy: NumberPolicy, inputs: RowInputs, progress: bool = True
    ) -> np.ndarray:
        """Return the draws whose quantiles calibrated intervals are made of.

        Calibration rows and new rows go through this same method, so that their raw
        bounds, and so their conformity scores, are computed alike
        (:mod:`llmregressor.conformal`).

        Parameters
        ----------
        policy : NumberPolicy
            The policy to decode with.
        inputs : RowInputs
            The rows.
        progress : bool, default=True
            Allow the progress bar (shown when :attr:`verbose` > 0).

        Returns
        -------
        draws : ndarray of shape (n_rows, n_draws)
            :attr:`n_samples` stratified samples per row; with ``n_samples="exact"`` the
            exact distribution's quantiles at the midpoints of
            :data:`EXACT_CALIBRATION_POINTS` equal strata (``(j + 0.5) / 200``).
        """
        if self.n_samples == EXACT:
            levels = (np.arange(EXACT_CALIBRATION_POINTS) + 0.5) / EXACT_CALIBRATION_POINTS
            return self._reduce_exact(policy, inputs, levels, progress)
        return self.draw(policy, inputs, greedy=False, progress=progress)


# From this many rows early_stopping="auto" holds out a validation split: on fewer, a split
# of a few dozen rows is too noisy to pick epochs and the rows are worth more as training.
EARLY_STOPPING_MIN_ROWS = 1000


def validation_rows(
    n_rows: int, early_stopping: str | bool, fraction: float, seed: int, stacklevel: int = 2
) -> np.ndarray:
    """Boolean mask of the rows a fit holds out for validation.

    Parameters
    ----------
    n_rows : int
        Training rows.
    early_stopping : "auto" or bool
        The estimator's parameter: nothing is held out when it is off; ``"auto"`` turns
        it on from :data:`EARLY_STOPPING_MIN_ROWS` rows.
    fraction : float
        Share of rows to hold out (``validation_fraction``).
    seed : int
        The fit's seed; the split uses a stream of its own, so it does not shift when
        training draws change.
    stacklevel : int, default=2
        Of the warning below (as in :func:`warnings.warn`): the estimator points it at the
        line that called ``fit``.

    Returns
    -------
    is_val : ndarray of bool, shape (n_rows,)

    Warns
    -----
    UserWarning
        When ``early_stopping=True`` but fewer than 2 rows would be held out, so it is
        switched off. ``"auto"`` decides by itself and is not told.
    """
    explicit = not isinstance(early_stopping, str)  # True/False, numpy bools too
    enabled = bool(early_stopping) if explicit else n_rows >= EARLY_STOPPING_MIN_ROWS
    n_val = int(fraction * n_rows) if enabled else 0
    if enabled and n_val < 2 and explicit:
        warnings.warn(
            f"early_stopping=True needs at least 2 validation rows, but "
            f"validation_fraction={fraction} of {n_rows} rows gives {n_val}; training "
            "without early stopping.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return _held_out(n_rows, n_val if n_val >= 2 else 0, seed)


def _held_out(n_rows: int, n_held: int, seed: int) -> np.ndarray:
    """Mask of ``n_held`` rows drawn from the split's own stream of the fit's seed."""
    is_held = np.zeros(n_rows, dtype=bool)
    if n_held > 0:
        split_rng = np.random.default_rng([seed, 1])
        is_held[split_rng.permutation(n_rows)[:n_held]] = True
    return is_held


# Fewest calibration rows a fit calibrates intervals with. With n rows, coverages above
# n / (n + 1) get infinite intervals (95% needs 19 rows), and the coverage reached given
# one calibration set spreads by about sqrt(c (1 - c) / n) around c (0.067 for a 90% interval
# on 20 rows): fewer rows calibrate too loosely to be worth their training.
CALIBRATION_MIN_ROWS = 20


def calibration_rows(is_val: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the rows whose draws calibrate a fit's intervals.

    The validation rows when the fit holds some out (early stopping): they are not trained
    on either. Otherwise ``fraction`` of the rows, drawn as :func:`validation_rows` would
    draw them with early stopping on; the fit then trains without them.

    Parameters
    ----------
    is_val : ndarray of bool, shape (n_rows,)
        The fit's validation rows (:func:`validation_rows`).
    fraction : float
        Share of rows to hold out when there are no validation rows
        (``validation_fraction``).
    seed : int
        The fit's seed.

    Returns
    -------
    is_cal : ndarray of bool, shape (n_rows,)
        No row at all when there would be fewer than :data:`CALIBRATION_MIN_ROWS`: the fit
        then trains on them and does not calibrate.
    """
    n_rows = len(is_val)
    is_cal = is_val.copy() if is_val.any() else _held_out(n_rows, int(fraction * n_rows), seed)
    if is_cal.sum() < CALIBRATION_MIN_ROWS:
        return np.zeros(n_rows, dtype=bool)
    return is_cal


class Callback:
    """Base class of hooks into a fit's training (as skorch's and TRL's callbacks).

    Subclass it and override the hooks you need; pass instances in the estimator's
    ``callbacks`` parameter or to :class:`Trainer`. A callback observes: it must not change
    the policy's weights or draw from the fit's random streams, or the fit is no longer
    reproducible from ``random_state``.
    """

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        """Run after every SFT and RL epoch, once its record is logged and checkpointed.

        It runs on every process of a multi-process fit (one that raises on a single
        process leaves the others waiting); an epoch whose callback raised is already
        checkpointed, so a resumed fit does not call it again for that epoch. Estimators
        cloned by ``GridSearchCV`` and friends deep-copy their callbacks.

        Parameters
        ----------
        trainer : Trainer
            The running engine: its ``policy`` (in the epoch's state), ``codec`` and
            ``sampler``.
        record : dict
            A copy of the epoch's history record (``phase`` is ``"sft"`` or ``"rl"``).
        """


class Trainer:
    """Run a fit's training phases on a policy.

    Parameters
    ----------
    policy : NumberPolicy
        The policy to train in place.
    codec : NumberCodec
        The fitted codec.
    inputs : RowInputs
        Model inputs of all training rows.
    y : ndarray of shape (n_rows,)
        Training targets in the units the model decodes (the raw targets, or with a
        residual anchor the targets minus the rows' estimates).
    sampler : Sampler
        Decodes the validation rows as prediction would.
    is_val : ndarray of bool, optional
        Rows held out for validation (:func:`validation_rows`); none by default.
    parallel : DataParallel, optional
        This process's share of each batch; one process by default.
    verbose : int, default=0
        Progress bars (on the main process only) when > 0.
    callbacks : sequence of Callback, default=()
        Called after every epoch.
    checkpoints : FitCheckpoints, optional
        Save every epoch and resume from the folder's checkpoint.
    sft_check : callable, optional
        Called with the epoch's index after every SFT epoch (the ``check`` of
        :func:`~llmregressor._training.run_phase`): the fields it returns join the epoch's
        record, and a true ``"stop"`` ends SFT there. The estimator's
        ``residual_patience`` is one.

    Attributes
    ----------
    train_inputs : RowInputs
        The rows trained on (validation rows removed).
    y_train : ndarray
        Their targets.
    validate : callable or None
        The decoded validation RMSE of the current policy (``sampler.mode``), None without
        validation rows.
    """

    def __init__(
        self,
        policy: NumberPolicy,
        codec: NumberCodec,
        inputs: RowInputs,
        y: np.ndarray,
        sampler: Sampler,
        *,
        is_val: np.ndarray | None = None,
        parallel: DataParallel | None = None,
        verbose: int = 0,
        callbacks: Sequence[Callback] = (),
        checkpoints: FitCheckpoints | None = None,
        sft_check: Callable[[int], dict] | None = None,
    ) -> None:
        self.policy, self.codec, self.sampler = policy, codec, sampler
        self.sft_check = sft_check
        self.parallel = parallel or DataParallel()
        self.verbose = verbose if self.parallel.is_main else 0
        self.callbacks = list(callbacks)
        self.checkpoints = checkpoints
        is_val = np.zeros(len(y), dtype=bool) if is_val is None else is_val
        self.train_inputs = inputs.take(np.flatnonzero(~is_val))
        self.y_train = y[~is_val]
        self.validate = self._validator(inputs, y, is_val)

    def _validator(
        self, inputs: RowInputs, y: np.ndarray, is_val: np.ndarray
    ) -> Callable[[], float] | None:
        """Each process decodes its share of the validation rows; all get the same RMSE."""
        if not is_val.any():
            return None
        all_rows = np.flatnonzero(is_val)
        rows = all_rows[self.parallel.shard(len(all_rows))]
        val_inputs = inputs.take(rows)

        def validate() -> float:
            predictions = self.sampler.predict(self.policy, val_inputs, progress=False)
            squared = self.parallel.all_sum(np.array([np.sum((predictions - y[rows]) ** 2)]))
            return float(np.sqrt(squared[0] / len(all_rows)))

        return validate

    def _on_epoch_end(self, record: dict) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(self, record)

    def _run(
        self,
        phase: Phase,
        config: PhaseConfig,
        rng: np.random.Generator,
        check: Callable[[int], dict] | None = None,
    ) -> list[dict]:
        return run_phase(
            phase,
            self.policy,
            self.train_inputs,
            config,
            rng,
            validate=self.validate,
            verbose=self.verbose,
            parallel=self.parallel,
            checkpoint=self.checkpoints.phase(phase.name) if self.checkpoints else None,
            on_epoch_end=self._on_epoch_end,
            check=check,
        )

    def sft(self, config: SFTConfig, rng: np.random.Generator) -> list[dict]:
        """Run the SFT phase: token-level losses on the encoded targets.

        Parameters
        ----------
        config : SFTConfig
            Epochs, learning rate, batch size, patience, loss, gradient checkpointing.
        rng : numpy.random.Generator
            Shuffles the batches.

        Returns
        -------
        history : list of dict
            One record per epoch: ``phase``, ``epoch``, ``train_loss``, ``val_rmse``,
            ``lr``, ``time_s``; with a number-aware term also ``train_ce`` and
            ``train_term``; with ``sft_check``, the fields it returned.

        Raises
        ------
        TrainingDivergedError
            If the gradients or weights stop being finite.
        """
        phase = SFTPhase(self.policy, self.codec.encode(self.y_train), config, self.parallel)
        backbone = self.policy.backbone
        with (
            backbone.caching_prompts(),
            backbone.gradient_checkpointing(config.gradient_checkpointing),
        ):
            return self._run(phase, config, rng, check=self.sft_check)

    def rl(self, config: RLConfig, reward: RewardFn, rng: np.random.Generator) -> list[dict]:
        """Run the RL phase (ReMax or GRPO) from the policy's current state.

        Called on a fitted SFT-only estimator's trainer, it continues RL from that SFT
        state, which is also the KL reference.

        Parameters
        ----------
        config : RLConfig
            Algorithm and hyper-parameters.
        reward : callable
            From :func:`~llmregressor.rl.make_reward`.
        rng : numpy.random.Generator
            Batch order and rollout sampling.

        Returns
        -------
        history : list of dict
            ``phase="rl_step"`` records (reward mean/std, zero-spread share, entropy, KL,
            expert loss, lr) and ``phase="rl"`` epoch records (``val_rmse``, ``lr``,
            ``time_s``); with validation, epoch -1 scores the SFT state first.

        Raises
        ------
        TrainingDivergedError
            If the gradients or weights stop being finite.
        """
        phase = RLPhase(self.policy, self.y_train, self.codec, config, reward, rng, self.parallel)
        with self.policy.backbone.caching_prompts():
            return self._run(phase, config, rng)

    def fit(
        self,
        sft: SFTConfig,
        rl: RLConfig | None,
        reward: RewardFn | None,
        rng: np.random.Generator,
    ) -> list[dict]:
        """Run SFT, then RL when ``rl`` is given, on one random stream.

        Parameters
        ----------
        sft : SFTConfig
            The SFT phase's settings.
        rl : RLConfig or None
            The RL phase's settings; None (or 0 epochs) skips RL.
        reward : callable or None
            From :func:`~llmregressor.rl.make_reward` (unused without RL).
        rng : numpy.random.Generator
            Shuffles batches and draws rollouts, SFT first, then RL.

        Returns
        -------
        history : list of dict
            Both phases' records, in order.
        """
        # One prompt cache for both phases: RL reuses what SFT computed.
        with self.policy.backbone.caching_prompts():
            history = self.sft(sft, rng)
            if rl is not None and rl.epochs > 0:
                history += self.rl(rl, reward, rng)
        return history
