"""Streaming row inputs: lazy encoding in chunks gives exactly the eager inputs and fits."""

import zlib

import numpy as np
import pytest
import torch
from peft import LoraConfig

import llmregressor.backbone_protocol as backbone_protocol
from llmregressor import LLMRegressor
from llmregressor.backbone_protocol import EncodedRows, RowInputs
from llmregressor.backbones import LanguageModelBackbone, load_pretrained
from llmregressor.codecs import NormalizedCodec
from llmregressor.features import make_feature_preprocessor
from llmregressor.mlp_decoder import MLPDecoderConfig, MLPDecoderSpec, row_keys
from llmregressor.serialize import RowSerializer


@pytest.fixture(scope="module")
def table(houses):
    return houses(40)


class Recorder:
    """An encoder that writes each row number as its item and logs every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, rows):
        self.calls.append(rows.tolist())
        return EncodedRows([f"row {r}" for r in rows], rows.astype(np.uint32))


def test_take_is_lazy_and_composes_row_numbers():
    encoder = Recorder()
    inputs = RowInputs(np.arange(10), encoder).take([9, 2, 5, 7]).take([3, 0])
    assert len(inputs) == 2 and encoder.calls == []
    encoded = inputs.encode()
    assert encoded.items == ["row 7", "row 9"] and encoded.keys.tolist() == [7, 9]
    assert encoder.calls == [[7, 9]]


def test_batches_encode_whole_batches_a_chunk_at_a_time():
    encoder = Recorder()
    inputs = RowInputs(np.arange(20)[::-1], encoder, chunk_rows=5)
    batches = [np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([6, 7, 8]), np.array([9])]
    pulled = []

    def lazily():
        for batch in batches:
            pulled.append(len(batch))
            yield batch

    stream = inputs.batches(lazily())
    positions, encoded = next(stream)
    # One chunk (two batches, 6 >= 5 rows) is encoded before the first batch is yielded,
    # and nothing further is drawn from the batch iterator.
    assert pulled == [3, 3] and encoder.calls == [[19, 18, 17, 16, 15, 14]]
    assert positions.tolist() == [0, 1, 2] and encoded.items == ["row 19", "row 18", "row 17"]
    rest = list(stream)
    assert [p.tolist() for p, _ in rest] == [[3, 4, 5], [6, 7, 8], [9]]
    assert [e.keys.tolist() for _, e in rest] == [[16, 15, 14], [13, 12, 11], [10]]
    assert encoder.calls[1:] == [[13, 12, 11, 10]]


def shuffled_batches(n_rows, size):
    order = np.random.default_rng(3).permutation(n_rows)
    return [order[start : start + size] for start in range(0, n_rows, size)]


def assert_streamed_equals(inputs, eager):
    for positions, encoded in inputs.batches(shuffled_batches(len(inputs), 3)):
        expected = eager.take(positions)
        np.testing.assert_array_equal(encoded.keys, expected.keys)
        assert encoded.keys.dtype == np.uint32
        for got, want in zip(encoded.items, expected.items, strict=True):
            np.testing.assert_array_equal(got, want)


def test_language_model_streams_the_eager_prompts_tokens_and_keys(table, tiny_model_dir):
    X = table[0].to_numpy(dtype=object)
    codec = NormalizedCodec(10, 3)
    causal_lm, tokenizer = load_pretrained(tiny_model_dir)
    backbone = LanguageModelBackbone(
        causal_lm,
        tokenizer,
        codec.symbols,
        LoraConfig(r=2, target_modules="all-linear"),
        torch.device("cpu"),
        serializer=RowSerializer(list(table[0].columns)),
    )
    # What fit computed for every row up front before inputs were streamed.
    prompts = backbone.serializer(X)
    eager = EncodedRows(
        backbone.tokenize(prompts),
        np.array([zlib.crc32(p.encode("utf-8")) for p in prompts], dtype=np.uint32),
    )
    inputs = RowInputs.from_table(X, backbone.encode_rows, chunk_rows=7)
    assert_streamed_equals(inputs, eager)
    assert_streamed_equals(inputs.take(np.arange(5, 30)), eager.take(np.arange(5, 30)))


def test_mlp_decoder_streams_the_eager_features_and_keys(table):
    X = table[0].to_numpy(dtype=object)
    preprocessor = make_feature_preprocessor(X).fit(X)
    features = preprocessor.transform(X)
    spec = MLPDecoderSpec(
        MLPDecoderConfig(hidden=(8,), d_model=8, layers=1, heads=2, feedforward=8),
        preprocessor,
        features.shape[1],
        10,
        3,
        "float32",
    )
    backbone = spec.build(torch.device("cpu"))
    eager = EncodedRows(features.astype(np.float32), row_keys(features))
    inputs = RowInputs.from_table(X, backbone.encode_rows, chunk_rows=7)
    assert_streamed_equals(inputs, eager)
    assert_streamed_equals(inputs.take(np.arange(5, 30)), eager.take(np.arange(5, 30)))


class EagerRowInputs(RowInputs):
    """Row inputs as fit built them before streaming: every row encoded up front, each
    batch picked from them row by row (no chunks)."""

    def __init__(self, rows, encoded):
        super().__init__(rows, encoded.take)
        self.encoded = encoded

    def take(self, positions):
        return EagerRowInputs(self.rows[np.asarray(positions, dtype=np.intp)], self.encoded)

    def batches(self, batches):
        for positions in batches:
            yield positions, self.encoded.take(self.rows[positions])


def eager_from_table(X, encode_rows, chunk_rows=None):
    return EagerRowInputs(np.arange(len(X)), encode_rows(X))


def fit_and_predict(X, y, params):
    reg = LLMRegressor(**params).fit(X, y)
    history = [{k: v for k, v in r.items() if k != "time_s"} for r in reg.history_]
    return reg.predict(X), reg.sample(X.iloc[::-3], 3), history


@pytest.mark.parametrize("backbone", ["lm", "mlp-decoder"])
def test_streamed_fit_matches_the_eager_fit(table, tiny_model_dir, monkeypatch, backbone):
    X, y = table
    params = dict(
        model=tiny_model_dir if backbone == "lm" else "mlp-decoder",
        mlp_hidden=(16,),
        d_model=8,
        decoder_layers=1,
        decoder_heads=2,
        decoder_ff=16,
        sft_epochs=2,
        batch_size=8,
        micro_batch_size=3,
        early_stopping=True,
        validation_fraction=0.2,
        rl_algorithm="remax",
        rl_epochs=1,
        rl_batch_size=8,
        n_rollouts=2,
        n_samples=3,
        random_state=0,
    )
    # Chunks smaller than the data, not aligned with the batches, so every fit and
    # predict path crosses chunk boundaries.
    monkeypatch.setattr(backbone_protocol, "ENCODE_CHUNK_ROWS", 11)
    streamed = fit_and_predict(X, y, params)
    monkeypatch.setattr(RowInputs, "from_table", staticmethod(eager_from_table))
    eager = fit_and_predict(X, y, params)
    np.testing.assert_array_equal(streamed[0], eager[0])
    np.testing.assert_array_equal(streamed[1], eager[1])
    assert streamed[2] == eager[2]
