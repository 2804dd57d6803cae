r"""Row serialization: one table row becomes one text prompt.

A row is written as name/value pairs in one of two row formats and placed into a prompt
template whose ``{features}`` field receives them. The template ends with the answer
prefix after which the number tokens are decoded. The ``"compact"`` format (the default)
writes ``"<name>:<value>"`` pairs joined by ``","``; with its template
``"{features},target:"`` a row reads ``age:59,sex:2,bmi:32.1,target:``. The ``"sentence"``
format writes ``"<name> is <value>"`` pairs joined by ``", "``; with its template
``"{features}\nThe target is "`` the same row reads::

    age is 59, sex is 2, bmi is 32.1
    The target is

Numbers are rounded to a fixed count of significant digits and written positionally
(``123500``, ``0.0381``), not in the exponent notation the LM rarely saw in tables;
only magnitudes from 1e15 or under 1e-6 fall back to it (``1.235e+15``).
Missing values (``None``, ``NaN``, ``pd.NA``, ``NaT``, empty strings) become a word.

With an anchor (``LLMRegressor(anchor=...)``, see :mod:`llmregressor.anchor`) each row
carries the anchor's estimate of its target as its last value, written as the field
``estimate``: as the last pair of ``{features}``, just before the answer prefix
(``age:59,sex:2,bmi:32.1,estimate:151.2,target:``), or where the template's
``{estimate}`` field stands, if it has one (then only the number is written).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ESTIMATE_FIELD", "PROMPT_TEMPLATES", "ROW_FORMATS", "RowSerializer", "is_missing"]

# Per row format: how one name/value pair is written, and what joins the pairs.
ROW_FORMATS = {"sentence": ("{name} is {value}", ", "), "compact": ("{name}:{value}", ",")}
# The prompt template each row format gets when none is given: the answer prefix reads
# as the next pair of the same format.
PROMPT_TEMPLATES = {"sentence": "{features}\nThe target is ", "compact": "{features},target:"}
# The name of the anchor's estimate among a row's fields, and the template field that
# places it elsewhere.
ESTIMATE_FIELD = "estimate"
_ESTIMATE_TAG = "{" + ESTIMATE_FIELD + "}"


def is_missing(value: object) -> bool:
    """Whether a cell is missing: ``None``, ``NaN``, ``pd.NA``, ``NaT`` or a blank string.

    The one definition both backbones use, so prompts and the mlp-decoder's features read
    the same cells as missing.
    """
    if isinstance(value, str):
        # Blank cells are how CSV files write "missing".
        return not value.strip()
    return value is None or bool(pd.isna(value))


@dataclass(frozen=True)
class RowSerializer:
    """Turn rows of a 2-D object or numeric array into prompts.

    Parameters
    ----------
    feature_names : sequence of str
        Column names, in column order.
    template : str or None, default=None
        Prompt template; must contain ``{features}`` exactly once. Its text after
        ``{features}`` is the answer prefix. None takes the row format's own from
        ``PROMPT_TEMPLATES`` (the attribute then holds that template).
    significant_digits : int, default=4
        Significant digits kept when writing non-integer numbers.
    missing : str, default="unknown"
        Word written for a missing value.
    row_format : {"compact", "sentence"}, default="compact"
        How each name/value pair is written and joined (see ``ROW_FORMATS``).
    estimate : bool, default=False
        Whether each row ends with an anchor's estimate of its target, one value more than
        ``feature_names``. It is written at the template's ``{estimate}`` field if there is
        one, else as the last pair of ``{features}``, named ``"estimate"`` (so no feature
        may have that name).
    """

    feature_names: Sequence[str]
    template: str | None = None
    significant_digits: int = 4
    missing: str = "unknown"
    row_format: str = "compact"
    estimate: bool = False

    def __post_init__(self) -> None:
        if self.row_format not in ROW_FORMATS:
            raise ValueError(
                f"row_format must be one of {sorted(ROW_FORMATS)}, got {self.row_format!r}"
            )
        if self.template is None:
            # The documented way to set a field of a frozen dataclass while initializing it.
            object.__setattr__(self, "template", PROMPT_TEMPLATES[self.row_format])
        if self.template.count("{features}") != 1:
            raise ValueError(
                "prompt_template must contain the field '{features}' exactly once, "
                f"got {self.template!r}"
            )
        if self.template.count(_ESTIMATE_TAG) > int(self.estimate):
            raise ValueError(
                f"prompt_template may contain the field '{_ESTIMATE_TAG}' only with an anchor, "
                f"and then at most once, got {self.template!r}"
            )
        if self.estimate and ESTIMATE_FIELD in self.feature_names:
            raise ValueError(
                f"A feature column is named {ESTIMATE_FIELD!r}, the prompt field of the "
                "anchor's estimate: rename the column"
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
        if is_missing(value):
            return self.missing
        if isinstance(value, bool | np.bool_):
            return "true" if value else "false"
        if isinstance(value, numbers.Integral):
            return str(int(value))
        if isinstance(value, numbers.Real):
            return self._format_real(float(value))
        # Any other object: its text, or the missing word if that text is blank.
        return str(value).strip() or self.missing

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
        pair, separator = ROW_FORMATS[self.row_format]
        names, values, template = list(self.feature_names), list(row), self.template
        if self.estimate:
            estimate = values.pop()
            if _ESTIMATE_TAG in template:
                # Placed before the features: a feature's text may itself read "{estimate}".
                template = template.replace(_ESTIMATE_TAG, self.format_value(estimate))
            else:
                names.append(ESTIMATE_FIELD)
                values.append(estimate)
        features = separator.join(
            pair.format(name=name, value=self.format_value(value))
            for name, value in zip(names, values, strict=True)
        )
        return template.replace("{features}", features)

    def __call__(self, X: np.ndarray) -> list[str]:
        """Write every row of ``X`` as a prompt.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Rows, columns in the order of ``feature_names`` (and with ``estimate``, the
            estimate last).

        Returns
        -------
        prompts : list of str
        """
        return [self.serialize_row(row) for row in X]
