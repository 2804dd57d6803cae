"""A Gaussian-process anchor, and the additive anchor blended with it.

The additive anchor (:class:`~llmregressor.anchor.RidgeAnchor` with splines) reads each
numeric column on its own: it cannot carry an interaction between two columns, which a
Gaussian process with one length scale per feature does. At a few hundred rows neither
model is best everywhere, and their mean is often better than both, so
``anchor="additive_gp"`` (:class:`KernelBlendAnchor`) weighs the two by cross-validation on
the training rows. The process sees the numeric and categorical columns; free-text columns
are left to the ridge, which reads their words and, through the base LM, their cells.

Both classes predict from plain arrays and store themselves as JSON values
(:meth:`KernelBlendAnchor.to_json`), so a model folder keeps them without pickle.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Kernel, WhiteKernel
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.utils.validation import check_is_fitted, validate_data

from .anchor import (
    CHOICE_FOLDS,
    MIN_ROWS_TO_CHOOSE,
    RidgeAnchor,
    TableInputMixin,
    _columns,
    _count,
    _names_from_json,
    _weights,
    simplest_within_one_paired_se,
)
from .features import TEXT_CARDINALITY, _as_float, _as_text, numeric_columns

__all__ = [
    "FOLD_KERNELS",
    "GP_WEIGHTS",
    "SHARE_RULES",
    "GaussianProcessAnchor",
    "KernelBlendAnchor",
]

# The shares of the Gaussian process that KernelBlendAnchor chooses from: a coarse grid,
# because a weight tuned finely on a few hundred rows is tuned to their noise.
GP_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)

# How KernelBlendAnchor chooses among its shares (``share_rule``): the least cross-validated
# error, or the smallest share within one paired standard error of it.
SHARE_RULES = ("least_error", "one_se")

# Whether the cross-validation folds keep the process's kernel fitted on every training row,
# or fit their own (``fold_kernels``).
FOLD_KERNELS = ("refit", "fixed")

# Bounds of the kernel's hyperparameters, in standardized units of features and target.
_LENGTH_SCALE_BOUNDS = (1e-2, 1e3)
_NOISE_BOUNDS = (1e-5, 1e1)


def _default_kernel(n_features: int) -> Kernel:
    """Return an amplitude times an RBF of one length scale per feature, plus white noise."""
    return ConstantKernel(1.0) * RBF(
        np.ones(n_features), length_scale_bounds=_LENGTH_SCALE_BOUNDS
    ) + WhiteKernel(0.1, noise_level_bounds=_NOISE_BOUNDS)


def _fit_process(features: np.ndarray, target: np.ndarray) -> GaussianProcessRegressor:
    """Fit the default kernel's hyperparameters and the process on standardized rows."""
    process = GaussianProcessRegressor(
        _default_kernel(features.shape[1]), n_restarts_optimizer=0, random_state=0
    )
    with warnings.catch_warnings():
        # A length scale at its upper bound is a feature the process found irrelevant:
        # what one length scale per feature is for, not a failure to converge.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return process.fit(features, target)


def _scales(values: np.ndarray) -> np.ndarray:
    """Return each column's standard deviation, 1 where it is 0 (a constant stays 0)."""
    scales = values.std(axis=0)
    return np.where(scales > 0, scales, 1.0)


