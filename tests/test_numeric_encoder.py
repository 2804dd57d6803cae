"""Soft-prompt vectors from a row's numbers (``soft_prompt_tokens``)."""

import warnings

import numpy as np
import pytest
import torch
from conftest import split_and_plain_gradients

from llmregressor import LLMRegressor
from llmregressor.backbones import ENCODER_PREFIX, LanguageModelSpec
from llmregressor.codecs import NormalizedCodec
from llmregressor.decoding import NumberPolicy
from llmregressor.numeric_encoder import CLIP, NumericEncoder, NumericScaler
from llmregressor.serialize import RowSerializer


def rows(houses, n_rows):
    X, y = houses(n_rows)
    return X.to_numpy(dtype=object), y


def build(model, X, lora_layers=None, tokens=2):
    """A backbone with a numeric encoder whose weights (and adapters) are all random."""
    codec = NormalizedCodec(base=10, digits=3)
    serializer = RowSerializer([f"x{j}" for j in range(X.shape[1])], None, 4, "unknown", "compact")
    lora = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"}
    spec = LanguageModelSpec(
        model,
        lora,
        codec.symbols,
        "float32",
        serializer,
        lora_layers=lora_layers,
        soft_prompt_tokens=tokens,
        numeric_scaler=NumericScaler.fit(X),
    )
    backbone = spec.build(torch.device("cpu"))
    torch.manual_seed(0)
    with torch.no_grad():
        for param in backbone.trainable_parameters():
            param.normal_(0, 0.3)
    return backbone, NumberPolicy(backbone, codec.allowed_mask())


def test_scaler_standardizes_clips_and_flags_missing_cells():
    X = np.array([[1.0, "a", 10.0], [3.0, "b", np.nan], [np.nan, "a", 30.0]], dtype=object)
    scaler = NumericScaler.fit(X)
    assert scaler.columns == [0, 2] and scaler.n_inputs == 4
    np.testing.assert_allclose(scaler.means, [2.0, 20.0])
    np.testing.assert_allclose(scaler.scales, [1.0, 10.0])
    numbers = scaler.transform(X)
    assert numbers.dtype == np.float32
    np.testing.assert_allclose(numbers[:, :2], [[-1, -1], [1, 0], [0, 1]])
    np.testing.assert_array_equal(numbers[:, 2:], [[0, 0], [0, 1], [1, 0]])
    far = np.array([[1000.0, "a", -1000.0]], dtype=object)
    np.testing.assert_allclose(scaler.transform(far)[0, :2], [CLIP, -CLIP])
    assert NumericScaler.from_json(scaler.to_json()) == scaler


def test_scaler_of_a_constant_column_divides_by_one():
    scaler = NumericScaler.fit(np.array([[2.0], [2.0]]))
    assert scaler.scales == [1.0]
    np.testing.assert_array_equal(scaler.transform(np.array([[2.0], [3.0]]))[:, 0], [0, 1])


def test_scaler_refuses_a_word_in_a_numeric_column():
    scaler = NumericScaler.fit(np.array([[1.0], [2.0]], dtype=object))
    with pytest.raises(ValueError, match="held only numbers in training"):
        scaler.transform(np.array([["big"]], dtype=object))


def test_fresh_encoder_writes_the_mean_embedding_for_every_row():
    embeddings = torch.randn(50, 8)
    encoder = NumericEncoder(4, 3, embeddings)
    out = encoder(torch.randn(5, 4))
    assert out.shape == (5, 3, 8)
    torch.testing.assert_close(out, embeddings.mean(0).expand(5, 3, 8))


@pytest.mark.parametrize("lora_layers", [None, 1])
def test_cached_encoding_equals_one_plain_pass_over_prompt_soft_prompt_and_symbols(
    four_layer_model, houses, lora_layers
):
    X, _ = rows(houses, 12)
    backbone, _ = build(four_layer_model, X, lora_layers)
    batch = backbone.collate(backbone.encode_rows(X).items)
    assert batch["numbers"].shape == (12, 2)  # size and its missing flag
    symbols = torch.tensor([[1, 2], [3, 4]] * 6)
    expected = backbone.encode_sequences(batch, 1, symbols)
    with backbone.caching_prompts():
        for _ in range(2):  # with a frozen prefix the second pass reads the stored prompts
            state, first = backbone.encode(batch)
            rest = backbone.advance(state, symbols)
            torch.testing.assert_close(
                torch.cat([first[:, None], rest], 1), expected, rtol=1e-4, atol=1e-4
            )


