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

Rows become model inputs only when they are needed: :class:`RowInputs` keeps row numbers
and encodes the rows of upcoming batches a chunk at a time, so neither training nor
prediction holds every row's prompt, token ids or feature vector at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from .codecs import NumberCodec

__all__ = [
    "BACKBONES",
    "ENCODE_CHUNK_ROWS",
    "Backbone",
    "BackboneSpec",
    "EncodedRows",
    "RowInputs",
    "WeightsMismatchError",
    "backbone_for",
    "check_trainable_state",
    "register_backbone",
]


# Rows one call of :meth:`Backbone.encode_rows` turns into model inputs while training or
# predicting: enough that the per-call overhead (tokenizer, scikit-learn's input checks)
# vanishes, few enough that memory stays flat however many rows there are.
ENCODE_CHUNK_ROWS = 1024


@dataclass(frozen=True)
class EncodedRows:
    """Model inputs of some table rows, computed.

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

    def take(self, positions: Sequence[int] | np.ndarray) -> EncodedRows:
        """Select the inputs at the given positions, in that order."""
        return EncodedRows(
            [self.items[i] for i in positions], self.keys[np.asarray(positions, dtype=int)]
        )


class RowInputs:
    """Model inputs of table rows, computed on demand a chunk of rows at a time.

    Holds only row numbers and the function that encodes rows, so the memory it needs
    beyond the table itself stays flat as rows grow; training and prediction encode the
    rows of upcoming batches in chunks of about ``chunk_rows`` (:meth:`batches`). A row's
    encoding does not depend on the rows encoded with it, so chunking changes no result.

    Parameters
    ----------
    rows : ndarray of int
        Row numbers, in this sequence's order, as ``encode`` understands them.
    encode : callable
        ``encode(rows) -> EncodedRows`` for an int array of row numbers.
    chunk_rows : int, optional
        Rows per call of ``encode`` in :meth:`batches`; defaults to ``ENCODE_CHUNK_ROWS``.
    """

    def __init__(
        self,
        rows: np.ndarray,
        encode: Callable[[np.ndarray], EncodedRows],
        chunk_rows: int | None = None,
    ) -> None:
        self.rows = np.asarray(rows, dtype=np.intp)
        self._encode = encode
        self.chunk_rows = ENCODE_CHUNK_ROWS if chunk_rows is None else chunk_rows

    @classmethod
    def from_table(
        cls,
        X: np.ndarray,
        encode_rows: Callable[[np.ndarray], EncodedRows],
        chunk_rows: int | None = None,
    ) -> RowInputs:
        """Lazy inputs of every row of ``X``, encoded by ``encode_rows(X[rows])``.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Validated rows; kept by reference, never copied.
        encode_rows : callable
            A backbone's :meth:`Backbone.encode_rows`.
        chunk_rows : int, optional
            Rows per call of ``encode_rows`` in :meth:`batches`; defaults to
            ``ENCODE_CHUNK_ROWS``.

        Returns
        -------
        inputs : RowInputs
        """
        return cls(np.arange(len(X)), lambda rows: encode_rows(X[rows]), chunk_rows)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, positions: Sequence[int] | np.ndarray) -> RowInputs:
        """Select the rows at the given positions, in that order, still unencoded."""
        return RowInputs(
            self.rows[np.asarray(positions, dtype=np.intp)], self._encode, self.chunk_rows
        )

    def encode(self, positions: Sequence[int] | np.ndarray | None = None) -> EncodedRows:
        """Encode the rows at the given positions (all rows if None) now, in one call."""
        rows = self.rows if positions is None else self.rows[np.asarray(positions, dtype=np.intp)]
        return self._encode(rows)

    def batches(self, batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, EncodedRows]]:
        """Encode the rows of each batch, a chunk of consecutive batches per call.

        ``batches`` is consumed lazily, one chunk ahead of what was yielded: a generator
        that draws random numbers (a shuffle) draws them when its first batch is needed,
        as it would without chunking.

        Parameters
        ----------
        batches : iterable of ndarray of int
            Positions of each batch's rows.

        Yields
        ------
        positions : ndarray of int
            The batch, as given.
        encoded : EncodedRows
            Its rows' model inputs and keys.
        """
        chunk: list[np.ndarray] = []
        size = 0
        for positions in batches:
            chunk.append(np.asarray(positions, dtype=np.intp))
            size += len(positions)
            if size >= self.chunk_rows:
                yield from self._split(chunk)
                chunk, size = [], 0
        yield from self._split(chunk)

    def _split(self, chunk: list[np.ndarray]) -> Iterator[tuple[np.ndarray, EncodedRows]]:
        if not chunk:
            return
        encoded = self.encode(np.concatenate(chunk))
        start = 0
        for positions in chunk:
            yield positions, encoded.take(range(start, start + len(positions)))
            start += len(positions)


@runtime_checkable
class Backbone(Protocol):
    """What the decoding engine, SFT, RL and prediction need from a model.

    Attributes
    ----------
    device : torch.device
        Where the backbone computes; batches from :meth:`collate` live there.
    checkpointing : bool
        True inside :meth:`gradient_checkpointing` when it is enabled; the decoding engine
        then scores sequences with ``encode_sequences`` (one pass, no cache) instead of
        :meth:`encode` and :meth:`advance`.
    """

    device: torch.device
    checkpointing: bool

    def gradient_checkpointing(self, enabled: bool = True) -> AbstractContextManager:
        """Recompute activations in the backward pass within the block (if supported)."""

    def caching_prompts(self) -> AbstractContextManager:
        """Keep per-row work that training does not change for reuse within the block.

        A fit runs its phases inside it; outside it nothing may be kept (a no-op is a
        valid implementation).
        """

    @property
    def number_embeddings(self) -> torch.Tensor:
        """Output embeddings of the codec's symbols, shape ``(n_symbols, hidden)``."""

    def encode_rows(self, X: np.ndarray) -> EncodedRows:
        """Turn validated table rows into model inputs and per-row keys, now.

        Each row's result must not depend on the other rows of ``X``: :class:`RowInputs`
        encodes large tables a chunk of rows at a time.
        """

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
        """Load weights saved by :meth:`adapter_state`.

        Raises :class:`WeightsMismatchError` if a tensor is missing, unexpected or of
        another shape (see :func:`check_trainable_state`).
        """

    def train(self, mode: bool = True) -> None:
        """Switch dropout on (training) or off (decoding)."""