class GaussianProcessAnchor(TableInputMixin, RegressorMixin, BaseEstimator):
    """A Gaussian process over the standardized numeric and one-hot categorical columns.

    Numeric columns are imputed with their mean, flagged when a training cell was missing
    and standardized; non-numeric columns with at most
    :data:`~llmregressor.features.TEXT_CARDINALITY` distinct cells are one-hot encoded;
    other columns (free text, identifiers) are not read. The target is standardized. The
    kernel is an amplitude times an RBF with one length scale per feature plus white
    noise, its hyperparameters fitted by maximizing the marginal likelihood
    (scikit-learn's ``GaussianProcessRegressor``, one optimizer start). :meth:`predict`
    returns the posterior mean, computed from the stored arrays.

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit` (only when X had string column names).
    numeric_columns_ : ndarray of int
        Indices of the numeric columns.
    numeric_means_, numeric_scales_ : ndarray of float
        Each numeric column's mean (also what a missing cell becomes) and scale.
    flagged_columns_ : ndarray of int
        Positions, among the numeric columns, of those with a missing training cell: each
        adds a standardized indicator feature.
    flag_means_, flag_scales_ : ndarray of float
        The indicators' means and scales.
    categorical_columns_ : ndarray of int
        Indices of the categorical columns.
    categories_ : list of list of str
        Each categorical column's categories; an unseen one encodes as zeros.
    train_features_ : ndarray of shape (n_samples, n_gp_features)
        The training rows as the process reads them.
    dual_coef_ : ndarray of shape (n_samples,)
        The posterior mean's weights of the training rows' kernel values.
    length_scales_ : ndarray of shape (n_gp_features,)
        The RBF's length scales.
    amplitude_ : float
        The RBF's variance, in units of the standardized target.
    noise_ : float
        The white noise's variance, in the same units.
    y_mean_, y_scale_ : float
        The target's mean and scale.
    """

    def fit(self, X, y) -> GaussianProcessAnchor:
        """Fit the features' encoding, then the process on the encoded rows.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Numbers, categories, strings; NaN/None mean missing.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        self : GaussianProcessAnchor
        """
        X, y = validate_data(self, X, y, dtype=None, ensure_all_finite="allow-nan", y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        is_numeric = numeric_columns(X)
        self.numeric_columns_ = np.flatnonzero(is_numeric)
        values = _as_float(X[:, self.numeric_columns_])
        missing = np.isnan(values)
        present = (~missing).sum(axis=0)
        # A column missing in every training row is 0 everywhere (its flag is constant).
        self.numeric_means_ = np.where(missing, 0.0, values).sum(axis=0) / np.maximum(present, 1)
        self.numeric_scales_ = _scales(np.where(missing, self.numeric_means_, values))
        self.flagged_columns_ = np.flatnonzero(missing.any(axis=0))
        flags = missing[:, self.flagged_columns_].astype(np.float64)
        self.flag_means_, self.flag_scales_ = flags.mean(axis=0), _scales(flags)
        cells = {j: sorted(set(_as_text(X[:, [j]]).ravel())) for j in np.flatnonzero(~is_numeric)}
        # Columns of many distinct cells (free text, identifiers) are left to the ridge: as
        # one-hot features each would add a length scale per cell to fit on few rows.
        self.categorical_columns_ = np.array(
            [j for j, found in cells.items() if len(found) <= TEXT_CARDINALITY], dtype=np.intp
        )
        self.categories_ = [[str(c) for c in cells[j]] for j in self.categorical_columns_]
        features = self._features(X)
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(_scales(y[:, None])[0])
        self.train_features_ = features
        if features.shape[1] == 0:
            # No column to read: the process is its prior, the training targets' mean.
            self.dual_coef_, self.length_scales_ = np.zeros(len(y)), np.ones(0)
            self.amplitude_ = self.noise_ = 1.0
            return self
        process = _fit_process(features, (y - self.y_mean_) / self.y_scale_)
        self.dual_coef_ = np.asarray(process.alpha_, dtype=np.float64).ravel()
        self.amplitude_ = float(process.kernel_.k1.k1.constant_value)
        length_scales = np.asarray(process.kernel_.k1.k2.length_scale, dtype=np.float64)
        self.length_scales_ = np.broadcast_to(length_scales, (features.shape[1],)).copy()
        self.noise_ = float(process.kernel_.k2.noise_level)
        return self

    def _features(self, X: np.ndarray) -> np.ndarray:
        """Encode validated rows as the process reads them."""
        values = _as_float(X[:, self.numeric_columns_])
        missing = np.isnan(values)
        imputed = np.where(missing, self.numeric_means_, values)
        blocks = [
            (imputed - self.numeric_means_) / self.numeric_scales_,
            (missing[:, self.flagged_columns_] - self.flag_means_) / self.flag_scales_,
        ]
        for column, categories in zip(self.categorical_columns_, self.categories_, strict=True):
            cells = _as_text(X[:, [column]]).ravel()
            blocks.append((cells[:, None] == np.asarray(categories, dtype=object)).astype(float))
        return np.hstack([block.reshape(len(X), -1) for block in blocks])

    @property
    def fitted_kernel(self) -> Kernel:
        """The fitted kernel, its hyperparameters fixed."""
        check_is_fitted(self)
        return ConstantKernel(self.amplitude_, "fixed") * RBF(
            self.length_scales_, "fixed"
        ) + WhiteKernel(self.noise_, "fixed")

    def out_of_fold_predictions(self, y, folds: KFold, refit_kernel: bool = False) -> np.ndarray:
        """Predict each training row from a process fitted on the other folds' rows.

        The refits keep this fit's feature encoding. With ``refit_kernel=False`` they also
        keep its kernel, so each costs one Cholesky factorization; but that kernel was fitted
        on the held-out rows too, which makes the process's cross-validated error
        optimistic. With ``refit_kernel=True`` each fold fits the kernel's hyperparameters
        afresh on its own rows, from the same start as :meth:`fit`.

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            The targets this process was fitted on.
        folds : KFold
            How to split the training rows.
        refit_kernel : bool, default=False
            Whether each fold fits its own kernel.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        features = self.train_features_
        target = (np.asarray(y, dtype=np.float64) - self.y_mean_) / self.y_scale_
        y_pred = np.empty(len(target))
        for train, test in folds.split(features):
            if refit_kernel:
                process = _fit_process(features[train], target[train])
            else:
                process = GaussianProcessRegressor(self.fitted_kernel, optimizer=None)
                process.fit(features[train], target[train])
            y_pred[test] = process.predict(features[test])
        return self.y_mean_ + self.y_scale_ * y_pred

    def predict(self, X) -> np.ndarray:
        """Predict the posterior mean of each row's target.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the columns seen in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=False)
        distances = cdist(
            self._features(X) / self.length_scales_,
            self.train_features_ / self.length_scales_,
            "sqeuclidean",
        )
        kernel = self.amplitude_ * np.exp(-0.5 * distances)
        return self.y_mean_ + self.y_scale_ * (kernel @ self.dual_coef_)

    def to_json(self) -> dict:
        """Return the fitted process as JSON values (floats written exactly).

        Returns
        -------
        state : dict
            What :meth:`from_json` reads.
        """
        check_is_fitted(self)
        state = {
            "n_features_in": int(self.n_features_in_),
            "numeric_columns": self.numeric_columns_.tolist(),
            "numeric_means": self.numeric_means_.tolist(),
            "numeric_scales": self.numeric_scales_.tolist(),
            "flagged_columns": self.flagged_columns_.tolist(),
            "flag_means": self.flag_means_.tolist(),
            "flag_scales": self.flag_scales_.tolist(),
            "categorical_columns": self.categorical_columns_.tolist(),
            "categories": self.categories_,
            "train_features": self.train_features_.tolist(),
            "dual_coef": self.dual_coef_.tolist(),
            "length_scales": self.length_scales_.tolist(),
            "amplitude": self.amplitude_,
            "noise": self.noise_,
            "y_mean": self.y_mean_,
            "y_scale": self.y_scale_,
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in"] = self.feature_names_in_.tolist()
        return state

    @classmethod
    def from_json(cls, state: dict) -> GaussianProcessAnchor:
        """Rebuild a fitted process from :meth:`to_json`.

        Parameters
        ----------
        state : dict
            From :meth:`to_json`.

        Returns
        -------
        anchor : GaussianProcessAnchor
            Predicts exactly as the process that wrote ``state``.

        Raises
        ------
        ValueError
            If ``state`` is incomplete or inconsistent, or holds a non-finite number.
        """
        anchor = cls()
        try:
            anchor.n_features_in_ = _count(state["n_features_in"])
            _names_from_json(anchor, state)
            anchor.numeric_columns_ = _columns(state["numeric_columns"], anchor.n_features_in_)
            anchor.numeric_means_ = _weights(state["numeric_means"])
            anchor.numeric_scales_ = _weights(state["numeric_scales"])
            anchor.flagged_columns_ = _columns(
                state["flagged_columns"], anchor.numeric_columns_.size
            )
            anchor.flag_means_ = _weights(state["flag_means"])
            anchor.flag_scales_ = _weights(state["flag_scales"])
            anchor.categorical_columns_ = _columns(
                state["categorical_columns"], anchor.n_features_in_
            )
            anchor.categories_ = [[str(c) for c in cats] for cats in state["categories"]]
            anchor.dual_coef_ = _weights(state["dual_coef"])
            anchor.length_scales_ = _weights(state["length_scales"])
            anchor.train_features_ = np.asarray(state["train_features"], dtype=np.float64)
            for name in ("amplitude", "noise", "y_mean", "y_scale"):
                setattr(anchor, f"{name}_", float(_weights([state[name]])[0]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"incomplete GaussianProcessAnchor state: {err!r}") from err
        n_numeric, n_flags = anchor.numeric_columns_.size, anchor.flagged_columns_.size
        width = n_numeric + n_flags + sum(len(cats) for cats in anchor.categories_)
        consistent = (
            anchor.numeric_means_.size == anchor.numeric_scales_.size == n_numeric
            and anchor.flag_means_.size == anchor.flag_scales_.size == n_flags
            and len(anchor.categories_) == anchor.categorical_columns_.size
            and anchor.length_scales_.size == width
            and anchor.train_features_.shape == (anchor.dual_coef_.size, width)
            and np.isfinite(anchor.train_features_).all()
            and (anchor.numeric_scales_ > 0).all()
            and (anchor.flag_scales_ > 0).all()
            and (anchor.length_scales_ > 0).all()
            and anchor.y_scale_ > 0
        )
        if not consistent:
            raise ValueError(
                "inconsistent GaussianProcessAnchor state: its columns, features and scales "
                "do not match one another"
            )
        return anchor


class KernelBlendAnchor(TableInputMixin, RegressorMixin, BaseEstimator):
    """The additive ridge anchor and a Gaussian process, weighed by cross-validation.

    The anchor of ``anchor="additive_gp"``: ``(1 - w)`` times
    :class:`~llmregressor.anchor.RidgeAnchor` (``ridge``, its readings chosen as it chooses
    them) plus ``w`` times :class:`GaussianProcessAnchor`, with ``w`` a value of
    ``gp_weights`` chosen by ``share_rule`` from its blend's cross-validated squared errors
    on the training rows: ``cv_folds`` folds (``KFold`` shuffled with seed 0, then seeds 1,
    2, ... for each further of ``cv_repeats`` repeats), a row's error its mean over the
    repeats. The folds refit the ridge
    with the readings its fit on every row chose, and the process with the feature encoding
    its fit on every row found and, by ``fold_kernels``, that fit's kernel or one of their
    own (:meth:`GaussianProcessAnchor.out_of_fold_predictions`). With fewer rows than twice
    the larger of ``cv_folds`` and ``CHOICE_FOLDS``, or no column the process reads, ``w``
    is 0.

    Parameters
    ----------
    ridge : RidgeAnchor or None, default=None
        The ridge member, unfitted; None: ``RidgeAnchor(numeric_basis="auto",
        text_cells="auto")``, the ``"additive"`` anchor without the LM's cell embeddings.
    gp_weights : tuple of float, default=GP_WEIGHTS
        The process's shares to choose from, each in [0, 1].
    share_rule : {"least_error", "one_se"}, default="least_error"
        ``"least_error"``: the share of least cross-validated error (the smallest on a
        tie). ``"one_se"``: the smallest share whose per-row squared errors exceed those of
        the least-error share by at most one standard error of their mean difference
        (:func:`~llmregressor.anchor.simplest_within_one_paired_se` over the rows): the
        process gets a larger share only where it wins clearly; with honest folds it
        gives up much of what the blend's averaging buys.
    fold_kernels : {"refit", "fixed"}, default="refit"
        ``"refit"``: each fold fits its own kernel (five more marginal likelihood
        optimizations), so that the process's cross-validated error is as honest as the
        ridge's. ``"fixed"``: the folds keep the kernel fitted on every training row (one
        Cholesky factorization each); that kernel saw the held-out rows, so the process's
        error is optimistic, the more so the more features it has one length scale for.
    cv_folds : int, default=CHOICE_FOLDS
        How many folds the share is chosen on. More folds train each fold's members on
        more of the rows, nearer to the fit on all of them, at the cost of more fits.
    cv_repeats : int, default=1
        How many differently shuffled splits into ``cv_folds`` folds the errors are averaged
        over: each repeat refits both members on every fold, and the average is a less noisy
        estimate of each share's error than one split's.

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit` (only when X had string column names).
    ridge_ : RidgeAnchor
        The fitted ridge member.
    gp_ : GaussianProcessAnchor or None
        The fitted process, None where ``gp_weight_`` is 0.
    gp_weight_ : float
        The process's share ``w``.
    cv_errors_ : ndarray of shape (len(gp_weights),)
        Each share's cross-validated mean squared error (empty where none was chosen).
    """

    def __init__(
        self,
        ridge: RidgeAnchor | None = None,
        gp_weights: tuple[float, ...] = GP_WEIGHTS,
        share_rule: str = "least_error",
        fold_kernels: str = "refit",
        cv_folds: int = CHOICE_FOLDS,
        cv_repeats: int = 1,
    ):
        self.ridge = ridge
        self.gp_weights = gp_weights
        self.share_rule = share_rule
        self.fold_kernels = fold_kernels
        self.cv_folds = cv_folds
        self.cv_repeats = cv_repeats

    def fit(self, X, y) -> KernelBlendAnchor:
        """Fit both members on every row and choose the process's share by cross-validation.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Numbers, categories, strings; NaN/None mean missing.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        self : KernelBlendAnchor

        Raises
        ------
        ValueError
            If ``gp_weights`` is empty or holds a share outside [0, 1], ``share_rule`` or
            ``fold_kernels`` is not one of its values, ``cv_folds`` is not an integer of at
            least 2 or ``cv_repeats`` not a positive integer.
        """
        weights = np.asarray(self.gp_weights, dtype=np.float64)
        if weights.ndim != 1 or not weights.size or ((weights < 0) | (weights > 1)).any():
            raise ValueError(f"gp_weights must be shares in [0, 1], got {self.gp_weights!r}")
        if self.share_rule not in SHARE_RULES:
            raise ValueError(f"share_rule must be one of {SHARE_RULES}, got {self.share_rule!r}")
        if self.fold_kernels not in FOLD_KERNELS:
            raise ValueError(
                f"fold_kernels must be one of {FOLD_KERNELS}, got {self.fold_kernels!r}"
            )
        for name, least in (("cv_folds", 2), ("cv_repeats", 1)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
        valid, y = validate_data(
            self, X, y, dtype=None, ensure_all_finite="allow-nan", y_numeric=True
        )
        y = np.asarray(y, dtype=np.float64)
        # The members get a DataFrame as it came: the ridge names embedded cells after
        # their columns.
        X = X if hasattr(X, "iloc") else valid
        ridge = self.ridge if self.ridge is not None else RidgeAnchor("auto", "auto")
        self.ridge_ = clone(ridge).fit(X, y)
        self.gp_, self.gp_weight_, self.cv_errors_ = None, 0.0, np.empty(0)
        if len(y) < max(MIN_ROWS_TO_CHOOSE, 2 * self.cv_folds):
            return self
        gp = GaussianProcessAnchor().fit(X, y)
        if gp.train_features_.shape[1] == 0:
            return self
        fixed_ridge = clone(self.ridge_).set_params(
            numeric_basis=self.ridge_.numeric_basis_,
            text_cells=self.ridge_.text_cells_,
            text_embeddings=self.ridge_.text_embeddings_,
        )
        errors = np.zeros((len(y), weights.size))
        for repeat in range(self.cv_repeats):
            folds = KFold(self.cv_folds, shuffle=True, random_state=repeat)
            members = np.column_stack(
                [
                    cross_val_predict(fixed_ridge, X, y, cv=folds),
                    gp.out_of_fold_predictions(y, folds, self.fold_kernels == "refit"),
                ]
            )
            blends = members[:, [0]] * (1 - weights) + members[:, [1]] * weights
            errors += (blends - y[:, None]) ** 2
        errors /= self.cv_repeats
        self.cv_errors_ = errors.mean(axis=0)
        # Both rules take the smallest share among equals, so they see the shares ascending.
        order = np.argsort(weights, kind="stable")
        if self.share_rule == "one_se":
            # The rows are the paired units of the rule.
            chosen = order[simplest_within_one_paired_se(-errors[:, order])]
        else:
            chosen = order[int(np.argmin(self.cv_errors_[order]))]
        self.gp_weight_ = float(weights[chosen])
        if self.gp_weight_ > 0:
            self.gp_ = gp
        return self

    def predict(self, X) -> np.ndarray:
        """Predict the blend of the two members.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the columns seen in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        valid = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=False)
        X = X if hasattr(X, "iloc") else valid
        y_pred = self.ridge_.predict(X)
        if self.gp_ is None:
            return y_pred
        return (1 - self.gp_weight_) * y_pred + self.gp_weight_ * self.gp_.predict(X)

    def to_json(self) -> dict:
        """Return the fitted blend as JSON values: both members' states and the share.

        Returns
        -------
        state : dict
            What :meth:`from_json` reads.
        """
        check_is_fitted(self)
        state = {
            "n_features_in": int(self.n_features_in_),
            "ridge": self.ridge_.to_json(),
            "gp": None if self.gp_ is None else self.gp_.to_json(),
            "gp_weight": self.gp_weight_,
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in"] = self.feature_names_in_.tolist()
        return state

    @classmethod
    def from_json(cls, state: dict) -> KernelBlendAnchor:
        """Rebuild a fitted blend from :meth:`to_json`.

        Parameters
        ----------
        state : dict
            From :meth:`to_json` (a model folder's ``anchor`` section).

        Returns
        -------
        anchor : KernelBlendAnchor
            Predicts exactly as the blend that wrote ``state``.

        Raises
        ------
        ValueError
            If ``state`` or a member's state is incomplete or inconsistent.
        """
        anchor = cls()
        try:
            anchor.n_features_in_ = _count(state["n_features_in"])
            _names_from_json(anchor, state)
            anchor.ridge_ = RidgeAnchor.from_json(state["ridge"])
            gp = state["gp"]
            anchor.gp_ = None if gp is None else GaussianProcessAnchor.from_json(gp)
            anchor.gp_weight_ = float(_weights([state["gp_weight"]])[0])
        except (KeyError, TypeError) as err:
            raise ValueError(f"incomplete KernelBlendAnchor state: {err!r}") from err
        anchor.cv_errors_ = np.empty(0)
        members = [anchor.ridge_] + ([anchor.gp_] if anchor.gp_ is not None else [])
        if not 0 <= anchor.gp_weight_ <= 1 or any(
            member.n_features_in_ != anchor.n_features_in_ for member in members
        ):
            raise ValueError(
                "inconsistent KernelBlendAnchor state: its share is outside [0, 1] or a "
                "member reads another number of columns"
            )
        return anchor
