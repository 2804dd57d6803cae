"""LMCellEmbeddings: a frozen base LM's mean hidden state of text cells, as features."""

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline

from llmregressor import LLMRegressor, cell_embeddings
from llmregressor.backbones import load_pretrained
from llmregressor.cell_embeddings import LMCellEmbeddings, embed_texts

TEXTS = ["double bacon burger", "salad", "small fries with extra salt and a drink", ""]


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    """Each test embeds from scratch, so that what it checks is computed, not recalled."""
    monkeypatch.setattr(cell_embeddings, "_cache", OrderedDict())


def test_layer_zero_is_the_mean_of_the_token_embeddings(tiny_model_dir):
    causal_lm, tokenizer = load_pretrained(tiny_model_dir)
    ids = tokenizer("double bacon burger", add_special_tokens=False)["input_ids"]
    expected = causal_lm.get_input_embeddings()(torch.tensor(ids)).mean(0).detach().numpy()
    got = embed_texts(["double bacon burger"], model=tiny_model_dir, layer=0)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-6)


def test_the_last_layer_is_the_causal_lm_s_last_hidden_state(tiny_model_dir):
    causal_lm, tokenizer = load_pretrained(tiny_model_dir)
    ids = tokenizer("salad", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        states = causal_lm(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
    got = embed_texts(["salad"], model=tiny_model_dir, layer=causal_lm.config.num_hidden_layers)
    np.testing.assert_allclose(got[0], states[0].mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_a_text_embeds_the_same_alone_as_in_a_padded_batch(tiny_model_dir):
    batch = embed_texts(TEXTS, model=tiny_model_dir, layer=2)
    for i, text in enumerate(TEXTS):
        cell_embeddings._cache.clear()
        alone = embed_texts([text], model=tiny_model_dir, layer=2)
        np.testing.assert_allclose(alone[0], batch[i], rtol=1e-5, atol=1e-6)


def test_the_default_layer_is_the_middle_one(tiny_model_dir):
    # The tiny model has 2 layers: the middle one is layer 1, not the embeddings or the last.
    default = embed_texts(TEXTS, model=tiny_model_dir)
    np.testing.assert_array_equal(default, embed_texts(TEXTS, model=tiny_model_dir, layer=1))
    assert not np.allclose(default, embed_texts(TEXTS, model=tiny_model_dir, layer=2))


def test_repeated_texts_are_embedded_once_and_kept_up_to_the_cache_size(
    tiny_model_dir, monkeypatch
):
    monkeypatch.setattr(cell_embeddings, "CACHE_SIZE", 2)
    got = embed_texts([*TEXTS, TEXTS[0]], model=tiny_model_dir, layer=1)
    assert len(cell_embeddings._cache) == 2
    np.testing.assert_array_equal(got[0], got[-1])
    monkeypatch.setattr(cell_embeddings, "_cache", OrderedDict())
    monkeypatch.setattr(cell_embeddings, "CACHE_SIZE", 100)
    np.testing.assert_allclose(got[:-1], embed_texts(TEXTS, model=tiny_model_dir, layer=1))


@pytest.mark.parametrize("layer", [-1, 3, True, 1.0])
def test_a_layer_the_model_does_not_have_is_refused(tiny_model_dir, layer):
    with pytest.raises(ValueError, match="layer must be an int from 0 to 2"):
        embed_texts(TEXTS, model=tiny_model_dir, layer=layer)


def test_features_are_standardized_blocks_per_column(tiny_model_dir):
    X = pd.DataFrame({"item": TEXTS * 3, "note": ["old", None, "new", "old"] * 3})
    features = LMCellEmbeddings(model=tiny_model_dir).fit_transform(X)
    assert features.shape == (12, 2 * 32)
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-9)
    # Divided by the square root of the block width, each feature's spread is 1 / sqrt(32).
    np.testing.assert_allclose(features.std(axis=0), 1 / np.sqrt(32), rtol=1e-6)
    # A missing cell reads as an empty one.
    none, empty = X.iloc[[1]], X.iloc[[1]].fillna("")
    embedder = LMCellEmbeddings(model=tiny_model_dir).fit(X)
    np.testing.assert_array_equal(embedder.transform(none), embedder.transform(empty))


def test_the_column_name_is_read_with_each_cell(tiny_model_dir):
    cells = np.array(TEXTS, dtype=object)
    named = LMCellEmbeddings(model=tiny_model_dir).fit(pd.DataFrame({"item": cells}))
    other = LMCellEmbeddings(model=tiny_model_dir).fit(pd.DataFrame({"title": cells}))
    unnamed = LMCellEmbeddings(model=tiny_model_dir).fit(cells[:, None])
    assert not np.allclose(named.mean_, other.mean_)
    renamed = LMCellEmbeddings(model=tiny_model_dir, names=["title"]).fit(cells[:, None])
    np.testing.assert_array_equal(renamed.mean_, other.mean_)
    with pytest.raises(ValueError, match="names has 2 entries for 1 columns"):
        LMCellEmbeddings(model=tiny_model_dir, names=["a", "b"]).fit(cells[:, None])
    expected = embed_texts([f"x0: {c}" for c in cells], model=tiny_model_dir).mean(axis=0)
    np.testing.assert_allclose(unnamed.mean_, expected, rtol=1e-6)


def test_new_rows_need_the_fitted_columns(tiny_model_dir):
    embedder = LMCellEmbeddings(model=tiny_model_dir).fit(pd.DataFrame({"item": TEXTS}))
    with pytest.raises(ValueError, match="feature"):
        embedder.transform(pd.DataFrame({"item": TEXTS, "note": TEXTS}))


def test_an_anchor_of_lm_embeddings_is_cross_fitted_by_the_regressor(tiny_model_dir):
    X = pd.DataFrame({"item": ["burger", "double burger", "salad", "fries", "shake"] * 8})
    y = np.array([500.0, 800.0, 150.0, 300.0, 400.0] * 8)
    anchor = make_pipeline(LMCellEmbeddings(model=tiny_model_dir), RidgeCV())
    reg = LLMRegressor(
        model=tiny_model_dir,
        anchor=anchor,
        anchor_mode="residual",
        sft_epochs=1,
        rl_algorithm=None,
        n_samples=2,
        interval_calibration=None,
        random_state=0,
    ).fit(X, y)
    np.testing.assert_allclose(reg.anchor_.predict(X), clone(anchor).fit(X, y).predict(X))
    assert np.isfinite(reg.predict(X)).all()
