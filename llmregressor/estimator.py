"""LLMRegressor: the scikit-learn estimator that orchestrates serialization, codec and phases."""

from __future__ import annotations

import inspect
import logging
import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._checkpoint import FitCheckpoints, fit_identity
from ._checks import check_finite_features, validate_data
from ._distributed import DataParallel, data_parallel
from ._locks import FIT_LOCK
from .anchor import anchor_estimates, cross_fit, make_anchor, residual_slope, with_estimates
from .backbone_protocol import RowInputs, backbone_for
from .backbones import resolve_compute_dtype
from .conformal import (
    Calibration,
    central_levels,
    conformal_margin,
    conformalize,
    conformity_scores,
)
from .engine import (
    CALIBRATION_MIN_ROWS,
    EXACT,
    EXACT_CALIBRATION_POINTS,
    Callback,
    Sampler,
    Trainer,
    aggregate,
    calibration_rows,
    raw_bounds,
    sample_quantiles,
    validation_rows,
)
from .features import column_names
from .fitted_policy import FittedPolicy, forked_torch_rng, resolve_device
from .params import (
    RESUMABLE,
    codec_from_params,
    parameter_groups,
    parameters_docstring,
    rl_config,
    sft_config,
    validate_params,
    validate_predict_params,
)
from .persistence import load_estimator, save_estimator
from .rl import make_reward

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

    from .codecs import NumberCodec
    from .serialize import RowSerializer

logger = logging.getLogger(__name__)

__all__ = ["OUT_OF_FOLD_CALIBRATION_ROWS", "LLMRegressor"]

# Where a residual anchor's correction is scaled to 0, the training rows' out-of-fold
# residuals calibrate the intervals: at most this many (drawn with the fit's seed), which
# bounds the stored draws while keeping the margin's sampling error below half a percent.
OUT_OF_FOLD_CALIBRATION_ROWS = 4096


# Pickles written before the fitted policy moved to its own module name this class.
_PolicyHandle = FittedPolicy