@runtime_checkable
class BackboneSpec(Protocol):
    """A picklable recipe that builds a backbone (the fitted estimator stores one).

    A backbone kind is one class that implements this protocol and is registered with
    :func:`register_backbone`: the estimator, validation, the save format and the command
    line find it there.

    Attributes
    ----------
    kind : str
        The name of the kind in saved model folders and in :data:`BACKBONES`.
    savable : bool
        Whether a model folder can hold it (:meth:`to_config` and ``from_config``).
    """

    kind: ClassVar[str]
    savable: ClassVar[bool]

    @classmethod
    def accepts(cls, model: str) -> bool:
        """Return whether the estimator's ``model`` parameter selects this kind."""

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, object],
        X: np.ndarray,
        feature_names: list[str],
        codec: NumberCodec,
    ) -> BackboneSpec:
        """Build the recipe from the estimator's parameters, fitted to the training rows.

        Parameters
        ----------
        params : mapping
            The estimator's ``get_params(deep=False)``.
        X : ndarray of shape (n_rows, n_features)
            The validated training rows.
        feature_names : list of str
            The column names (``x0, x1, ...`` for unnamed columns).
        codec : NumberCodec
            The fitted codec (its symbols and length).
        """

    def fitted_attributes(self) -> dict[str, object]:
        """Fitted state the estimator exposes as attributes (name ending in ``_``: value)."""

    def build(self, device: torch.device) -> Backbone:
        """Build the backbone with freshly initialized trainable weights on ``device``."""

    def to_config(self) -> dict:
        """Everything but the weights (and the row serializer) as JSON, for a model folder.

        Raises
        ------
        TypeError
            If this kind has no pickle-free format.
        """


# Backbone kinds by name, in registration order; the last one registered with
# ``default=True`` takes every ``model`` value no other kind accepts.
BACKBONES: dict[str, type[BackboneSpec]] = {}
_DEFAULT_BACKBONE: list[str] = []


def register_backbone(kind: str, *, default: bool = False):
    """Class decorator that registers a :class:`BackboneSpec` under ``kind``.

    Parameters
    ----------
    kind : str
        Name of the kind (saved in model folders).
    default : bool, default=False
        Whether this kind takes every ``model`` value that no other kind accepts (the
        language models: any embedded name, folder or hub id).

    Raises
    ------
    ValueError
        If another class is registered under ``kind`` already.
    """

    def register(cls: type) -> type:
        if kind in BACKBONES and BACKBONES[kind] is not cls:
            raise ValueError(f"a backbone kind {kind!r} is registered already")
        cls.kind = kind
        BACKBONES[kind] = cls
        if default:
            _DEFAULT_BACKBONE[:] = [kind]
        return cls

    return register


def backbone_for(model: str) -> type[BackboneSpec]:
    """Return the registered backbone kind that the estimator's ``model`` selects.

    Parameters
    ----------
    model : str
        The estimator's ``model`` parameter.

    Returns
    -------
    spec_class : type
        A registered :class:`BackboneSpec` class.
    """
    for kind, cls in BACKBONES.items():
        if kind not in _DEFAULT_BACKBONE and cls.accepts(model):
            return cls
    return BACKBONES[_DEFAULT_BACKBONE[0]]


class WeightsMismatchError(ValueError):
    """Trainable weights that do not fit the backbone they are loaded into."""


def check_trainable_state(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> None:
    """Refuse trainable weights that lack, add or reshape a tensor of the backbone's.

    Loading only part of them would leave the rest freshly initialized and predict
    without a word; a tensor of another shape would fail later with a bare size error.

    Parameters
    ----------
    expected : mapping of str to Tensor
        The backbone's own trainable weights by name.
    state : mapping of str to Tensor or ndarray
        The weights to load.

    Raises
    ------
    WeightsMismatchError
        Naming the first missing, unexpected or mis-shaped tensor.
    """

    def first(names: list[str]) -> str:
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        return f"{names[0]!r}{more}"

    missing = sorted(set(expected) - set(state))
    if missing:
        raise WeightsMismatchError(f"the trainable weight {first(missing)} is missing")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise WeightsMismatchError(f"the weight {first(unexpected)} is not one of this model's")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise WeightsMismatchError(
                f"the trainable weight {name!r} has shape {tuple(state[name].shape)}, but this "
                f"model's has shape {tuple(tensor.shape)}"
            )
