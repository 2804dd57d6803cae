import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmregressor.codecs import NormalizedCodec, ScientificCodec, make_codec


def fitted(codec, y):
    return codec.fit(np.asarray(y, dtype=float))


@pytest.mark.parametrize(
    ("base", "digits", "value", "symbols"),
    [
        (10, 3, 0.0, "000"),
        (10, 3, 10.0, "999"),
        (10, 3, 5.0, "500"),  # round(0.5 * 999) = 500 (banker's rounding of 499.5)
        (10, 3, 2.5, "250"),
        (2, 4, 0.0, "0000"),
        (2, 4, 10.0, "1111"),
        (2, 4, 4.0, "0110"),  # 0.4 * 15 = 6
        (4, 2, 10.0, "33"),
        (4, 2, 3.333333333, "11"),  # 1/3 * 15 = 5 = "11" in base 4
    ],
)
def test_normalized_table(base, digits, value, symbols):
    codec = fitted(NormalizedCodec(base, digits), [0.0, 10.0, 3.0])
    tokens = codec.encode([value])
    assert codec.to_symbols(tokens[0]) == symbols
    step = 10.0 / (base**digits - 1)
    assert abs(codec.decode(tokens)[0] - value) <= step / 2 + 1e-12


def test_normalized_clips_outside_training_range():
    codec = fitted(NormalizedCodec(10, 2), [0.0, 1.0])
    np.testing.assert_allclose(codec.decode(codec.encode([-5.0, 7.0])), [0.0, 1.0])


@pytest.mark.parametrize(
    ("value", "symbols"),
    [
        (0.0, "++0000"),
        (1.0, "++0100"),
        (-1.0, "-+0100"),
        (123.4, "++2123"),
        (0.01234, "+-2123"),
        (-0.5, "--1500"),
        (9.996, "++1100"),  # rounding carries into the next decade
        (1e12, "++9999"),  # saturates at the largest representable magnitude
        (1e-12, "++0000"),  # underflows to zero
    ],
)
def test_scientific_table(value, symbols):
    # mean 0 / std 1 targets make z == y, so the table reads in raw units.
    codec = ScientificCodec(exponent_digits=1, mantissa_digits=3)
    codec.mean_, codec.scale_, codec.constant_ = 0.0, 1.0, False
    tokens = codec.encode([value])
    assert codec.to_symbols(tokens[0]) == symbols
    if symbols not in ("++9999", "++0000") or value == 0.0:
        assert codec.decode(tokens)[0] == pytest.approx(value, rel=5e-3)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=30),
    st.integers(2, 10),
    st.integers(1, 6),
)
def test_normalized_round_trip_property(ys, base, digits):
    y = np.asarray(ys)
    codec = fitted(NormalizedCodec(base, digits), y)
    tokens = codec.encode(y)
    assert tokens.shape == (len(y), digits)
    assert ((tokens >= 0) & (tokens < base)).all()
    decoded = codec.decode(tokens)
    half_step = np.ptp(y) / (2 * (base**digits - 1))
    assert np.all(np.abs(decoded - y) <= half_step * (1 + 1e-9) + 1e-9 * np.abs(y).max())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=30),
    st.integers(1, 2),
    st.integers(2, 6),
)
def test_scientific_round_trip_property(ys, exponent_digits, mantissa_digits):
    y = np.asarray(ys)
    codec = fitted(ScientificCodec(exponent_digits, mantissa_digits), y)
    tokens = codec.encode(y)
    mask = codec.allowed_mask()
    assert mask[np.arange(codec.length), tokens].all()  # every position obeys the grammar
    z = codec.standardize(y)
    z_hat = codec.standardize(codec.decode(tokens))
    smallest = 10.0 ** -(10**exponent_digits - 1)
    representable = np.abs(z) >= smallest
    rel = 0.5 * 10.0 ** -(mantissa_digits - 1)
    assert np.all(np.abs(z_hat - z)[representable] <= rel * np.abs(z)[representable] * (1 + 1e-9))
    assert np.all(np.abs(z_hat)[~representable] <= smallest)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_grammatical_sequence_decodes_to_a_finite_number(data):
    codec = data.draw(st.sampled_from([NormalizedCodec(3, 4), ScientificCodec(2, 3)]))
    fitted(codec, [-3.0, 5.0, 100.0])
    mask = codec.allowed_mask()
    tokens = [data.draw(st.sampled_from(np.flatnonzero(row).tolist())) for row in mask]
    assert np.isfinite(codec.decode(np.array([tokens]))).all()


@pytest.mark.parametrize("codec", [NormalizedCodec(), ScientificCodec()])
def test_huge_targets_round_trip(codec):
    # Squaring them (for the std) overflows float64; the codec must not.
    y = np.array([1e200, 3e200, 2e200, -5e307, 1e308])
    fitted(codec, y)
    assert np.isfinite([codec.mean_, codec.scale_]).all()
    decoded = codec.decode(codec.encode(y))
    assert np.isfinite(decoded).all()
    assert decoded[-2:] == pytest.approx(y[-2:], rel=1e-2)


def test_constant_target_decodes_to_the_constant():
    for codec in (NormalizedCodec(), ScientificCodec()):
        fitted(codec, [4.2, 4.2, 4.2])
        assert codec.constant_
        assert codec.decode(codec.encode([4.2, 9.0])).tolist() == [4.2, 4.2]


def test_grammar_masks():
    assert NormalizedCodec(4, 3).allowed_mask().tolist() == [[True] * 4] * 3
    mask = ScientificCodec(1, 2).allowed_mask()
    signs = [False] * 10 + [True, True]
    digits = [True] * 10 + [False, False]
    assert mask.tolist() == [signs, signs, digits, digits, digits]


def test_make_codec_rejects_unknown_format():
    with pytest.raises(ValueError, match="number_format"):
        make_codec("binary")


def test_decode_checks_length():
    codec = fitted(NormalizedCodec(10, 3), [0.0, 1.0])
    with pytest.raises(ValueError, match="3 symbols"):
        codec.decode(np.zeros((1, 4), dtype=int))
