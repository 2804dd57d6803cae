"""The ``mlp-decoder`` backbone: the paper's from-scratch tabular architecture.

An MLP encodes the preprocessed feature vector (:mod:`.features`) into one ``d_model``
vector; a small causal Transformer decoder reads it as the first position and the number
symbols decoded so far (symbol embedding + learned position embedding) after it. The
hidden state at each position is projected onto the symbols' output embeddings by
:class:`~llmregressor.decoding.NumberPolicy`, like the LM backbone's. Every weight trains.

The decoder has no key/value cache: a number has a handful of symbols, so each decoding
step simply runs the decoder over the whole (short) prefix again.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from torch import nn

from .backbone_protocol import EncodedRows, check_trainable_state, register_backbone
from .backbones import compute_autocast, resolve_compute_dtype
from .codecs import NumberCodec
from .features import make_feature_preprocessor

__all__ = [
    "MLP_DECODER",
    "MLPDecoderBackbone",
    "MLPDecoderConfig",
    "MLPDecoderNetwork",
    "MLPDecoderSpec",
]

# The estimator's ``model`` value that selects this backbone.
MLP_DECODER = "mlp-decoder"


@dataclass(frozen=True)
class MLPDecoderConfig:
    """Architecture of the MLP encoder and Transformer decoder.

    Defaults are the paper's tabular setup (3 x 1024 MLP, d_model 256, 3 decoder layers,
    4 heads, feed-forward 1024, dropout 0.1).

    Parameters
    ----------
    hidden : tuple of int
        Widths of the MLP's hidden layers (ReLU, dropout after each).
    d_model : int
        Width of the encoder output and of the decoder.
    layers : int
        Decoder layers.
    heads : int
        Attention heads per layer; must divide ``d_model``.
    feedforward : int
        Width of each layer's feed-forward block.
    dropout : float
        Dropout in the MLP and the decoder layers.
    """

    hidden: tuple[int, ...] = (1024, 1024, 1024)
    d_model: int = 256
    layers: int = 3
    heads: int = 4
    feedforward: int = 1024
    dropout: float = 0.1


class MLPDecoderNetwork(nn.Module):
    """MLP encoder + causal Transformer decoder over number symbols.

    Parameters
    ----------
    n_inputs : int
        Width of the feature vector.
    n_symbols : int
        Number of codec symbols.
    length : int
        Symbols per number; the decoder reads at most ``length`` positions (the encoded
        row, then all symbols but the last).
    config : MLPDecoderConfig
        Architecture.
    """

    def __init__(self, n_inputs: int, n_symbols: int, length: int, config: MLPDecoderConfig):
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_inputs
        for hidden in config.hidden:
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        blocks.append(nn.Linear(width, config.d_model))
        self.encoder = nn.Sequential(*blocks)
        self.symbol_embedding = nn.Embedding(n_symbols, config.d_model)
        self.position_embedding = nn.Embedding(length, config.d_model)
        # Pre-norm layers train stably from scratch without a long warm-up.
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.heads,
            config.feedforward,
            config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerEncoder(
            layer, config.layers, norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False
        )
        self.output_embedding = nn.Linear(config.d_model, n_symbols, bias=False)

    def first_position(self, features: torch.Tensor) -> torch.Tensor:
        """Encode rows as the decoder input of position 0, shape ``(batch, 1, d_model)``."""
        return (self.encoder(features) + self.position_embedding.weight[0])[:, None]

    def symbol_positions(self, symbols: torch.Tensor, start: int) -> torch.Tensor:
        """Embed symbols fed at positions ``start, start + 1, ...`` as decoder inputs."""
        positions = torch.arange(start, start + symbols.shape[1], device=symbols.device)
        return self.symbol_embedding(symbols) + self.position_embedding(positions)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Causal decoder pass over ``inputs`` of shape (batch, positions, d_model)."""
        mask = nn.Transformer.generate_square_subsequent_mask(
            inputs.shape[1], device=inputs.device, dtype=inputs.dtype
        )
        return self.decoder(inputs, mask=mask, is_causal=True)


