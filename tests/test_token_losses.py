"""Token-level SFT losses against values computed by hand on one tiny example.

Symbols ``0 1 2 + -``; a 3-position grammar: a sign, then two digits (like the scientific
codec). The policy's masked distributions and the true number ``+02``:

    position 0 (sign):  p(+) = 0.75, p(-) = 0.25         true "+"
    position 1 (digit): p(0, 1, 2) = (0.5, 0.25, 0.25)   true "0"
    position 2 (digit): p(0, 1, 2) = (0.2, 0.3, 0.5)     true "2"
"""

import math

import numpy as np
import pytest
import torch

from llmregressor.token_losses import (
    cross_entropy,
    digit_positions,
    dist_kl,
    make_sft_loss,
    ntl_mse,
    ntl_was,
    symbol_values,
)

SYMBOLS = ("0", "1", "2", "+", "-")
ALLOWED = np.array(
    [
        [False, False, False, True, True],
        [True, True, True, False, False],
        [True, True, True, False, False],
    ]
)
NONE = 0.0  # probability of a symbol the grammar forbids
PROBS = [
    [NONE, NONE, NONE, 0.75, 0.25],
    [0.5, 0.25, 0.25, NONE, NONE],
    [0.2, 0.3, 0.5, NONE, NONE],
]
TARGETS = [3, 0, 2]

# Cross-entropy, averaged over the three positions.
CE = -(math.log(0.75) + math.log(0.5) + math.log(0.5)) / 3  # 0.557992
# NTL-MSE at the digit positions: expected digit 0.25*1 + 0.25*2 = 0.75 (true 0) and
# 0.3*1 + 0.5*2 = 1.3 (true 2).
NTL_MSE = ((0.75 - 0) ** 2 + (1.3 - 2) ** 2) / 2  # (0.5625 + 0.49) / 2 = 0.52625
# NTL-WAS: expected |digit - true|: 0.25*1 + 0.25*2 = 0.75 and 0.2*2 + 0.3*1 + 0.5*0 = 0.7.
NTL_WAS = (0.75 + 0.7) / 2  # 0.725


def soft_target(distances):
    weights = [math.exp(-(d**2)) for d in distances]
    return [w / sum(weights) for w in weights]


def kl(q, p):
    return sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True))


# DIST: q ∝ exp(-(v - true)^2) over the digits 0, 1, 2 = (0.721399, 0.265388, 0.013213)
# for true 0 and the reverse for true 2; KL(q || p) = 0.241456 and 0.196019.
DIST = (
    kl(soft_target([0, 1, 2]), [0.5, 0.25, 0.25]) + kl(soft_target([2, 1, 0]), [0.2, 0.3, 0.5])
) / 2  # 0.218738


def table_and_targets():
    table = torch.log(torch.tensor(PROBS, dtype=torch.float64))  # log 0 = -inf: forbidden
    return table, torch.tensor(TARGETS)


def test_numbers_of_the_example():
    assert CE == pytest.approx(0.557992, abs=1e-6)
    assert DIST == pytest.approx(0.218738, abs=1e-6)


def test_pure_functions_match_hand_computed_values():
    table, targets = table_and_targets()
    values = torch.tensor(symbol_values(SYMBOLS), dtype=torch.float64)
    digits = torch.tensor([1, 2])
    assert cross_entropy(table, targets).item() == pytest.approx(CE)
    assert ntl_mse(table[digits], targets[digits], values).item() == pytest.approx(NTL_MSE)
    assert ntl_was(table[digits], targets[digits], values).item() == pytest.approx(NTL_WAS)
    assert dist_kl(table[digits], targets[digits], values).item() == pytest.approx(DIST)


def test_codec_layout():
    np.testing.assert_array_equal(symbol_values(SYMBOLS), [0, 1, 2, 0, 0])
    np.testing.assert_array_equal(digit_positions(SYMBOLS, ALLOWED), [False, True, True])


@pytest.mark.parametrize(
    ("name", "weight", "term"),
    [
        ("ce", None, None),
        ("ntl-mse", None, NTL_MSE),
        ("ntl-was", None, NTL_WAS),
        ("dist", None, DIST),
        ("ntl-mse", 2.0, NTL_MSE),
    ],
)
def test_sft_loss_adds_the_weighted_term_at_digit_positions_only(name, weight, term):
    table, targets = table_and_targets()
    loss_fn = make_sft_loss(name, weight, SYMBOLS, ALLOWED)
    # The SFT phase passes (batch, columns, length, n_symbols).
    loss, got_term = loss_fn(table[None, None], targets[None, None])
    default = {"ce": 0.0, "ntl-mse": 0.5, "ntl-was": 0.5, "dist": 0.1}[name]
    expected_weight = default if weight is None else weight
    assert loss_fn.weight == expected_weight
    if term is None:
        assert got_term is None
        assert loss.item() == pytest.approx(CE)
    else:
        assert got_term.item() == pytest.approx(term)
        assert loss.item() == pytest.approx(CE + expected_weight * term)


@pytest.mark.parametrize("name", ["ntl-mse", "ntl-was", "dist"])
def test_gradients_are_finite_under_the_grammar_mask(name):
    logits = torch.randn(4, 1, 3, 5, requires_grad=True)
    table = torch.log_softmax(logits.masked_fill(~torch.tensor(ALLOWED), -torch.inf), -1)
    targets = torch.tensor(TARGETS).expand(4, 1, 3)
    loss, _ = make_sft_loss(name, None, SYMBOLS, ALLOWED)(table, targets)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="sft_loss must be one of"):
        make_sft_loss("huber", None, SYMBOLS, ALLOWED)