def test_gradients_reach_the_encoder_through_the_frozen_layers(four_layer_model, houses):
    X, _ = rows(houses, 6)
    backbone, policy = build(four_layer_model, X, lora_layers=1)
    batch = backbone.collate(backbone.encode_rows(X).items)
    tokens = torch.tensor([[[0, 1, 2]], [[3, 4, 5]]] * 3)
    split, plain = split_and_plain_gradients(backbone, policy, batch, tokens)
    for got, want in zip(split, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    encoder = list(backbone.numeric_encoder.parameters())
    assert all(p.grad.abs().sum() > 0 for p in encoder)


def test_a_row_is_keyed_by_its_numbers_beyond_the_prompt_digits(four_layer_model, houses):
    X, _ = rows(houses, 4)
    backbone, _ = build(four_layer_model, X)
    nudged = X.copy()
    nudged[0, 0] += 1e-6  # below the prompt's 4 significant digits: the same text
    assert backbone.serializer(nudged)[0] == backbone.serializer(X)[0]
    keys, nudged_keys = backbone.encode_rows(X).keys, backbone.encode_rows(nudged).keys
    assert keys[0] != nudged_keys[0]
    np.testing.assert_array_equal(keys[1:], nudged_keys[1:])


def test_the_first_number_token_reads_the_encoded_magnitude(four_layer_model, houses):
    X, _ = rows(houses, 4)
    backbone, _ = build(four_layer_model, X)
    items = backbone.encode_rows(X).items
    # The first row's text with another magnitude for the encoder (3 standard deviations).
    moved = X[:1].copy()
    moved[0, 0] += 3 * backbone.numeric_scaler.scales[0]
    changed = [(items[0][0], backbone.numeric_scaler.transform(moved)[0]), *items[1:]]
    with torch.no_grad():
        _, hidden = backbone.encode(backbone.collate(items))
        _, hidden_moved = backbone.encode(backbone.collate(changed))
    assert not torch.allclose(hidden[0], hidden_moved[0])
    torch.testing.assert_close(hidden[1:], hidden_moved[1:])


def test_fit_saves_and_loads_the_encoder(four_layer_model, houses, tmp_path):
    X, y = houses(40)
    reg = LLMRegressor(
        model=four_layer_model,
        soft_prompt_tokens=2,
        sft_epochs=2,
        n_samples=4,
        residual_scale=1.0,
        random_state=0,
    ).fit(X, y)
    weights = reg.policy_.trainable_weights()
    names = ("bases", "network.0.weight", "network.0.bias", "network.2.weight", "network.2.bias")
    assert {k for k in weights if k.startswith(ENCODER_PREFIX)} == {
        ENCODER_PREFIX + name for name in names
    }
    # Training moved the encoder's output layer off its zero start.
    assert np.abs(weights[ENCODER_PREFIX + "network.2.weight"]).sum() > 0
    reg.save(tmp_path / "model")
    loaded = LLMRegressor.load(tmp_path / "model")
    assert loaded.soft_prompt_tokens == 2
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    # The estimate column (numeric) is read by the encoder too: size and the estimate.
    assert loaded.policy_.spec.numeric_scaler.columns == [0, 3]


def test_the_mlp_decoder_ignores_soft_prompt_tokens(houses):
    X, y = houses(30, notes=False)
    reg = LLMRegressor(
        model="mlp-decoder", anchor=None, soft_prompt_tokens=3, sft_epochs=1, random_state=0
    ).fit(X, y)
    assert reg.predict(X).shape == (30,)


def test_prompts_alone_are_padded_as_the_rows_they_come_from(four_layer_model, houses):
    X, _ = rows(houses, 5)
    backbone, _ = build(four_layer_model, X)
    items = backbone.encode_rows(X).items
    batch = backbone.collate(items)
    padded = backbone.pad_prompts([ids for ids, _ in items])
    assert set(padded) == {"input_ids", "attention_mask"}
    torch.testing.assert_close(padded["input_ids"], batch["input_ids"])
    torch.testing.assert_close(
        batch["numbers"], torch.from_numpy(backbone.numeric_scaler.transform(X))
    )


def test_a_table_without_numeric_columns_gets_learned_bases_alone():
    embeddings = torch.randn(50, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero-element Linear and its warning
        encoder = NumericEncoder(0, 2, embeddings)
    assert encoder.network is None
    out = encoder(torch.zeros(3, 0))
    assert out.shape == (3, 2, 8)
    out.sum().backward()
    assert encoder.bases.grad is not None