@dataclass
class DecoderInputs:
    """Decode state of the MLP backbone: the decoder inputs fed so far.

    Attributes
    ----------
    sequence : Tensor of shape (batch, positions, d_model)
    """

    sequence: torch.Tensor


def row_keys(features: np.ndarray) -> np.ndarray:
    """CRC-32 of each row's float64 feature values: a stable, order-free per-row seed."""
    # + 0.0 turns -0.0 into 0.0, so equal values always hash alike.
    rows = np.ascontiguousarray(features, dtype=np.float64) + 0.0
    return np.array([zlib.crc32(row.tobytes()) for row in rows], dtype=np.uint32)


class MLPDecoderBackbone:
    """The :class:`~llmregressor.backbone_protocol.Backbone` of ``model="mlp-decoder"``.

    Parameters
    ----------
    network : MLPDecoderNetwork
        The model; all of it trains.
    preprocessor : ColumnTransformer
        Fitted feature preprocessing (:func:`~llmregressor.features.make_feature_preprocessor`).
    device : torch.device
        Where to compute.
    compute_dtype : torch.dtype, default=torch.float32
        ``torch.bfloat16`` runs the network under autocast (weights stay fp32).
    """

    def __init__(
        self,
        network: MLPDecoderNetwork,
        preprocessor: ColumnTransformer,
        device: torch.device,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.network = network.to(device)
        self.preprocessor = preprocessor
        self.device = device
        self.compute_dtype = compute_dtype
        self.checkpointing = False

    @property
    def number_embeddings(self) -> torch.Tensor:
        """Output embeddings of the codec symbols, shape ``(n_symbols, d_model)``."""
        return self.network.output_embedding.weight

    def encode_rows(self, X: np.ndarray) -> EncodedRows:
        """Preprocess table rows; each row's key hashes its feature vector.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Validated rows.

        Returns
        -------
        encoded : EncodedRows
            One float32 feature vector per row.
        """
        features = self.preprocessor.transform(X)
        return EncodedRows(features.astype(np.float32), row_keys(features))

    def collate(self, items: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Stack feature vectors into a ``features`` tensor of shape (batch, n_inputs)."""
        return {"features": torch.as_tensor(np.stack(items), device=self.device)}

    def _autocast(self) -> AbstractContextManager:
        return compute_autocast(self.device, self.compute_dtype)

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[DecoderInputs, torch.Tensor]:
        """Encode the rows and run the decoder on position 0.

        Returns
        -------
        state : DecoderInputs
        hidden : Tensor of shape (batch, d_model)
            Predicts the first number symbol.
        """
        with self._autocast():
            first = self.network.first_position(batch["features"])
            hidden = self.network(first)
        return DecoderInputs(first), hidden[:, -1].float()

    def expand(self, state: DecoderInputs, repeats: int) -> DecoderInputs:
        """Repeat each row's decoder inputs ``repeats`` times."""
        if repeats == 1:
            return state
        return DecoderInputs(state.sequence.repeat_interleave(repeats, dim=0))

    def advance(self, state: DecoderInputs, symbols: torch.Tensor) -> torch.Tensor:
        """Feed codec symbols of shape (batch, steps) after the state's positions.

        Returns
        -------
        hidden : Tensor of shape (batch, steps, d_model)
        """
        steps = symbols.shape[1]
        with self._autocast():
            fed = self.network.symbol_positions(symbols, state.sequence.shape[1])
            state.sequence = torch.cat([state.sequence, fed.to(state.sequence.dtype)], dim=1)
            hidden = self.network(state.sequence)
        return hidden[:, -steps:].float()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Every weight of the network (no frozen base)."""
        return list(self.network.parameters())

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Copy of the whole network's weights on CPU (they are all trained)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.network.state_dict().items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by :meth:`adapter_state` (all of them, of the same shapes)."""
        check_trainable_state(self.network.state_dict(), state)
        self.network.load_state_dict(state)

    def train(self, mode: bool = True) -> None:
        """Switch dropout on (training) or off (decoding)."""
        self.network.train(mode)

    def gradient_checkpointing(self, enabled: bool = True) -> AbstractContextManager:
        """Return a no-op block: the small network keeps its activations.

        The estimator's ``gradient_checkpointing`` is ignored by this backbone, whose
        activations are a few megabytes.
        """
        return nullcontext()

    def caching_prompts(self) -> AbstractContextManager:
        """Return a no-op block: encoding a feature vector costs less than looking it up."""
        return nullcontext()


@register_backbone(MLP_DECODER)
@dataclass
class MLPDecoderSpec:
    """Everything that rebuilds an :class:`MLPDecoderBackbone` except its weights.

    Parameters
    ----------
    config : MLPDecoderConfig
        Architecture.
    preprocessor : ColumnTransformer
        Fitted feature preprocessing (pickled with the estimator).
    n_inputs : int
        Width of the preprocessed feature vector.
    n_symbols, length : int
        The codec's vocabulary size and symbols per number.
    dtype : {"auto", "float32", "bfloat16"}
        Compute precision (:func:`~llmregressor.backbones.resolve_compute_dtype`; the
        speed of each is measured in docs/benchmarks.md).
    """

    config: MLPDecoderConfig
    preprocessor: ColumnTransformer
    n_inputs: int
    n_symbols: int
    length: int
    dtype: str
    # The fitted scikit-learn preprocessor has no pickle-free format yet.
    savable: ClassVar[bool] = False

    @classmethod
    def accepts(cls, model: str) -> bool:
        """Return whether ``model`` is ``"mlp-decoder"``."""
        return model == MLP_DECODER

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, object],
        X: np.ndarray,
        feature_names: list[str],
        codec: NumberCodec,
    ) -> MLPDecoderSpec:
        """Fit the feature preprocessing to ``X`` and take the architecture parameters."""
        preprocessor = make_feature_preprocessor(X).fit(X)
        config = MLPDecoderConfig(
            hidden=tuple(int(width) for width in params["mlp_hidden"]),
            d_model=params["d_model"],
            layers=params["decoder_layers"],
            heads=params["decoder_heads"],
            feedforward=params["decoder_ff"],
            dropout=params["dropout"],
        )
        n_inputs = preprocessor.transform(X[:1]).shape[1]
        return cls(
            config, preprocessor, n_inputs, len(codec.symbols), codec.length, params["dtype"]
        )

    def fitted_attributes(self) -> dict[str, object]:
        """Return the fitted feature preprocessing, as the estimator's ``preprocessor_``."""
        return {"preprocessor_": self.preprocessor}

    def to_config(self) -> dict:
        """Refuse: the fitted scikit-learn preprocessor has no pickle-free format yet.

        Raises
        ------
        TypeError
            Always, with the remedy (``joblib``).
        """
        raise TypeError(
            f"save() writes LM-backbone estimators; model={MLP_DECODER!r} keeps a fitted "
            "scikit-learn feature preprocessor that has no pickle-free format yet. Use "
            "joblib.dump / joblib.load for it."
        )

    @classmethod
    def from_config(cls, config: Mapping, serializer: object) -> MLPDecoderSpec:
        """Refuse: no model folder holds this kind (see :meth:`to_config`).

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError(f"model folders cannot hold the {MLP_DECODER!r} backbone")

    def build(self, device: torch.device) -> MLPDecoderBackbone:
        """Build the backbone with freshly initialized weights (from torch's global RNG)."""
        network = MLPDecoderNetwork(self.n_inputs, self.n_symbols, self.length, self.config)
        return MLPDecoderBackbone(
            network, self.preprocessor, device, resolve_compute_dtype(self.dtype, device)
        )
