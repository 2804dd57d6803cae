"""llmregressor: a scikit-learn regressor that fine-tunes a language model to decode numbers."""

# The built-in backbone kinds register themselves on import; importing them here, before
# anything else of the package runs, keeps the registry complete whatever module a user
# imports first.
from . import backbones, mlp_decoder  # noqa: F401  # isort: skip
from ._version import __version__
from .cell_embeddings import LMCellEmbeddings
from .codecs import NormalizedCodec, NumberCodec, ScientificCodec
from .estimator import LLMRegressor
from .serialize import RowSerializer

__all__ = [
    "LLMRegressor",
    "LMCellEmbeddings",
    "NormalizedCodec",
    "NumberCodec",
    "RowSerializer",
    "ScientificCodec",
    "__version__",
]
