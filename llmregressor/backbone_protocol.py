"""The interface between a backbone and the one decoding and training engine.

A backbone turns table rows into model inputs, encodes a batch of them into the hidden
state that predicts the first number symbol, and then feeds number symbols one at a time.
:class:`~llmregressor.decoding.NumberPolicy` projects hidden states onto
:attr:`Backbone.number_embeddings` under the codec's grammar; SFT, RL, validation and
prediction only ever talk to a backbone through this interface. Two implementations:

- :class:`~llmregressor.backbones.LanguageModelBackbone`: a pretrained causal LM with
  LoRA adapters reading the serialized row as a prompt;
- :class:`~llmregressor.mlp_decoder.MLPDecoderBackbone`: the paper's from-scratch MLP
  encoder of the preprocessed feature vector plus a small causal Transformer decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["Backbone", "BackboneSpec", "RowInputs"]


@dataclass(frozen=True)
class RowInputs:
    """Model inputs of a set of table rows.

    Attributes
    ----------
    items : sequence
        One model input per row, in row order (token ids for the LM, a feature vector for
        the MLP); :meth:`Backbone.collate` batches any subset of them.
    keys : ndarray of shape (n_rows,), dtype uint32
        A stable hash of each row's content. Sampled predictions seed a row's uniforms
        from its key, so they do not depend on batch composition or row order.
    """

    items: Sequence[object]
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, rows: Sequence[int] | np.ndarray) -> RowInputs:
        """Select the inputs of the given rows, in that order."""
        return RowInputs([self.items[i] for i in rows], self.keys[np.asarray(rows, dtype=int)])


@runtime_checkable
class Backbone(Protocol):
    """What the decoding engine, SFT, RL and prediction need from a model.

    Attributes
    ----------
    device : torch.device
        Where the backbone computes; batches from :meth:`collate` live there.
    """

    device: torch.device

    @property
    def number_embeddings(self) -> torch.Tensor:
        """Output embeddings of the codec's symbols, shape ``(n_symbols, hidden)``."""

    def row_inputs(self, X: np.ndarray) -> RowInputs:
        """Turn validated table rows into model inputs and per-row keys."""

    def collate(self, items: Sequence[object]) -> dict[str, torch.Tensor]:
        """Batch some rows' model inputs on :attr:`device`."""

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[object, torch.Tensor]:
        """Encode a batch.

        Returns an opaque decode state and the hidden state of shape ``(batch, hidden)``
        that predicts the first number symbol.
        """

    def expand(self, state: object, repeats: int) -> object:
        """Repeat each row's state ``repeats`` times (one encoding serves all samples)."""

    def advance(self, state: object, symbols: torch.Tensor) -> torch.Tensor:
        """Feed codec symbol indices of shape ``(batch, steps)`` after the state.

        Returns the hidden states of shape ``(batch, steps, hidden)``; the state is
        updated in place.
        """

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Return the parameters that training updates."""

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """CPU copy of the trained weights (LoRA adapters, or the whole MLP model)."""

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights saved by :meth:`adapter_state`."""

    def train(self, mode: bool = True) -> None:
        """Switch dropout on (training) or off (decoding)."""


@runtime_checkable
class BackboneSpec(Protocol):
    """A picklable recipe that builds a backbone (the fitted estimator stores one)."""

    def build(self, device: torch.device) -> Backbone:
        """Build the backbone with freshly initialized trainable weights on ``device``."""
