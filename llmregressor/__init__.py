"""llmregressor: a scikit-learn regressor that fine-tunes a language model to decode numbers."""

from ._version import __version__
from .codecs import NormalizedCodec, NumberCodec, ScientificCodec
from .estimator import LLMRegressor
from .serialize import RowSerializer

__all__ = [
    "LLMRegressor",
    "NormalizedCodec",
    "NumberCodec",
    "RowSerializer",
    "ScientificCodec",
    "__version__",
]
