"""GPU tests: run with ``pytest -m gpu``, skipped where CUDA is not available.

Every other run of the suite hides CUDA (``conftest.pytest_configure``), so these are
skipped there too. They cannot run on the CPU machines the suite is developed on.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes

from llmregressor import LLMRegressor, cell_embeddings
from llmregressor.backbones import _load_base

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and pytest -m gpu"),
]


def test_default_model_fits_and_predicts_on_cuda_in_bfloat16():
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X, y = X[:64], y[:64]
    reg = LLMRegressor(
        anchor=None,  # the LM alone: its outputs are bounded by the codec's grammar
        sft_epochs=1,
        rl_algorithm="remax",
        rl_epochs=1,
        n_samples=4,
        device="cuda",
        dtype="bfloat16",
        micro_batch_size=8,
        gradient_checkpointing=True,
        random_state=0,
    ).fit(X, y)
    backbone = reg.policy_.policy.backbone
    assert backbone.device.type == "cuda" and backbone.compute_dtype == torch.bfloat16
    pred = reg.predict(X)
    assert pred.shape == (64,) and np.isfinite(pred).all()
    assert y.min() <= pred.min() and pred.max() <= y.max()
    # Sampling is seeded per row: repeated predictions agree on the GPU too.
    np.testing.assert_array_equal(reg.predict(X), pred)


def test_the_default_estimator_fits_on_cuda_with_its_anchor_embedding_on_the_cpu():
    # The anchor's cell embeddings run on the cached CPU copy of the base model while the
    # adapters train on the GPU.
    sizes = ["small", "double", "large", "single"] * 16
    foods = ["burger", "salad"] * 32
    X = pd.DataFrame(
        {
            "item": [
                f"{size} {food} {i}"
                for i, (size, food) in enumerate(zip(sizes, foods, strict=True))
            ],
            "grams": np.linspace(100, 400, 64),
        }
    )
    y = X["grams"].to_numpy() * 2.5 + X["item"].str.contains("double").to_numpy() * 200
    embedded_before = len(cell_embeddings._cache)
    reg = LLMRegressor(sft_epochs=1, n_samples=4, device="cuda", random_state=0).fit(X, y)
    assert reg.policy_.policy.backbone.device.type == "cuda"
    # The anchor's cross-validation embedded the item cells, with the base left on the CPU.
    assert len(cell_embeddings._cache) > embedded_before
    assert _load_base(reg.model)[0].device.type == "cpu"
    assert np.isfinite(reg.predict(X)).all()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpu_fit_matches_one_gpu(tiny_model_dir, tmp_path):
    from test_distributed import assert_weights_close, fit_in_processes, params

    rng = np.random.default_rng(0)
    X = rng.normal(size=(31, 3)).round(2)
    y = X @ np.array([1.0, 2.0, -1.0]) + rng.normal(size=31) * 0.1
    # float32 without TF32 matmuls (torch's default), so only the summation order differs.
    fit_params = params(tiny_model_dir, device="cuda")
    ranks = fit_in_processes(X, y, fit_params, 2, tmp_path)
    # NCCL, one GPU per process, and the same estimator on both.
    assert [str(r["device"]) for r in ranks] == ["cuda:0", "cuda:1"]
    rank_weights = [{k[2:]: r[k] for k in r.files if k.startswith("w/")} for r in ranks]
    assert_weights_close(rank_weights[1], rank_weights[0], atol=0)
    single = LLMRegressor(**fit_params).fit(X, y)
    assert_weights_close(rank_weights[0], single.policy_.trainable_weights(), atol=1e-4)
