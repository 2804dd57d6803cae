"""Soft-prompt vectors written from a row's numbers: numeric grounding for the LM backbone.

A language model reads a table row as text, so each number reaches it as a string of digit
tokens, and learning a smooth function of magnitudes written that way takes more than a few
hundred rows. With ``LLMRegressor(soft_prompt_tokens=k)`` a small network,
:class:`NumericEncoder`, also reads the row's numeric cells as magnitudes (standardized with
the training statistics and clipped, missing cells imputed and flagged, by
:class:`NumericScaler`) and writes ``k`` vectors into the model's input-embedding space.
They follow the prompt's text and precede the number: a soft prompt (Lester et al. 2021,
arXiv 2104.08691) computed from the features, as the research's own code feeds its
features through an MLP encoder (Gorishniy et al. 2022, arXiv 2203.05556, study such
numeric embeddings). The network is trained with the adapters; categories and free text
are still read as text, and the numbers stay in the text too.

After the text, not before it: causal attention leaves the text's results unchanged, so the
frozen layers' results for each prompt are still computed once per fit
(:mod:`~llmregressor.frozen_prefix`); the ``k`` positions go through every layer in every
step, as the number's own tokens do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .features import _as_float, numeric_columns

__all__ = ["CLIP", "ENCODER_WIDTH", "NumericEncoder", "NumericScaler"]

# Standardized values are clipped to [-CLIP, CLIP]: one far outlier in a new row should not
# drive the soft prompt far outside what training showed the model.
CLIP = 5.0

# Width of the encoder's hidden layer: the inputs are a few dozen numbers at most, and at a
# few hundred rows a wider network only fits noise sooner.
ENCODER_WIDTH = 64


@dataclass
class NumericScaler:
    """Which columns are numeric, and how to standardize them (fitted on the training rows).

    Parameters
    ----------
    columns : list of int
        The numeric columns, in order.
    means : list of float
        Each column's mean over the rows given to :meth:`fit` (0 for a column with every
        cell missing).
    scales : list of float
        Each column's standard deviation over those rows (1 where it is 0 or unknown).
    """

    columns: list[int]
    means: list[float]
    scales: list[float]

    @classmethod
    def fit(cls, X: np.ndarray) -> NumericScaler:
        """Find the numeric columns of ``X`` and their statistics, missing cells left out.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Validated training rows (numeric or object dtype).

        Returns
        -------
        scaler : NumericScaler
        """
        columns = np.flatnonzero(numeric_columns(X))
        values = _as_float(X[:, columns])
        present = ~np.isnan(values)
        counts = present.sum(axis=0)
        filled = np.where(present, values, 0.0)
        means = filled.sum(axis=0) / np.maximum(counts, 1)
        spread = np.where(present, values - means, 0.0)
        scales = np.sqrt((spread**2).sum(axis=0) / np.maximum(counts, 1))
        scales = np.where(scales > 0, scales, 1.0)
        return cls(columns.tolist(), means.tolist(), scales.tolist())

    @property
    def n_inputs(self) -> int:
        """Width of :meth:`transform`'s output: a value and a missing flag per column."""
        return 2 * len(self.columns)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardize, clip and impute the numeric columns, and flag missing cells.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
            Rows with the columns of the training rows.

        Returns
        -------
        numbers : ndarray of shape (n_rows, n_inputs), dtype float32
            The standardized values (0, the mean, where missing), then a 0/1 flag per
            column that is 1 where the cell is missing.

        Raises
        ------
        ValueError
            If a cell of a numeric column is not a number.
        """
        try:
            values = _as_float(X[:, self.columns])
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"columns {self.columns} held only numbers in training; a new row holds a "
                f"cell that is not a number there ({err})"
            ) from err
        missing = np.isnan(values)
        standardized = np.clip((values - self.means) / self.scales, -CLIP, CLIP)
        numbers = np.concatenate([np.where(missing, 0.0, standardized), missing], axis=1)
        return numbers.astype(np.float32)

    def to_json(self) -> dict:
        """Return the scaler as a JSON value.

        Returns
        -------
        state : dict
            ``columns``, ``means`` and ``scales``, as lists.
        """
        return {"columns": self.columns, "means": self.means, "scales": self.scales}

    @classmethod
    def from_json(cls, state: dict) -> NumericScaler:
        """Rebuild a scaler from :meth:`to_json`.

        Parameters
        ----------
        state : dict
            What :meth:`to_json` returned.

        Returns
        -------
        scaler : NumericScaler
        """
        return cls(list(state["columns"]), list(state["means"]), list(state["scales"]))


class NumericEncoder(nn.Module):
    """An MLP from a row's scaled numbers to ``n_tokens`` input embeddings of the LM.

    Each vector is a learned base vector plus the network's output for the row. The
    bases start at the mean of the model's input embeddings (transformers starts the
    embeddings of added tokens near it) and the output layer at zero, so a fresh encoder
    writes the same ``n_tokens`` ordinary-looking vectors for every row: nothing
    row-specific until training finds what in the numbers to add.

    Parameters
    ----------
    n_inputs : int
        Width of the scaled numbers (:attr:`NumericScaler.n_inputs`; 0, a table without
        numeric columns, leaves only the bases: learned, but the same for every row).
    n_tokens : int
        Soft-prompt vectors per row.
    embeddings : Tensor of shape (vocab, width)
        The model's input embeddings (read for the initial bases, not kept).
    """

    def __init__(self, n_inputs: int, n_tokens: int, embeddings: torch.Tensor) -> None:
        super().__init__()
        width = embeddings.shape[1]
        self.n_tokens = n_tokens
        self.network = None
        if n_inputs:
            self.network = nn.Sequential(
                nn.Linear(n_inputs, ENCODER_WIDTH),
                nn.GELU(),
                nn.Linear(ENCODER_WIDTH, n_tokens * width),
            )
            nn.init.zeros_(self.network[-1].weight)
            nn.init.zeros_(self.network[-1].bias)
        mean = embeddings.detach().float().mean(dim=0)
        self.bases = nn.Parameter(mean.repeat(n_tokens, 1))

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        """Return the soft prompt of each row.

        Parameters
        ----------
        numbers : Tensor of shape (rows, n_inputs)
            Scaled numbers (:meth:`NumericScaler.transform`).

        Returns
        -------
        soft_prompt : Tensor of shape (rows, n_tokens, width)
        """
        bases = self.bases.expand(len(numbers), -1, -1)
        if self.network is None:
            return bases
        return bases + self.network(numbers).reshape(len(numbers), self.n_tokens, -1)
