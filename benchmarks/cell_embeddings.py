"""What the frozen language model makes of a table's text cells, as features for a classic model.

``CellEmbeddings`` turns one column of text cells into the hidden state of one layer of a base
LM (the package's embedded model by default) averaged over the tokens of ``"<column>: <cell>"``:
what the model has read about a burger's name or an artist, without any fine-tuning. Each
distinct cell is embedded once per process. The features are standardized on the training
rows and divided by the square root of their width, so that the block weighs about as much
under one ridge penalty as a row's unit-norm TF-IDF vector.
"""

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from llmregressor.backbones import load_pretrained

# (model, text) -> mean-pooled hidden state of every layer; shared by every fit of the process
# (seeds, folds, layers: one forward pass gives them all).
_CACHE: dict[tuple[str, str], np.ndarray] = {}


def embed_texts(texts: list[str], model: str, layer: int, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled hidden states of ``layer`` (0 = token embeddings) for each text."""
    missing = sorted({t for t in texts if (model, t) not in _CACHE})
    if missing:
        causal_lm, tokenizer = load_pretrained(model)
        causal_lm.eval()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in chunk]
            width = max(len(i) for i in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for row, tokens in enumerate(ids):
                input_ids[row, : len(tokens)] = torch.tensor(tokens)
                mask[row, : len(tokens)] = 1
            with torch.no_grad():
                states = torch.stack(
                    causal_lm(
                        input_ids=input_ids, attention_mask=mask, output_hidden_states=True
                    ).hidden_states,
                    dim=1,
                )
            weights = (mask / mask.sum(1, keepdim=True))[:, None, :, None]
            pooled = (states * weights).sum(2)
            for text, vectors in zip(chunk, pooled.float().numpy(), strict=True):
                _CACHE[(model, text)] = vectors
    return np.stack([_CACHE[(model, t)][layer] for t in texts])


class CellEmbeddings(TransformerMixin, BaseEstimator):
    """One text column as the base LM's mean hidden state of ``layer`` over each cell.

    Parameters
    ----------
    column : str
        The column's name, written before each cell (``"artist: Blake, William"``).
    layer : int
        Which hidden state: 0 is the token embeddings, the model's layer count its last.
    model : str
        Embedded model name or local folder, as ``LLMRegressor(model=...)`` takes it.
    """

    def __init__(self, column: str, layer: int = 15, model: str = "smollm2-135m"):
        self.column = column
        self.layer = layer
        self.model = model

    def _embed(self, X) -> np.ndarray:
        cells = np.asarray(X, dtype=object).reshape(-1)
        texts = [f"{self.column}: {cell}" for cell in cells]
        return embed_texts(texts, self.model, self.layer)

    def fit(self, X, y=None) -> "CellEmbeddings":
        vectors = self._embed(X)
        self.mean_ = vectors.mean(0)
        self.scale_ = vectors.std(0) + 1e-6
        return self

    def transform(self, X) -> np.ndarray:
        vectors = (self._embed(X) - self.mean_) / self.scale_
        return vectors / np.sqrt(vectors.shape[1])
