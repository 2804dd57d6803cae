"""The frozen base language model's reading of text cells, as features for a classic model.

:class:`LMCellEmbeddings` turns columns of text cells into what a base causal LM makes of
them without any fine-tuning: the hidden state of one of its layers, averaged over the
tokens of ``"<column>: <cell>"``. What the model read in pretraining about a burger's name,
a print medium or an artist then reaches a linear model, which on 256 rows could never learn
it from the table. It is a scikit-learn transformer, meant for an anchor (see
:mod:`llmregressor.anchor`), for example beside TF-IDF features in front of ``RidgeCV``::

    anchor = make_pipeline(
        make_column_transformer(
            (TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), "item"),
            (LMCellEmbeddings(), ["item"]),
        ),
        RidgeCV(),
    )
    LLMRegressor(anchor=anchor, anchor_mode="residual")

The base model is the one ``LLMRegressor(model=...)`` would load, from the same per-process
cache and never modified; each distinct text is embedded once per process
(:data:`CACHE_SIZE` texts are kept), so cross-fitting an anchor and refitting it cost one
forward pass per distinct cell.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .backbones import _load_base
from .features import column_names, is_missing

__all__ = ["CACHE_SIZE", "LMCellEmbeddings", "cell_texts", "embed_texts"]

# How many (model, layer, text) embeddings a process keeps: about 115 MB at the embedded
# model's width of 576 floats.
CACHE_SIZE = 50_000

# Texts per forward pass of the base model.
BATCH_SIZE = 64

_cache: OrderedDict[tuple[str, int, str], np.ndarray] = OrderedDict()


def embed_texts(
    texts: Sequence[str], *, model: str = "smollm2-135m", layer: int | None = None
) -> np.ndarray:
    """Average one layer's hidden states of a frozen base LM over each text's tokens.

    Parameters
    ----------
    texts : sequence of str
        The texts, tokenized without special tokens (an empty text reads as the model's
        padding token).
    model : str, default="smollm2-135m"
        Embedded model name or local model folder, as ``LLMRegressor(model=...)`` takes it.
        The texts run through it on the CPU, in float32.
    layer : int or None, default=None
        Which hidden state: 0 is the token embeddings, the model's layer count its last
        layer's output; None is the middle layer (half the layer count, rounded down).

    Returns
    -------
    embeddings : ndarray of shape (len(texts), hidden_size), float32

    Raises
    ------
    ValueError
        If the model cannot be loaded or ``layer`` is out of range.
    """
    base, tokenizer, fingerprint = _load_base(model)
    n_layers = base.config.num_hidden_layers
    layer = n_layers // 2 if layer is None else layer
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= n_layers:
        raise ValueError(f"layer must be an int from 0 to {n_layers} for {model!r}; got {layer!r}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if not texts:
        return np.zeros((0, base.config.hidden_size), dtype=np.float32)
    found = {}
    for text in set(texts):
        if (fingerprint, layer, text) in _cache:
            _cache.move_to_end((fingerprint, layer, text))
            found[text] = _cache[(fingerprint, layer, text)]
    missing = set(texts) - found.keys()
    tokenized = sorted(
        ((tokenizer(t, add_special_tokens=False)["input_ids"] or [pad], t) for t in missing),
        key=lambda pair: (len(pair[0]), pair[1]),
    )
    # Right-padded batches of texts of similar lengths: causal attention keeps the pads out
    # of the real tokens' states, and sorting by length keeps the padding (wasted compute)
    # small.
    for start in range(0, len(tokenized), BATCH_SIZE):
        chunk = [text for _, text in tokenized[start : start + BATCH_SIZE]]
        ids = [tokens for tokens, _ in tokenized[start : start + BATCH_SIZE]]
        width = max(len(tokens) for tokens in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        with torch.no_grad():
            states = base.base_model(
                input_ids=input_ids, attention_mask=mask, output_hidden_states=True
            ).hidden_states[layer]
        weights = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1)
        pooled = (states * weights).sum(1).float().numpy()
        for text, vector in zip(chunk, pooled, strict=True):
            found[text] = _cache[(fingerprint, layer, text)] = vector
            if len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return np.stack([found[text] for text in texts])


def cell_texts(name: str, cells: Sequence[object]) -> list[str]:
    """Write a column's cells as the texts to embed: ``"<name>: <cell>"``, empty if missing.

    Parameters
    ----------
    name : str
        The column's name.
    cells : sequence
        Its cells; any value is read as its ``str``, None/NaN as missing.

    Returns
    -------
    texts : list of str
    """
    return [f"{name}: {'' if is_missing(cell) else cell}" for cell in cells]


class LMCellEmbeddings(TransformerMixin, BaseEstimator):
    """Text columns as a frozen base LM's mean hidden state over each cell's tokens.

    Each column becomes one block of ``hidden_size`` features: the embedding
    (:func:`embed_texts`) of ``"<column>: <cell>"`` (:func:`cell_texts`), where ``<column>``
    is the column's name and a missing cell is empty. Each feature is
    standardized with the mean and standard deviation of the rows given to :meth:`fit`,
    and each block divided by the square root of its width, so that a block weighs about
    as much under one ridge penalty as a row's unit-norm TF-IDF vector.

    Parameters
    ----------
    model : str, default="smollm2-135m"
        Embedded model name or local model folder (use the ``LLMRegressor``'s own model so
        that it is loaded once).
    layer : int or None, default=None
        Which hidden state: 0 is the token embeddings, the layer count the last layer's
        output, None the middle layer. Middle layers of a causal LM tend to carry more of a
        text's meaning than its last layer, which specializes in the next token.
    names : sequence of str or None, default=None
        The names written before each column's cells; None: the column names ``X`` had in
        :meth:`fit`, or ``x0``, ``x1``, ... without.

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit` (only when X had string column names).
    mean_ : ndarray of shape (n_columns * hidden_size,)
        Mean of each feature over the fitted rows.
    scale_ : ndarray of shape (n_columns * hidden_size,)
        Standard deviation of each feature over the fitted rows (1 where it is 0).
    """

    def __init__(
        self,
        model: str = "smollm2-135m",
        layer: int | None = None,
        names: Sequence[str] | None = None,
    ):
        self.model = model
        self.layer = layer
        self.names = names

    def __sklearn_tags__(self):
        """Declare strings and missing cells as valid input."""
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        return tags

    def _embeddings(self, X: np.ndarray) -> np.ndarray:
        if self.names is not None:
            names = [str(name) for name in self.names]
            if len(names) != X.shape[1]:
                raise ValueError(f"names has {len(names)} entries for {X.shape[1]} columns")
        else:
            names = column_names(self, X.shape[1])
        blocks = [
            embed_texts(cell_texts(name, X[:, j]), model=self.model, layer=self.layer)
            for j, name in enumerate(names)
        ]
        return np.hstack(blocks).astype(np.float64)

    def fit(self, X, y=None) -> LMCellEmbeddings:
        """Embed the rows' cells and record each feature's mean and spread.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Text cells (any value is read as its ``str``); None/NaN mean missing.
        y : None
            Ignored.

        Returns
        -------
        self : LMCellEmbeddings
        """
        X = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan")
        features = self._embeddings(X)
        self.mean_ = features.mean(axis=0)
        scale = features.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return self

    def transform(self, X) -> np.ndarray:
        """Return the standardized embeddings of the rows' cells.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the columns seen in :meth:`fit`.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features * hidden_size)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=False)
        width = self.mean_.size // self.n_features_in_
        return (self._embeddings(X) - self.mean_) / self.scale_ / np.sqrt(width)
