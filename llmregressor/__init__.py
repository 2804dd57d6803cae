"""llmregressor: a scikit-learn regressor that fine-tunes a language model to decode numbers."""

from .codecs import NormalizedCodec, NumberCodec, ScientificCodec
from .estimator import LLMRegressor
from .serialize import RowSerializer

__version__ = "0.1.0"

__all__ = [
    "LLMRegressor",
    "NormalizedCodec",
    "NumberCodec",
    "RowSerializer",
    "ScientificCodec",
    "__version__",
]
