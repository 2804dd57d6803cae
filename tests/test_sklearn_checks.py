"""scikit-learn's estimator checks on the tiny model (no expected failures)."""

from conftest import TINY_MODEL_DIR
from sklearn.utils.estimator_checks import parametrize_with_checks

from llmregressor import LLMRegressor


@parametrize_with_checks(
    [
        LLMRegressor(
            model=str(TINY_MODEL_DIR),
            sft_epochs=1,
            rl_algorithm="remax",
            rl_epochs=1,
            n_samples=2,
            batch_size=32,
        )
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
