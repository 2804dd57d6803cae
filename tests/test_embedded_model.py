"""End to end on the real embedded SmolLM2-135M (slow: run with `pytest -m slow`)."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from llmregressor import LLMRegressor

pytestmark = pytest.mark.slow


def test_embedded_default_end_to_end():
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_train, y_train, X_test = X[:40], y[:40], X[40:56]
    reg = LLMRegressor(sft_epochs=1, rl_algorithm="remax", rl_epochs=1, n_samples=4, random_state=0)
    reg.fit(X_train, y_train)
    pred = reg.predict(X_test)
    assert pred.shape == (16,) and np.isfinite(pred).all()
    assert y_train.min() <= pred.min() and pred.max() <= y_train.max()
    blob = pickle.dumps(reg)
    assert len(blob) < 30 * 2**20, f"pickle is {len(blob) / 2**20:.1f} MiB"
    np.testing.assert_array_equal(pickle.loads(blob).predict(X_test), pred)
