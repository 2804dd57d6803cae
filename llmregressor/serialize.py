r"""Row serialization: one table row becomes one text prompt.

A row is written as ``"<name> is <value>"`` pairs joined by ``", "`` and placed into a
prompt template whose ``{features}`` field receives them. The template ends with the
answer prefix after which the number tokens are decoded, e.g. the default
``"{features}\\nThe target is "`` gives::

    age is 59, sex is 2, bmi is 32.1
    The target is

Numbers are rounded to a fixed count of significant digits and written positionally
(``123500``, ``0.0381``), never in exponent notation the LM rarely saw in tables.
Missing values (``None``, ``NaN``, ``pd.NA``, ``NaT``, empty strings) become a word.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_PROMPT_TEMPLATE", "RowSerializer"]

DEFAULT_PROMPT_TEMPLATE = "{features}\nThe target is "


@dataclass(frozen=True)
class RowSerializer:
    """Turn rows of a 2-D object or numeric array into prompts.

    Parameters
    ----------
    feature_names : sequence of str
        Column names, in column order.
    template : str, default=DEFAULT_PROMPT_TEMPLATE
        Prompt template; must contain ``{features}`` exactly once. Its text after
        ``{features}`` is the answer prefix.
    significant_digits : int, default=4
        Significant digits kept when writing non-integer numbers.
    missing : str, default="unknown"
        Word written for a missing value.
    """

    feature_names: Sequence[str]
    template: str = DEFAULT_PROMPT_TEMPLATE
    significant_digits: int = 4
    missing: str = "unknown"

    def __post_init__(self) -> None:
        if self.template.count("{features}") != 1:
            raise ValueError(
                "prompt_template must contain the field '{features}' exactly once, "
                f"got {self.template!r}"
            )

    def format_value(self, value: object) -> str:
        """Write one cell as text.

        Parameters
        ----------
        value : object
            A number, string, boolean, category value or missing marker.

        Returns
        -------
        text : str
        """
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return self.missing
        if isinstance(value, bool | np.bool_):
            return "true" if value else "false"
        if isinstance(value, numbers.Integral):
            return str(int(value))
        if isinstance(value, numbers.Real):
            return self._format_real(float(value))
        text = str(value).strip()
        return text if text else self.missing

    def _format_real(self, value: float) -> str:
        if not np.isfinite(value):
            raise ValueError(f"cannot serialize the non-finite feature value {value}")
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        if abs(value) >= 1e15 or abs(value) < 1e-6:
            return f"{value:.{self.significant_digits}g}"
        return np.format_float_positional(
            value, precision=self.significant_digits, unique=False, fractional=False, trim="-"
        )

    def serialize_row(self, row: Sequence[object]) -> str:
        """Write one row as a prompt."""
        features = ", ".join(
            f"{name} is {self.format_value(value)}"
            for name, value in zip(self.feature_names, row, strict=True)
        )
        return self.template.replace("{features}", features)

    def __call__(self, X: np.ndarray) -> list[str]:
        """Write every row of ``X`` as a prompt.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Rows, columns in the order of ``feature_names``.

        Returns
        -------
        prompts : list of str
        """
        return [self.serialize_row(row) for row in X]