class LLMRegressor(RegressorMixin, BaseEstimator):
    r"""Regression by fine-tuning a language model to decode the target's number tokens.

    Each row is serialized to a prompt (``"age:52,sex:male,...,target:"``); the target is
    written as a fixed-length sequence of number symbols by a codec; LoRA adapters on a
    causal LM learn to decode those symbols, first with token-level cross-entropy (SFT),
    then with sequence-level RL (ReMax or GRPO) whose reward is the error of the whole
    decoded number. Prediction decodes under the codec's grammar, so every output is a
    valid number.

    ``model="mlp-decoder"`` swaps the LM for the paper's from-scratch tabular backbone: an
    MLP encodes the preprocessed feature vector (categories one-hot encoded, missing
    numbers imputed and flagged, numbers and flags standardized with training statistics) and a
    small causal Transformer decoder emits the number symbols. Codecs, SFT, RL and
    prediction are the same.

    Beyond the point prediction of :meth:`predict`, the fitted policy is a predictive
    distribution: :meth:`sample` draws from it, :meth:`predict_quantiles` returns its
    empirical (or, with ``n_samples="exact"``, exact) quantiles and
    :meth:`predict_interval` a central interval of given coverage, calibrated by default:
    the fit keeps a few rows out of training (``interval_calibration``) and the raw
    quantiles are widened or narrowed by split-conformal CQR so that the intervals cover
    what they claim (:mod:`llmregressor.conformal`). With a residual anchor every
    training row calibrates too (``interval_calibration="every_row_cqr"``): where the
    anchor's correction is scaled to 0 by its out-of-fold residual, elsewhere by CQR on
    its own draws, which costs one more decode of the rows the fit trained on.
    :meth:`save` writes a fitted estimator to a folder (JSON and safetensors, no pickle)
    that :meth:`load` reads back.

    With an ``anchor``, a classic regressor's estimate of the target is one more field of
    every prompt (one more input feature of the ``"mlp-decoder"``): out-of-fold estimates
    for the training rows, the fully fitted anchor's for new rows (see
    :mod:`llmregressor.anchor`). With ``anchor_mode="residual"`` the model decodes the
    target minus that estimate, and every prediction adds the estimate back. That is the
    default: ``anchor="additive_gp"`` (a ridge regression over splines of the numeric
    columns and the words, cells and base-LM embeddings of the others, each reading
    kept only where cross-validation supports it, blended with a Gaussian process over
    the numeric and categorical columns, the process's share the smallest within one
    standard error of the best in cross-validation; see
    :mod:`llmregressor.kernel_anchor`), a residual decoded after SFT alone
    (``rl_algorithm=None``), and ``residual_scale="auto"``, which keeps only the share
    of the decoded correction that held-out rows support; SFT stops early once that
    share has come out 0 after three epochs in a row (``residual_patience=3``). On the
    public tables of docs/benchmarks.md that share was mostly 0: the default's accuracy
    there is its anchor's, and the language model contributes through the embeddings of
    text cells.
    ``anchor=None, rl_algorithm="remax"`` is the method's plain form.

    Launched with ``torchrun`` or ``accelerate launch``, :meth:`fit` trains data-parallel
    across the processes and returns the same estimator in each; only rank 0 writes
    checkpoints, and only it should write other files. ``micro_batch_size`` and
    ``gradient_checkpointing`` bound memory; ``checkpoint_dir`` and ``resume`` let an
    interrupted fit continue (see the scaling page of the documentation). Rows become
    prompts and token ids (or feature vectors) a chunk of 1024 rows at a time, as training
    and prediction reach them: a large ``X`` is never held in model-input form at once.

    The parameters, by group (each is described once, in :mod:`llmregressor.params`):

    {groups}

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit` (only when X had string column names).
    n_samples_fit_ : int
        Number of rows seen in :meth:`fit`, validation and calibration rows included.
    codec_ : NumberCodec
        The fitted number codec (target scaling and grammar), fitted on what the model
        decodes: the targets, or with a residual anchor the targets minus the estimates.
    policy_ : FittedPolicy
        The trained weights and the recipe that rebuilds the policy (the base model is
        reloaded from its source, not stored); ``policy_.policy`` is the live
        :class:`~llmregressor.decoding.NumberPolicy`.
    seed_ : int
        The seed drawn from ``random_state`` by the fit: it fixes the validation split, the
        batch order and, with each row's key, the row's samples.
    serializer_ : RowSerializer
        Writes rows as prompts (LM backbones only).
    preprocessor_ : sklearn.compose.ColumnTransformer
        Turns rows into the standardized feature vector (``"mlp-decoder"`` only).
    anchor_ : estimator
        The anchor fitted on every training row, whose predictions are the estimates of
        the rows given to :meth:`predict` and the other predicting methods (only with an
        ``anchor``; a :class:`~llmregressor.anchor.RidgeAnchor` for ``"ridge"``).
    residual_anchor_ : bool
        Whether the model decodes the target minus the anchor's estimate, which every
        prediction adds back (``anchor_mode="residual"`` at fit time; only with an
        ``anchor``). Predictions read this, not the parameter, which may change after a fit.
    residual_scale_ : float
        The share of the decoded residual added to the estimate (``residual_scale``; 1.0
        without a residual anchor; only with an ``anchor``).
    history_ : list of dict
        Training log, ``pandas.DataFrame(history_)`` tabulates it. ``phase="sft"``: one
        record per SFT epoch (``train_loss``, ``val_rmse``, ``lr``, ``time_s``, and with a
        number-aware ``sft_loss`` its parts ``train_ce`` and ``train_term``).
        ``phase="rl_step"``: one per RL step (``reward_mean``, ``reward_std`` of the
        draws' own rewards, ``reward_of_mean`` when ``reward_on`` resolves to ``"mean"``,
        ``zero_spread_share`` of prompts whose samples all got the same reward,
        ``entropy``, ``kl`` and ``expert_loss`` when on, ``lr``). ``phase="rl"``: one per
        RL epoch (``val_rmse``, ``lr``, ``time_s``; epoch -1, with ``note="SFT state"``, scores the
        SFT state), and a final ``note`` when no RL epoch beat the SFT state on validation
        and that state was kept.
    calibration_ : Calibration or None
        The calibration rows' predictive draws (made with the fit's ``n_samples``, after
        the whole fit, RL included) and targets, from which :meth:`predict_interval`
        calibrates intervals of any coverage; None when ``interval_calibration=None`` or
        when the fit had too few rows to hold some out. With a residual anchor both are
        measured from the rows' estimates, and where ``residual_scale_`` is 0 (predictions
        are the anchor's estimates) every training row calibrates: its target, measured
        from its out-of-fold estimate, with draws of 0.
    fit_time_ : float
        Seconds spent in :meth:`fit`.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from llmregressor import LLMRegressor
    >>> X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    >>> reg = LLMRegressor(random_state=0).fit(X[:256], y[:256])  # doctest: +SKIP
    >>> reg.predict(X[256:]).shape  # doctest: +SKIP
    (186,)
    """

    # The fitted state, declared once (documented under Attributes): fit sets it, a fit
    # that raises removes it, persistence stores it.
    n_features_in_: int
    feature_names_in_: np.ndarray
    n_samples_fit_: int
    codec_: NumberCodec
    serializer_: RowSerializer
    preprocessor_: ColumnTransformer
    anchor_: BaseEstimator
    residual_anchor_: bool
    residual_scale_: float
    policy_: FittedPolicy
    seed_: int
    history_: list[dict]
    calibration_: Calibration | None
    fit_time_: float

    def __init__(
        self,
        *,
        model: str = "smollm2-135m",
        number_format: str = "normalized",
        base: int = 10,
        digits: int = 3,
        exponent_digits: int = 1,
        mantissa_digits: int = 3,
        anchor: str | BaseEstimator | None = "additive_gp",
        anchor_folds: int = 5,
        anchor_mode: str = "residual",
        residual_scale: float | str = "auto",
        residual_patience: int | None = 3,
        row_format: str = "compact",
        prompt_template: str | None = None,
        significant_digits: int = 4,
        missing_value: str = "unknown",
        lora_r: int = 8,
        lora_alpha: float = 16,
        lora_dropout: float = 0.0,
        lora_target_modules: str | Sequence[str] = "all-linear",
        lora_layers: int | str | None = "auto",
        soft_prompt_tokens: int = 0,
        mlp_hidden: Sequence[int] = (1024, 1024, 1024),
        d_model: int = 256,
        decoder_layers: int = 3,
        decoder_heads: int = 4,
        decoder_ff: int = 1024,
        dropout: float = 0.1,
        batch_size: int = 16,
        sft_epochs: int = 6,
        sft_lr: float = 1e-3,
        sft_loss: str = "ntl-was",
        sft_loss_weight: float | None = None,
        early_stopping: str | bool = "auto",
        validation_fraction: float = 0.1,
        n_iter_no_change: int | None = 3,
        rl_algorithm: str | None = None,
        rl_epochs: int = 2,
        rl_lr: float = 1e-4,
        rl_batch_size: int = 16,
        n_rollouts: int = 4,
        rl_temperature: float = 1.0,
        reward: str | Callable = "squared",
        reward_on: str = "auto",
        kl_coef: float = 0.0,
        expert_coef: float = 0.05,
        clip_eps: float = 0.2,
        rl_updates_per_batch: int = 1,
        scale_rewards: str = "group",
        predict_mode: str = "mean",
        n_samples: int | str = 16,
        interval_calibration: str | None = "every_row_cqr",
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str = "auto",
        micro_batch_size: int | None = None,
        gradient_checkpointing: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: Sequence[Callback] | None = None,
    ) -> None:
        self.model = model
        self.number_format = number_format
        self.base = base
        self.digits = digits
        self.exponent_digits = exponent_digits
        self.mantissa_digits = mantissa_digits
        self.anchor = anchor
        self.anchor_folds = anchor_folds
        self.anchor_mode = anchor_mode
        self.residual_scale = residual_scale
        self.residual_patience = residual_patience
        self.row_format = row_format
        self.prompt_template = prompt_template
        self.significant_digits = significant_digits
        self.missing_value = missing_value
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_target_modules = lora_target_modules
        self.lora_layers = lora_layers
        self.soft_prompt_tokens = soft_prompt_tokens
        self.mlp_hidden = mlp_hidden
        self.d_model = d_model
        self.decoder_layers = decoder_layers
        self.decoder_heads = decoder_heads
        self.decoder_ff = decoder_ff
        self.dropout = dropout
        self.batch_size = batch_size
        self.sft_epochs = sft_epochs
        self.sft_lr = sft_lr
        self.sft_loss = sft_loss
        self.sft_loss_weight = sft_loss_weight
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.rl_algorithm = rl_algorithm
        self.rl_epochs = rl_epochs
        self.rl_lr = rl_lr
        self.rl_batch_size = rl_batch_size
        self.n_rollouts = n_rollouts
        self.rl_temperature = rl_temperature
        self.reward = reward
        self.reward_on = reward_on
        self.kl_coef = kl_coef
        self.expert_coef = expert_coef
        self.clip_eps = clip_eps
        self.rl_updates_per_batch = rl_updates_per_batch
        self.scale_rewards = scale_rewards
        self.predict_mode = predict_mode
        self.n_samples = n_samples
        self.interval_calibration = interval_calibration
        self.device = device
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.micro_batch_size = micro_batch_size
        self.gradient_checkpointing = gradient_checkpointing
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    def __sklearn_tags__(self):
        """Declare NaN, strings and categories as valid input."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        # A small model fitted for a few epochs on a few rows is no strong regressor;
        # accuracy is measured by the benchmarks, not by scikit-learn's generic checks.
        tags.regressor_tags.poor_score = True
        return tags

    # ----------------------------------------------------------------------------- fit
    def fit(self, X, y) -> LLMRegressor:
        """Fine-tune the language model on ``(X, y)``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Numbers, categories, strings; NaN/None mean missing.
        y : array-like of shape (n_samples,)
            Finite numeric targets.

        Returns
        -------
        self : LLMRegressor
            The fitted estimator. A fit that raises leaves no fitted attributes behind.

        Raises
        ------
        llmregressor.engine.TrainingDivergedError
            If the gradients or trained weights stop being finite (a learning rate or
            ``lora_alpha`` far too large); the message names the phase, epoch and step.
        """
        try:
            self._fit(X, y)
        except BaseException:
            self._discard_fitted_state()
            raise
        return self

    def _discard_fitted_state(self) -> None:
        for name in list(vars(self)):
            if name.endswith("_") and not name.startswith("__"):
                delattr(self, name)

    def __setstate__(self, state: dict) -> None:
        # Pickles written before the fitted state was declared keep it under old names, and
        # lack parameters added since (which take their defaults).
        for old, new in (("_handle", "policy_"), ("_seed", "seed_")):
            if old in state:
                state[new] = state.pop(old)
        for name, parameter in inspect.signature(type(self)).parameters.items():
            state.setdefault(name, parameter.default)
        super().__setstate__(state)

    def _fit(self, X, y) -> None:
        start = time.perf_counter()
        self._discard_fitted_state()
        params = self.get_params(deep=False)
        validate_params(params)
        # The anchor reads the rows as they were given (a DataFrame keeps its columns).
        X_given = X
        X, y = validate_data(
            self,
            X,
            y,
            dtype=None,
            ensure_all_finite="allow-nan",
            y_numeric=True,
            ensure_min_samples=2,
        )
        check_finite_features(X)
        y = np.asarray(y, dtype=np.float64)
        self.n_samples_fit_ = len(y)
        device = resolve_device(self.device)
        parallel = data_parallel(device, self.micro_batch_size)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # One seed for all processes: batch order, splits and samples must agree.
        self.seed_ = parallel.broadcast_seed(seed)
        checkpoints = None
        if self.checkpoint_dir is not None:
            shaping = {k: v for k, v in params.items() if k not in RESUMABLE}
            # The precision computed in, not the parameter: the device may change on
            # resume, and dtype="auto" is float32 on most CPUs but bfloat16 on a GPU.
            shaping["dtype"] = str(resolve_compute_dtype(self.dtype, device)).removeprefix("torch.")
            names = getattr(self, "feature_names_in_", None)
            identity = fit_identity(shaping, X, y, names)
            checkpoints = FitCheckpoints(self.checkpoint_dir, identity, parallel)
            self.seed_ = checkpoints.open(self.resume, self.seed_)
        # Fork the global RNG: weight init and dropout draw from it, and a fit must
        # neither depend on nor disturb the caller's torch random state. That state is
        # process-wide: FIT_LOCK makes fits in threads take turns. The checkpoints come
        # first, so that their folder is unlocked even if waiting for FIT_LOCK is interrupted.
        with checkpoints or nullcontext(), FIT_LOCK, forked_torch_rng():
            # After the checkpoint is opened: a resumed fit cross-fits with its checkpoint's
            # seed, and the folder is unlocked if the anchor fails.
            X_rows = X
            X, offsets = self._fit_anchor(X_given, X, y, parallel, checkpoints)
            # What the model decodes: the target, or with a residual anchor what is left of it.
            targets = y - offsets
            codec = codec_from_params(params).fit(targets)
            self.codec_ = codec
            names = column_names(self, self.n_features_in_)
            spec = backbone_for(self.model).from_params(params, X, names, codec)
            for name, value in spec.fitted_attributes().items():
                setattr(self, name, value)
            self.policy_ = FittedPolicy(spec, codec.allowed_mask(), self.device)
            torch.manual_seed(self.seed_)
            policy = self.policy_.build()
            if checkpoints is not None:
                checkpoints.check_base_model(getattr(spec, "base_fingerprint", None))
            weights = policy.backbone.trainable_parameters()
            parallel.broadcast_parameters(weights)
            parallel.seed_process(self.seed_)
            self.history_ = []
            is_val, is_cal = self._held_out_rows(len(y), caller_depth=3)
            if codec.constant_:
                logger.info(
                    "the decoded target is constant (%g): the model is not trained", targets[0]
                )
            else:
                sft_check = self._residual_check(X[is_cal], targets[is_cal], parallel)
                trainer = self._make_trainer(
                    X, targets, is_val, is_cal, parallel, checkpoints, sft_check
                )
                rng = np.random.default_rng(self.seed_)
                reward = make_reward(self.reward, codec)
                configs = sft_config(params, codec), rl_config(params)
                self.history_ = trainer.fit(*configs, reward, rng)
            parallel.broadcast_parameters(weights)
            # After the whole fit (a resumed one too), so the draws describe the final model.
            self.calibration_ = self._calibrate(X[is_cal], targets[is_cal], parallel)
            if getattr(self, "anchor_", None) is not None:
                self._fit_residual_scale(oof_residuals=targets, is_cal=is_cal)
                if self._calibrates_training_rows_on_draws():
                    self.calibration_ = self._every_row_cqr_calibration(
                        X_rows, X_given, targets, is_cal, parallel
                    )
        self.fit_time_ = time.perf_counter() - start
        logger.info("LLMRegressor fitted on %d rows in %.1f s", len(y), self.fit_time_)

    def _fit_anchor(
        self,
        X_given: object,
        X: np.ndarray,
        y: np.ndarray,
        parallel: DataParallel,
        checkpoints: FitCheckpoints | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cross-fit and fit the anchor; return the rows with their estimates, and the offsets.

        Every row's estimate, validation rows' included, comes from an anchor fitted on
        folds without that row, so no estimate has seen its own target: validation scores
        the model on estimates as good as those of new rows, never on leaked ones. The
        offsets are what the model's targets are measured from (:meth:`_offsets`).
        """
        if self.anchor is None:
            return X, self._offsets(None, len(y))
        start = time.perf_counter()
        language_model = self.model if backbone_for(self.model).kind == "lora" else None
        anchor = make_anchor(self.anchor, language_model)
        estimates, self.anchor_ = cross_fit(anchor, X_given, y, self.anchor_folds, self.seed_)
        # A constant target stays exactly constant: out-of-fold means of it may differ in
        # their last bit, and residuals of such noise are nothing to train on.
        self.residual_anchor_ = self.anchor_mode == "residual" and bool(np.ptp(y) > 0)
        # Rank 0's estimates in every process: their prompts must agree to the last digit,
        # whatever float differences the processes' anchor fits have.
        shared = torch.from_numpy(estimates)
        parallel.broadcast_parameters([shared])
        estimates = shared.numpy()
        if checkpoints is not None:
            checkpoints.check_anchor(estimates)
        logger.info(
            "anchor %s cross-fitted in %d folds and refitted in %.1f s",
            type(self.anchor_).__name__,
            min(self.anchor_folds, len(y)),
            time.perf_counter() - start,
        )
        return with_estimates(X, estimates), self._offsets(estimates, len(y))

    def _offsets(self, estimates: np.ndarray | None, n_rows: int) -> np.ndarray:
        """Return what each row's decoded number is added to: its estimate if residual.

        Zeros without an anchor or with ``anchor_mode="field"`` (as fitted), where the
        model decodes the target itself.
        """
        if estimates is None or not getattr(self, "residual_anchor_", False):
            return np.zeros(n_rows)
        return estimates

    def _fit_residual_scale(
        self,
        warn: bool = True,
        oof_residuals: np.ndarray | None = None,
        is_cal: np.ndarray | None = None,
    ) -> None:
        """Set ``residual_scale_``; scale the calibration rows' draws by it, or replace them.

        ``"auto"`` regresses the calibration rows' residual targets on their mean draws
        (no intercept: a decoded residual of 0 adds nothing) and clips the slope to [0, 1];
        ``"one_se"`` takes that slope less its standard error. The draws are then scaled
        as new rows' draws will be, so that intervals score both alike.

        Parameters
        ----------
        warn : bool, default=True
            Warn when a fitted scale has no calibration rows to be fitted on.
        oof_residuals : ndarray of shape (n_rows,), optional
            Every training row's target less its out-of-fold estimate (the fit's residual
            targets). At a scale of 0 every prediction is the full anchor's estimate, and
            each of these is as fair a conformity score as a held-out row's (the fold
            anchor that estimated the row never saw it): they replace the calibration
            rows, up to :data:`OUT_OF_FOLD_CALIBRATION_ROWS` of them. With
            ``interval_calibration="every_row"`` they do at any scale
            (:meth:`_every_row_calibration`).
        is_cal : ndarray of bool, shape (n_rows,), optional
            Which of those rows the calibration draws belong to (needed with
            ``oof_residuals`` under ``"every_row"``).
        """
        scale = 1.0
        calibration = getattr(self, "calibration_", None)
        if self.residual_anchor_:
            if not isinstance(self.residual_scale, str):
                scale = float(self.residual_scale)
            elif calibration is not None:
                scale = self._fitted_scale(calibration)
            elif warn and self.interval_calibration is None:
                # With too few rows to hold any out, the calibration warning has been given.
                warnings.warn(
                    f"residual_scale={self.residual_scale!r} chooses its scale on the "
                    "calibration rows, and interval_calibration=None holds none out: the fit "
                    "adds the whole decoded residual (residual_scale_ = 1.0). Set "
                    "residual_scale=1.0 to say so without this warning.",
                    UserWarning,
                    stacklevel=3,
                )
        self.residual_scale_ = scale
        if calibration is None:
            return
        every_row = self.interval_calibration == "every_row" and is_cal is not None
        if self.residual_anchor_ and oof_residuals is not None and (scale == 0 or every_row):
            self.calibration_ = self._every_row_calibration(
                calibration.draws, scale, oof_residuals, is_cal, calibration.n_samples
            )
        elif scale != 1.0:
            self.calibration_ = Calibration(
                calibration.draws * scale, calibration.targets, calibration.n_samples
            )

    def _every_row_calibration(
        self,
        cal_draws: np.ndarray,
        scale: float,
        oof_residuals: np.ndarray,
        is_cal: np.ndarray | None,
        n_samples: int | str,
    ) -> Calibration:
        """Calibrate a residual anchor's intervals on every training row.

        A held-out row is scored by its distance from its prediction (its out-of-fold
        estimate plus ``scale`` times its mean decoded residual, from its unscaled
        ``cal_draws``); every other row by its distance from its out-of-fold estimate
        alone, as the model trained on it and its decoded residual would not be a fair one.
        At a scale of 0 the two agree. Each row's raw interval is its mean draw
        (``center="mean"``), so intervals are the prediction plus or minus one margin; at
        a scale of 0, where every draw is the estimate, its quantiles give the same bounds
        and are kept (``"quantiles"``, as before this option existed, to the last bit). Up
        to :data:`OUT_OF_FOLD_CALIBRATION_ROWS` rows, drawn with the fit's seed.
        """
        decoded = np.zeros(len(oof_residuals))
        if is_cal is not None:
            decoded[is_cal] = aggregate(cal_draws * scale, "mean")
        targets = oof_residuals
        if len(targets) > OUT_OF_FOLD_CALIBRATION_ROWS:
            rng = np.random.default_rng(self.seed_)
            keep = np.sort(rng.choice(len(targets), OUT_OF_FOLD_CALIBRATION_ROWS, replace=False))
            targets, decoded = targets[keep], decoded[keep]
        draws = np.repeat(decoded[:, None], cal_draws.shape[1], axis=1)
        center = "mean" if scale > 0 else "quantiles"
        return Calibration(draws, targets, n_samples, center=center)

    def _calibrates_training_rows_on_draws(self) -> bool:
        """Whether ``interval_calibration="every_row_cqr"`` decodes the training rows.

        Only where a residual anchor's correction is kept: at a scale of 0 every row's
        out-of-fold residual already calibrates, and without held-out rows there is no
        calibration to extend.
        """
        return (
            self.interval_calibration == "every_row_cqr"
            and self.residual_anchor_
            and self.residual_scale_ > 0
            and self.calibration_ is not None
        )

    def _every_row_cqr_calibration(
        self,
        X: np.ndarray,
        X_given: object,
        oof_residuals: np.ndarray,
        is_cal: np.ndarray,
        parallel: DataParallel,
    ) -> Calibration:
        """Calibrate a kept correction on every training row, each by its own draws' shape.

        The held-out rows keep their scaled draws. Every other training row is decoded as
        a new row would be (its prompt carries the full anchor's estimate, not the
        out-of-fold one it trained with) and scored by CQR like a held-out row: its raw
        interval is the scaled decoded residuals' quantiles, its target its out-of-fold
        residual. The model trained on these rows, so their decoded residuals may be
        closer to their targets than a new row's, which makes their scores optimistic;
        the out-of-fold estimate they are measured from never saw them. Up to
        :data:`OUT_OF_FOLD_CALIBRATION_ROWS` rows in all, the other rows drawn with the
        fit's seed.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            The validated training rows, without estimates.
        X_given : object
            The rows as given to ``fit``, which the anchor reads.
        oof_residuals : ndarray of shape (n_rows,)
            Every training row's target less its out-of-fold estimate.
        is_cal : ndarray of bool, shape (n_rows,)
            The held-out rows that ``calibration_`` already holds.
        parallel : DataParallel
            Shares the decoding among processes.
        """
        held_out = self.calibration_
        rows = np.flatnonzero(~is_cal)
        room = max(OUT_OF_FOLD_CALIBRATION_ROWS - held_out.n_rows, 0)
        if len(rows) > room:
            rng = np.random.default_rng(self.seed_)
            rows = np.sort(rng.choice(rows, room, replace=False))
        estimates = anchor_estimates(self.anchor_, X_given, len(X))
        trained = self._calibrate(
            with_estimates(X[rows], estimates[rows]), oof_residuals[rows], parallel
        )
        if trained is None:
            return held_out
        return Calibration(
            np.vstack([held_out.draws, trained.draws * self.residual_scale_]),
            np.concatenate([held_out.targets, trained.targets]),
            held_out.n_samples,
        )

    def _fitted_scale(self, calibration: Calibration) -> float:
        """Return the scale that ``residual_scale``'s rule fits on unscaled calibration draws.

        The one place it is fitted: the per-epoch check and the fit's final scale must
        agree, so that a fit stopped at a scale of 0 ends at 0.
        """
        decoded = calibration.draws.mean(axis=1)
        return residual_slope(decoded, calibration.targets, self.residual_scale)

    def _residual_check(
        self, X: np.ndarray, targets: np.ndarray, parallel: DataParallel
    ) -> Callable[[int], dict] | None:
        """Return the SFT check of ``residual_patience`` on the calibration rows, or None.

        After every SFT epoch it decodes the calibration rows as :meth:`_calibrate` does
        after the fit and fits the residual scale on them, as :meth:`_fit_residual_scale`
        will: SFT stops once that scale has been 0 for ``residual_patience`` epochs in a
        row, so a stopped fit ends with a scale of 0. Decoding draws nothing from the fit's
        random streams: a check that never stops leaves the fit as it would be without it.
        """
        patience = self.residual_patience
        fitted = isinstance(self.residual_scale, str) and getattr(self, "residual_anchor_", False)
        if patience is None or not fitted or len(targets) == 0:
            return None
        zeros_in_a_row = 0

        def check(epoch: int) -> dict:
            nonlocal zeros_in_a_row
            scale = self._fitted_scale(self._calibrate(X, targets, parallel))
            zeros_in_a_row = zeros_in_a_row + 1 if scale == 0 else 0
            return {"residual_scale": scale, "stop": zeros_in_a_row >= patience}

        return check

    def _decode(
        self, decode: Callable[[], np.ndarray], n_rows: int, width: int | None = None
    ) -> np.ndarray:
        """Return ``decode()``, or zeros where the decoded residual is scaled to 0.

        At ``residual_scale_`` 0 every output is the anchor's estimate whatever the model
        decodes, so the rows are not decoded at all: the result is the same, without the
        cost of sampling. ``width`` is the numbers per row (None: one, a 1-d result).
        """
        if getattr(self, "residual_scale_", 1.0) == 0:
            return np.zeros(n_rows if width is None else (n_rows, width))
        return decode()

    def _to_targets(self, decoded: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Return numbers the model decoded for rows as targets: scaled, plus the offsets.

        ``decoded`` has one row per offset (one number each, or several draws).
        """
        if decoded.ndim == 2:
            offsets = offsets[:, None]
        return offsets + getattr(self, "residual_scale_", 1.0) * decoded

    def _held_out_rows(
        self, n_rows: int, caller_depth: int, warn: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the fit's validation rows and calibration rows.

        ``caller_depth`` counts the frames from here to the user's call (through ``_fit``
        and ``fit`` from there), where the warnings point; ``warn=False`` leaves out the
        one about calibration, which a fit has already given.
        """
        is_val = validation_rows(
            n_rows,
            self.early_stopping,
            self.validation_fraction,
            self.seed_,
            stacklevel=caller_depth + 2,
        )
        if self.interval_calibration is None:
            return is_val, np.zeros(n_rows, dtype=bool)
        is_cal = calibration_rows(is_val, self.validation_fraction, self.seed_)
        if warn and not is_cal.any():
            held = is_val.sum() or int(self.validation_fraction * n_rows)
            warnings.warn(
                f"interval_calibration={self.interval_calibration!r} needs at least "
                f"{CALIBRATION_MIN_ROWS} held-out rows, but this fit holds out {held} of "
                f"{n_rows} (validation_fraction={self.validation_fraction}): it holds none "
                "out for calibration and does not calibrate, so predict_interval will return "
                "the raw quantiles of the predictive distribution, which tend to under-cover. "
                "Raise validation_fraction to calibrate, or set interval_calibration=None to "
                "ask for raw intervals without this warning.",
                UserWarning,
                stacklevel=caller_depth + 1,
            )
        return is_val, is_cal

    def _make_trainer(
        self,
        X: np.ndarray,
        y: np.ndarray,
        is_val: np.ndarray,
        is_cal: np.ndarray,
        parallel: DataParallel,
        checkpoints: FitCheckpoints | None = None,
        sft_check: Callable[[int], dict] | None = None,
    ) -> Trainer:
        """Build the engine of a fit on validated rows, with this estimator's split.

        Rows held out only for calibration do not reach the engine at all; validation rows
        (which may calibrate as well) reach it as its validation split. ``sft_check`` is
        the engine's (:meth:`_residual_check`).
        """
        policy = self.policy_.policy
        keep = ~is_cal | is_val
        return Trainer(
            policy,
            self.codec_,
            RowInputs.from_table(X[keep], policy.backbone.encode_rows),
            y[keep],
            self._sampler(),
            is_val=is_val[keep],
            parallel=parallel,
            verbose=self.verbose,
            callbacks=self.callbacks or (),
            checkpoints=checkpoints,
            sft_check=sft_check,
        )

    def trainer(self, X, y) -> Trainer:
        """Return the training engine of this fitted estimator on ``(X, y)``.

        It trains the fitted policy in place, with this estimator's validation split,
        sampler and ``callbacks`` (and with an anchor, the rows' out-of-fold estimates of
        a cross-fit like :meth:`fit`'s; with a residual anchor its targets, like its
        sampler's numbers, are the residuals ``y - estimate``):
        ``trainer.rl(rl_config(reg.get_params()), reward, rng)`` continues RL from a
        fitted SFT-only state (see :mod:`llmregressor.params` and
        :func:`llmregressor.rl.make_reward`). Unlike :meth:`fit`, its phases neither seed
        torch's random generator (dropout draws from the caller's stream) nor take the
        process-wide fit lock, nor add to ``history_``: the caller owns those. Rows the
        fit held out for calibration are left out of its training rows too. Taking the
        engine drops ``calibration_`` (sets it to None), whose draws would no longer
        describe a model trained further: :meth:`predict_interval` then warns and returns
        raw quantiles until :meth:`fit` runs again. For the same reason a
        fitted ``residual_scale`` (``"auto"``, ``"one_se"``) goes back to adding the
        whole decoded residual.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Training rows, with the columns seen in :meth:`fit`.
        y : array-like of shape (n_samples,)
            Their targets.

        Returns
        -------
        trainer : Trainer
        """
        check_is_fitted(self)
        X_given = X
        X, y = validate_data(
            self, X, y, dtype=None, ensure_all_finite="allow-nan", y_numeric=True, reset=False
        )
        check_finite_features(X)
        y = np.asarray(y, dtype=np.float64)
        anchor = getattr(self, "anchor_", None)
        estimates = None
        if anchor is not None:
            # Training rows get out-of-fold estimates, as in fit (the same ones for fit's
            # rows and a deterministic anchor); anchor_ itself stays as fitted.
            estimates, _ = cross_fit(anchor, X_given, y, self.anchor_folds, self.seed_)
            X = with_estimates(X, estimates)
        y = y - self._offsets(estimates, len(y))
        device = self.policy_.policy.backbone.device
        parallel = data_parallel(device, self.micro_batch_size)
        is_val, is_cal = self._held_out_rows(len(y), caller_depth=2, warn=False)
        self.calibration_ = None
        # An "auto" scale measured the model before further training: back to the whole
        # decoded residual.
        if anchor is not None:
            self._fit_residual_scale(warn=False)
        return self._make_trainer(X, y, is_val, is_cal, parallel)

    def _calibrate(
        self, X: np.ndarray, y: np.ndarray, parallel: DataParallel
    ) -> Calibration | None:
        """Draw the calibration rows from the policy as it is now; None without rows.

        Each process draws its share of the rows and all get every row's draws, as the
        validation RMSE is computed.
        """
        if len(y) == 0:
            return None
        sampler = self._sampler()
        policy = self.policy_.policy
        width = EXACT_CALIBRATION_POINTS if self.n_samples == EXACT else self.n_samples
        draws = np.zeros((len(y), width))
        own = parallel.shard(len(y))
        if len(own):
            inputs = RowInputs.from_table(X[own], policy.backbone.encode_rows)
            draws[own] = sampler.calibration_draws(policy, inputs, progress=False)
        return Calibration(parallel.all_sum(draws), y, self.n_samples)

    def _sampler(self) -> Sampler:
        """Return a sampler that decodes rows as :meth:`predict` does now.

        It returns the numbers the model decodes: with a residual anchor, without the rows'
        estimates, which the predicting methods add.
        """
        return Sampler(
            self.codec_,
            self.seed_,
            min(self.batch_size, self.micro_batch_size or self.batch_size),
            mode=self.predict_mode,
            n_samples=self.n_samples,
            verbose=self.verbose,
        )

    # ------------------------------------------------------------------------- predict
    def _row_inputs(self, X) -> tuple[RowInputs, np.ndarray]:
        """Validate rows seen at predict time; return their model inputs and offsets.

        The inputs are made batch by batch; the offsets (:meth:`_offsets`) are added to
        every number decoded for the row.
        """
        check_is_fitted(self)
        # They may have been set after the fit (set_params), which validated the others.
        validate_predict_params(self.get_params(deep=False))
        X_given = X
        X = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=False)
        check_finite_features(X)
        anchor = getattr(self, "anchor_", None)
        estimates = None
        if anchor is not None:
            estimates = anchor_estimates(anchor, X_given, len(X))
            X = with_estimates(X, estimates)
        inputs = RowInputs.from_table(X, self.policy_.policy.backbone.encode_rows)
        return inputs, self._offsets(estimates, len(X))

    def predict(self, X) -> np.ndarray:
        """Predict targets.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Greedy decode, or mean/median of ``n_samples`` samples, or of the exact
            distribution with ``n_samples="exact"`` (``predict_mode``).
        """
        inputs, offsets = self._row_inputs(X)
        decoded = self._decode(
            lambda: self._sampler().predict(self.policy_.policy, inputs), len(offsets)
        )
        return self._to_targets(decoded, offsets)

    def sample(self, X, n_samples: int | None = None) -> np.ndarray:
        """Draw samples from the predictive distribution (temperature 1).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.
        n_samples : int, optional
            Draws per row; defaults to the ``n_samples`` parameter (which must then be
            an int, not ``"exact"``).

        Returns
        -------
        draws : ndarray of shape (n_rows, n_samples)
        """
        n_samples = self.n_samples if n_samples is None else n_samples
        if (
            isinstance(n_samples, bool)
            or not isinstance(n_samples, int | np.integer)
            or n_samples < 1
        ):
            hint = " (sample() draws; pass an int n_samples)" if n_samples == EXACT else ""
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}{hint}")
        inputs, offsets = self._row_inputs(X)
        policy = self.policy_.policy
        draws = self._decode(
            lambda: self._sampler().draw(policy, inputs, n_samples=n_samples, greedy=False),
            len(offsets),
            n_samples,
        )
        return self._to_targets(draws, offsets)

    def predict_quantiles(
        self, X, quantiles: Sequence[float] = (0.1, 0.5, 0.9), n_samples: int | str | None = None
    ) -> np.ndarray:
        """Raw quantiles of the predictive distribution.

        Empirical quantiles of ``n_samples`` draws, or with ``n_samples="exact"`` the exact
        quantiles of the enumerated distribution (the smallest value whose cumulative
        probability reaches each level). They are the model's own, not calibrated: a
        fine-tuned model's distribution tends to be too narrow, so a share ``q`` of
        targets is seldom below its ``q`` quantile. :meth:`predict_interval` calibrates
        central intervals.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.
        quantiles : sequence of float, default=(0.1, 0.5, 0.9)
            Levels in [0, 1].
        n_samples : int or "exact", optional
            Draws per row, or ``"exact"``; defaults to the ``n_samples`` parameter. More
            draws give smoother quantiles.

        Returns
        -------
        q : ndarray of shape (n_rows, len(quantiles))
        """
        levels = np.asarray(quantiles, dtype=np.float64).ravel()
        if levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
            raise ValueError(f"quantiles must be a non-empty sequence in [0, 1], got {quantiles!r}")
        n_samples = self.n_samples if n_samples is None else n_samples
        if n_samples == EXACT:
            inputs, offsets = self._row_inputs(X)  # checks the fit first
            sampler = replace(self._sampler(), n_samples=EXACT)
            decoded = self._decode(
                lambda: sampler.quantiles(self.policy_.policy, inputs, levels),
                len(offsets),
                levels.size,
            )
            return self._to_targets(decoded, offsets)
        return sample_quantiles(self.sample(X, n_samples), levels)

    def predict_interval(
        self,
        X,
        coverage: float = 0.9,
        n_samples: int | str | None = None,
        calibrated: bool = True,
    ) -> np.ndarray:
        """Central predictive intervals, calibrated to cover a share ``coverage`` of targets.

        The raw interval of a row is its predictive distribution's ``(1 - coverage) / 2``
        and ``(1 + coverage) / 2`` quantiles. Calibrated (the default), both bounds move
        out by one margin ``Q`` (in by ``-Q`` where the raw intervals are too wide), the
        split-conformal CQR margin that the rows the fit held out give for this coverage
        (:mod:`llmregressor.conformal`, ``interval_calibration``): on rows drawn as the
        training rows were, a share of at least ``coverage`` of the targets falls inside,
        on average over fits, and less than ``coverage + 1 / (n + 1)`` for ``n``
        calibration rows (the held-out validation rows serve when early stopping is on;
        choosing the epoch on them makes them slightly easier than new rows). Where a
        residual anchor's correction is scaled to 0 (``residual_scale_``), the calibration
        rows are every training row, scored by its distance from its out-of-fold estimate:
        the cross-validation form of conformal prediction, without that finite-sample
        guarantee and slightly conservative in the measurements. Where the correction is
        kept, the default ``interval_calibration="every_row_cqr"`` scores the rows the
        model trained on too, each by CQR on its own draws, decoded after the fit: more
        rows, at the risk of scores made optimistic by training on them. The raw
        bounds of new rows are then computed exactly as those of the calibration rows: from
        the fit's ``n_samples`` draws, or with ``n_samples="exact"`` from the exact
        distribution's quantiles at the midpoints of 200 equal strata.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.
        coverage : float, default=0.9
            Share of targets the intervals should hold, in (0, 1]. Calibrated intervals
            are infinite for coverages above ``n / (n + 1)`` (with a warning).
        n_samples : int or "exact", optional
            Draws per row, or ``"exact"``; defaults to the ``n_samples`` parameter, or
            for calibrated intervals to the fit's. Calibrated intervals need the fit's
            value (the scores of calibration and new rows must be computed alike): another
            one raises a ValueError. The tails of a few draws are coarse: use more for
            high raw coverage.
        calibrated : bool, default=True
            False returns the raw quantiles (:meth:`predict_quantiles` at the two
            levels). A model without calibration (fitted with
            ``interval_calibration=None`` or on too few rows, trained further through
            :meth:`trainer`, or fitted by an llmregressor without calibrated intervals)
            returns them too, with a warning.

        Returns
        -------
        intervals : ndarray of shape (n_rows, 2)
            Lower and upper bounds; ``-inf`` and ``inf`` when ``coverage`` is too high for
            the calibration rows.

        Raises
        ------
        ValueError
            If ``coverage`` is not in (0, 1], or calibrated intervals are asked for with
            another ``n_samples`` than the fit's.
        """
        if (
            isinstance(coverage, bool)
            or not isinstance(coverage, numbers.Real)
            or not 0 < coverage <= 1
        ):
            raise ValueError(f"coverage must be a number in (0, 1], got {coverage!r}")
        levels = central_levels(coverage)
        calibration = getattr(self, "calibration_", None) if calibrated else None
        if calibrated and calibration is None:
            check_is_fitted(self)  # an unfitted model raises, rather than warns
            why = (
                "was fitted by an llmregressor without calibrated intervals"
                if not hasattr(self, "calibration_")
                else "holds no calibration (it was fitted with interval_calibration=None or "
                "on too few rows to hold some out, or trained further through trainer())"
            )
            warnings.warn(
                f"This model {why}: predict_interval returns the raw quantiles of the "
                "predictive distribution, which tend to under-cover. Refit it to calibrate, "
                "or pass calibrated=False to ask for raw quantiles.",
                UserWarning,
                stacklevel=2,
            )
        if calibration is None:
            return self.predict_quantiles(X, levels, n_samples)
        if n_samples is not None and n_samples != calibration.n_samples:
            raise ValueError(
                f"calibrated intervals need the draws the calibration rows got, "
                f"n_samples={calibration.n_samples!r}; got n_samples={n_samples!r}. Leave "
                "n_samples unset, or pass calibrated=False for raw quantiles of other draws."
            )
        inputs, offsets = self._row_inputs(X)
        sampler = replace(self._sampler(), n_samples=calibration.n_samples)
        decoded = self._decode(
            lambda: sampler.calibration_draws(self.policy_.policy, inputs),
            len(offsets),
            calibration.draws.shape[1],
        )
        draws = self._to_targets(decoded, offsets)
        bounds = raw_bounds(draws, levels, calibration.center)
        cal_bounds = raw_bounds(calibration.draws, levels, calibration.center)
        scores = conformity_scores(cal_bounds, calibration.targets)
        margin = conformal_margin(scores, coverage)
        if math.isinf(margin):
            n = calibration.n_rows
            warnings.warn(
                f"coverage={coverage} needs more than the {n} calibration rows: with n rows, "
                f"split-conformal intervals are finite up to coverage n / (n + 1) = "
                f"{n / (n + 1):.4f}. Returning infinite intervals; a larger "
                "validation_fraction calibrates on more rows (or, with an anchor, "
                "residual_scale=0.0 on every training row).",
                UserWarning,
                stacklevel=2,
            )
        return conformalize(bounds, margin)

    # ---------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted estimator to a folder, without pickle.

        The folder holds the trainable weights (safetensors) and a JSON manifest with the
        parameters, codec, serializer, fitted attributes, package and format versions and
        the base model's identity; the base model itself is not copied. See
        :mod:`llmregressor.persistence`.

        Parameters
        ----------
        path : str or path-like
            Folder to write; created if missing. Earlier model files in it are replaced.

        Raises
        ------
        ValueError
            If a parameter cannot be stored as JSON (a callable ``reward``, a
            ``RandomState`` instance): set a named value before saving.
        TypeError
            If the estimator was fitted with ``model="mlp-decoder"``, whose fitted feature
            preprocessor has no pickle-free format yet, or with an estimator as ``anchor``
            (only ``anchor="ridge"`` has one): use ``joblib.dump`` for it.
        """
        save_estimator(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> LLMRegressor:
        """Read an estimator written by :meth:`save`.

        The base model is loaded from the saved ``model`` source and must be the one the
        estimator was fitted on; loading never runs code from the folder.

        Parameters
        ----------
        path : str or path-like
            Folder written by :meth:`save`.
        verify : bool, default=True
            Check the weights and the fitted part of the manifest against their checksums.

        Returns
        -------
        estimator : LLMRegressor
            Predicts exactly as the saved estimator did.

        Raises
        ------
        ValueError
            If the folder is no model folder, was written in a newer or unknown format
            version, or its base model now differs from the one it was fitted on.
        """
        return load_estimator(cls, path, verify)


# The Parameters section comes from the parameter table, with the signature's defaults.
LLMRegressor.__doc__ = LLMRegressor.__doc__.format(
    groups=parameter_groups(),
    parameters=parameters_docstring(
        {name: p.default for name, p in inspect.signature(LLMRegressor).parameters.items()}
    ),
)
