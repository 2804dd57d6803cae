"""scikit-learn's estimator checks on both backbones (no expected failures).

The LM backbone runs on the tiny model; the MLP backbone on a tiny architecture, also
with the ridge anchor (its cross-fit and estimate column take part in every check; the MLP
backbone is the cheaper of the two to fit 50 times).
"""

from conftest import TINY_MODEL_DIR
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from llmregressor import LLMRegressor

MLP_DECODER = LLMRegressor(
    model="mlp-decoder",
    mlp_hidden=(32,),
    d_model=16,
    decoder_layers=1,
    decoder_heads=2,
    decoder_ff=32,
    sft_epochs=1,
    rl_algorithm="remax",
    rl_epochs=1,
    n_samples=2,
    batch_size=32,
)


@parametrize_with_checks(
    [
        LLMRegressor(
            model=str(TINY_MODEL_DIR),
            sft_epochs=1,
            rl_algorithm="remax",
            rl_epochs=1,
            n_samples=2,
            batch_size=32,
        ),
        MLP_DECODER,
        clone(MLP_DECODER).set_params(anchor="ridge"),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
