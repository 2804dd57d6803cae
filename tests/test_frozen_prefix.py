"""Adapters on the top layers only, and the frozen layers below computed once per prompt."""

import numpy as np
import pytest
import torch
from conftest import split_and_plain_gradients

from llmregressor import LLMRegressor, backbones
from llmregressor.backbones import LanguageModelSpec, adapted_layers
from llmregressor.codecs import NormalizedCodec
from llmregressor.decoding import NumberPolicy
from llmregressor.serialize import RowSerializer


def build(model, lora_layers, X, seed=0):
    codec = NormalizedCodec(base=10, digits=3)
    serializer = RowSerializer(list(X.columns), None, 4, "unknown", "compact")
    lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}
    spec = LanguageModelSpec(
        model, lora, codec.symbols, "float32", serializer, lora_layers=lora_layers
    )
    backbone = spec.build(torch.device("cpu"))
    # LoRA starts as a no-op (B = 0); random adapters make the top layers differ from the base.
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in backbone.trainable_parameters():
            param.normal_(0, 0.3)
    return backbone, NumberPolicy(backbone, codec.allowed_mask())


def layer_indices(names):
    """The decoder layers that the adapter weights ``names`` sit in."""
    return {int(name.split(".layers.")[1].split(".")[0]) for name in names}


def plain_hidden(backbone, batch, symbols):
    """Hidden states from one plain forward pass over prompt + symbols (no split, no cache)."""
    return backbone.encode_sequences(batch, 1, symbols)


def test_only_the_top_layers_get_adapters(four_layer_model, houses):
    X, _ = houses(8)
    backbone, _ = build(four_layer_model, 1, X)
    assert layer_indices(backbone.adapter_state()) == {3}
    backbone, _ = build(four_layer_model, None, X)
    assert layer_indices(backbone.adapter_state()) == {0, 1, 2, 3}


@pytest.mark.parametrize("lora_layers", [1, 3])
def test_split_encoding_equals_the_plain_forward_pass(four_layer_model, houses, lora_layers):
    X, _ = houses(12)
    backbone, policy = build(four_layer_model, lora_layers, X)
    batch = backbone.collate(backbone.encode_rows(X.to_numpy(dtype=object)).items)
    symbols = torch.tensor([[1, 2], [3, 4]] * 6)
    expected = plain_hidden(backbone, batch, symbols)
    with backbone.caching_prompts():
        for _ in range(2):  # the second pass reads every prompt from the store
            state, first = backbone.encode(batch)
            rest = backbone.advance(state, symbols)
            # Equal up to float rounding (the passes group the same sums differently).
            torch.testing.assert_close(
                torch.cat([first[:, None], rest], 1), expected, rtol=1e-4, atol=1e-4
            )


def test_split_gradients_equal_the_plain_ones(four_layer_model, houses):
    X, _ = houses(6)
    backbone, policy = build(four_layer_model, 2, X)
    batch = backbone.collate(backbone.encode_rows(X.to_numpy(dtype=object)).items)
    tokens = torch.tensor([[[0, 1, 2]], [[3, 4, 5]]] * 3)
    split, plain = split_and_plain_gradients(backbone, policy, batch, tokens)
    for got, want in zip(split, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_prompts_are_kept_only_inside_the_block(four_layer_model, houses):
    X, _ = houses(10)
    backbone, _ = build(four_layer_model, 1, X)
    batch = backbone.collate(backbone.encode_rows(X.to_numpy(dtype=object)).items)
    prefix = backbone.frozen_prefix
    backbone.encode(batch)
    assert prefix.n_cached == 0
    with backbone.caching_prompts():
        backbone.encode(batch)
        assert prefix.n_cached == len(X)
        with backbone.caching_prompts():  # nested: the same store
            assert prefix.n_cached == len(X)
        assert prefix.n_cached == len(X)
    assert prefix.n_cached == 0


def test_prompts_past_the_byte_budget_are_recomputed(four_layer_model, houses):
    X, _ = houses(10)
    backbone, _ = build(four_layer_model, 1, X)
    batch = backbone.collate(backbone.encode_rows(X.to_numpy(dtype=object)).items)
    _, expected = backbone.encode(batch)
    backbone.frozen_prefix.max_bytes = 0
    with backbone.caching_prompts():
        _, first = backbone.encode(batch)
        _, second = backbone.encode(batch)
        assert backbone.frozen_prefix.n_cached == 0
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)


def test_every_layer_adapted_has_no_split(four_layer_model, houses):
    X, _ = houses(4)
    backbone, _ = build(four_layer_model, 4, X)
    assert backbone.frozen_prefix is None


def test_fit_with_top_layer_adapters_saves_and_loads(four_layer_model, houses, tmp_path):
    X, y = houses(40)
    reg = LLMRegressor(
        model=four_layer_model,
        lora_layers=2,
        sft_epochs=2,
        rl_epochs=1,
        n_samples=4,
        random_state=0,
    ).fit(X, y)
    assert all(".layers.2." in k or ".layers.3." in k for k in reg.policy_.trainable_weights())
    reg.save(tmp_path / "model")
    loaded = LLMRegressor.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.lora_layers == 2


def test_more_lora_layers_than_the_model_has_is_refused(four_layer_model, houses):
    X, y = houses(20)
    with pytest.raises(ValueError, match="lora_layers=5 exceeds the 4 decoder layers"):
        LLMRegressor(model=four_layer_model, lora_layers=5, sft_epochs=1).fit(X, y)


def test_auto_adapts_the_top_layers_of_a_deeper_model():
    top = backbones.AUTO_LORA_LAYERS
    assert adapted_layers("auto", 30, "all-linear") == top
    assert adapted_layers("auto", 30, ["q_proj", "v_proj"]) == top
    assert adapted_layers("auto", top - 1, "all-linear") == top - 1
    # peft restricts adapters to some layers by module name only, not under a pattern.
    assert adapted_layers("auto", 30, "q_proj") == 30
    assert adapted_layers(None, 30, "all-linear") == 30
    assert adapted_layers(3, 30, "all-linear") == 3


def adapted_layer_indices(reg):
    return layer_indices(reg.policy_.trainable_weights())


def test_auto_lora_layers_adapts_the_top_layers_only_under_an_anchor(
    four_layer_model, houses, monkeypatch
):
    # The 4-layer model stands for a model deeper than "auto"'s top layers.
    monkeypatch.setattr(backbones, "AUTO_LORA_LAYERS", 2)
    X, y = houses(40)
    params = dict(model=four_layer_model, sft_epochs=1, n_samples=4, random_state=0)
    anchored = LLMRegressor(**params).fit(X, y)
    assert anchored.lora_layers == "auto" and adapted_layer_indices(anchored) == {2, 3}
    assert anchored.policy_.policy.backbone.frozen_prefix is not None
    # Without an anchor the language model alone predicts: every layer is adapted.
    alone = LLMRegressor(anchor=None, **params).fit(X, y)
    assert adapted_layer_indices(alone) == {0, 1, 2, 3}
