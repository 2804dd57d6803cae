import numpy as np
import pandas as pd
import pytest

from llmregressor.serialize import RowSerializer


def test_row_to_prompt():
    s = RowSerializer(["age", "sex", "bmi", "note"])
    row = np.array([52, "male", 27.123456, None], dtype=object)
    assert s.serialize_row(row) == "age:52,sex:male,bmi:27.12,note:unknown,target:"


def test_sentence_row_format_with_its_own_template():
    s = RowSerializer(["age", "sex", "bmi"], row_format="sentence")
    row = np.array([52, "male", 27.123456], dtype=object)
    assert s.template == "{features}\nThe target is "
    assert s.serialize_row(row) == "age is 52, sex is male, bmi is 27.12\nThe target is "


def test_unknown_row_format_is_rejected():
    with pytest.raises(ValueError, match="row_format must be one of"):
        RowSerializer(["x"], row_format="json")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3"),
        (123456.7, "123500"),
        (0.038075906, "0.03808"),
        (-2.5, "-2.5"),
        (np.float32(1.25), "1.25"),
        (np.int64(7), "7"),
        (True, "true"),
        (np.nan, "missing"),
        (pd.NA, "missing"),
        (None, "missing"),
        ("", "missing"),
        ("  red ", "red"),
        (1e20, "1e+20"),
    ],
)
def test_format_value(value, text):
    assert RowSerializer(["x"], missing="missing").format_value(value) == text


def test_template_and_digits():
    s = RowSerializer(["x0", "x1"], template="Row: {features}. y =", significant_digits=2)
    assert s(np.array([[1.234, 5.0]])) == ["Row: x0:1.2,x1:5. y ="]


def test_template_needs_features_field():
    with pytest.raises(ValueError, match="features"):
        RowSerializer(["x"], template="no field")


def test_infinite_values_are_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        RowSerializer(["x"]).format_value(np.inf)


@pytest.mark.parametrize(
    ("params", "prompt"),
    [
        ({}, "age:52,sex:male,estimate:151.2,target:"),
        ({"row_format": "sentence"}, "age is 52, sex is male, estimate is 151.2\nThe target is "),
        (
            {"template": "Guess: {estimate}. {features} -> "},
            "Guess: 151.2. age:52,sex:male -> ",
        ),
    ],
)
def test_the_anchor_estimate_is_the_last_field_or_where_the_template_puts_it(params, prompt):
    s = RowSerializer(["age", "sex"], estimate=True, **params)
    assert s.serialize_row(np.array([52, "male", 151.234], dtype=object)) == prompt


def test_the_estimate_is_written_with_the_significant_digits():
    s = RowSerializer(["x"], significant_digits=2, estimate=True)
    assert s(np.array([[1.0, 0.012345], [2.0, 12345.6]])) == [
        "x:1,estimate:0.012,target:",
        "x:2,estimate:12000,target:",
    ]


def test_a_feature_reading_like_the_estimate_field_is_left_alone():
    s = RowSerializer(["note"], template="{estimate}|{features}|", estimate=True)
    assert s.serialize_row(np.array(["{estimate}", 3.5], dtype=object)) == "3.5|note:{estimate}|"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"template": "{estimate} {features}"}, "only with an anchor"),
        ({"template": "{estimate} {features} {estimate}", "estimate": True}, "at most once"),
        ({"feature_names": ["estimate"], "estimate": True}, "named 'estimate'.*rename"),
    ],
)
def test_estimate_field_errors(params, match):
    with pytest.raises(ValueError, match=match):
        RowSerializer(**{"feature_names": ["x"], **params})
