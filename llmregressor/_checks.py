"""Validation of the estimator's parameters and inputs, with messages a user can act on."""

from __future__ import annotations

import numbers
import os

import numpy as np
from sklearn.utils.validation import validate_data as _sklearn_validate_data

from .serialize import ROW_FORMATS
from .token_losses import SFT_LOSSES

__all__ = [
    "check_finite_features",
    "validate_codec_params",
    "validate_data",
    "validate_params",
    "validate_predict_params",
]

# Bounds of the number codecs' integer settings, shared by the estimator's parameters and
# the codec a model folder records.
_CODEC_BOUNDS = {
    "base": (2, 10),
    "digits": (1, 12),
    "exponent_digits": (1, 2),
    "mantissa_digits": (1, 12),
}


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bound}, got {value}")


def _check_real(
    name: str,
    value: object,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high or not np.isfinite(value):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(
            f"{name} must be in {left}{low}, {high if high else 'inf'}{right}, got {value}"
        )


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def validate_params(est: object) -> None:
    """Check every parameter of an :class:`~llmregressor.LLMRegressor` before fitting.

    Raises
    ------
    TypeError, ValueError
        Naming the parameter, what it accepts and what it got.
    """
    if not isinstance(est.model, str) or not est.model:
        raise TypeError(f"model must be a non-empty string, got {est.model!r}")
    _check_choice("number_format", est.number_format, ("normalized", "scientific"))
    validate_codec_params({name: getattr(est, name) for name in _CODEC_BOUNDS})
    _check_choice("row_format", est.row_format, tuple(ROW_FORMATS))
    template = est.prompt_template
    well_formed = isinstance(template, str) and template.count("{features}") == 1
    if template is not None and not well_formed:
        raise ValueError(
            "prompt_template must be None or a string containing '{features}' exactly once, "
            f"got {template!r}"
        )
    _check_int("significant_digits", est.significant_digits, 1, 17)
    if not isinstance(est.missing_value, str):
        raise TypeError(f"missing_value must be a string, got {est.missing_value!r}")
    _check_int("lora_r", est.lora_r, 1)
    _check_real("lora_alpha", est.lora_alpha, 0.0, low_open=True)
    _check_real("lora_dropout", est.lora_dropout, 0.0, 1.0, high_open=True)
    targets = est.lora_target_modules
    if not (
        isinstance(targets, str)
        or (
            isinstance(targets, list | tuple)
            and targets
            and all(isinstance(t, str) for t in targets)
        )
    ):
        raise TypeError(
            f"lora_target_modules must be 'all-linear' or a list of module names, got {targets!r}"
        )
    hidden = est.mlp_hidden
    if not isinstance(hidden, list | tuple) or not all(
        isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in hidden
    ):
        raise TypeError(
            f"mlp_hidden must be a tuple of positive ints (hidden layer widths), got {hidden!r}"
        )
    _check_int("d_model", est.d_model, 1)
    _check_int("decoder_layers", est.decoder_layers, 1)
    _check_int("decoder_heads", est.decoder_heads, 1)
    if est.d_model % est.decoder_heads:
        raise ValueError(
            f"decoder_heads must divide d_model, got d_model={est.d_model} and "
            f"decoder_heads={est.decoder_heads}"
        )
    _check_int("decoder_ff", est.decoder_ff, 1)
    _check_real("dropout", est.dropout, 0.0, 1.0, high_open=True)
    _check_int("sft_epochs", est.sft_epochs, 0)
    _check_real("sft_lr", est.sft_lr, 0.0, low_open=True)
    _check_choice("sft_loss", est.sft_loss, SFT_LOSSES)
    if est.sft_loss_weight is not None:
        _check_real("sft_loss_weight", est.sft_loss_weight, 0.0)
    if est.early_stopping not in ("auto", True, False):
        raise ValueError(
            f"early_stopping must be 'auto', True or False, got {est.early_stopping!r}"
        )
    _check_real("validation_fraction", est.validation_fraction, 0.0, 1.0, high_open=True)
    if est.n_iter_no_change is not None:
        _check_int("n_iter_no_change", est.n_iter_no_change, 1)
    _check_choice("rl_algorithm", est.rl_algorithm, ("remax", "grpo", None))
    _check_int("rl_epochs", est.rl_epochs, 0)
    _check_real("rl_lr", est.rl_lr, 0.0, low_open=True)
    _check_int("rl_batch_size", est.rl_batch_size, 1)
    _check_int("n_rollouts", est.n_rollouts, 1)
    if est.rl_algorithm == "grpo" and est.n_rollouts < 2:
        raise ValueError("GRPO compares samples within a group: n_rollouts must be >= 2")
    _check_real("rl_temperature", est.rl_temperature, 0.0, low_open=True)
    if not callable(est.reward):
        _check_choice("reward", est.reward, ("squared", "absolute", "huber"))
    _check_choice("reward_on", est.reward_on, ("auto", "sample", "mean"))
    if est.rl_algorithm is not None and est._reward_on() == "mean" and est.n_rollouts < 2:
        raise ValueError(
            "reward_on='mean' (also chosen by 'auto' with predict_mode='mean') credits each "
            "rollout against the others: n_rollouts must be >= 2"
        )
    _check_real("kl_coef", est.kl_coef, 0.0)
    _check_real("expert_coef", est.expert_coef, 0.0)
    _check_real("clip_eps", est.clip_eps, 0.0, 1.0, low_open=True, high_open=True)
    _check_int("rl_updates_per_batch", est.rl_updates_per_batch, 1)
    _check_choice("scale_rewards", est.scale_rewards, ("group", "none"))
    validate_predict_params(est)
    if not isinstance(est.device, str):
        raise TypeError(
            f"device must be a string such as 'auto', 'cpu' or 'cuda', got {est.device!r}"
        )
    _check_choice("dtype", est.dtype, ("auto", "float32", "bfloat16"))
    _check_bool("gradient_checkpointing", est.gradient_checkpointing)
    if est.checkpoint_dir is not None and not isinstance(est.checkpoint_dir, str | os.PathLike):
        raise TypeError(f"checkpoint_dir must be a folder path or None, got {est.checkpoint_dir!r}")
    _check_bool("resume", est.resume)
    if est.resume and est.checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")


def validate_predict_params(est: object) -> None:
    """Check the parameters that prediction reads.

    They may be changed after a fit (``set_params``) or come from a model folder, so
    prediction checks them again: ``predict_mode``, ``n_samples``, ``batch_size``,
    ``micro_batch_size`` and ``verbose``.

    Raises
    ------
    TypeError, ValueError
        As :func:`validate_params`.
    """
    _check_choice("predict_mode", est.predict_mode, ("greedy", "mean", "median"))
    _check_int("n_samples", est.n_samples, 1)
    _check_int("batch_size", est.batch_size, 1)
    if est.micro_batch_size is not None:
        _check_int("micro_batch_size", est.micro_batch_size, 1)
    _check_int("verbose", est.verbose, 0)


def validate_codec_params(params: dict) -> None:
    """Check number-codec settings (``base``, ``digits``, ``exponent_digits``, ...).

    Parameters
    ----------
    params : dict
        Setting names and values; each name must be one of the codecs'.

    Raises
    ------
    TypeError, ValueError
        As :func:`validate_params`; KeyError for a name no codec has.
    """
    for name, value in params.items():
        _check_int(name, value, *_CODEC_BOUNDS[name])


def validate_data(estimator: object, X: object, *args, **kwargs):
    """Run scikit-learn's ``validate_data``, first refusing a DataFrame without columns.

    scikit-learn reports a DataFrame without columns as "at least one array or dtype is
    required" (from numpy), which names neither X nor columns; an array without columns
    gets its own clear message.

    Parameters
    ----------
    estimator : estimator
        The estimator whose input is checked.
    X : array-like or DataFrame
        The rows.
    *args, **kwargs
        Passed on to scikit-learn's ``validate_data``.

    Returns
    -------
    validated : ndarray or tuple
        What scikit-learn's ``validate_data`` returns.
    """
    if hasattr(X, "dtypes") and len(X.shape) == 2 and X.shape[1] == 0:
        raise ValueError(
            f"X has no columns (shape {tuple(X.shape)}): LLMRegressor needs at least one "
            "feature column"
        )
    return _sklearn_validate_data(estimator, X, *args, **kwargs)


def check_finite_features(X: np.ndarray) -> None:
    """Reject infinite numbers in an object-dtype feature array (NaN means missing and is fine).

    Numeric arrays are checked by scikit-learn's ``validate_data``; object arrays (mixed
    DataFrames) are not, so their float cells are checked here.
    """
    if X.dtype != object:
        return
    for value in X.ravel():
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isinf(value):
            raise ValueError(
                "Input X contains infinity. Missing values may be NaN, but every number must "
                "be finite."
            )
