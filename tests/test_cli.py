import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmregressor import LLMRegressor
from llmregressor.cli import _cli_params, _converter, _describe_calibration, main
from llmregressor.persistence import FORMAT_VERSION, MANIFEST_FILE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def csv_file(houses, tmp_path_factory):
    frame, y = houses(20, missing=False)
    frame["price"] = y
    path = tmp_path_factory.mktemp("data") / "houses.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model_dir(csv_file, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    # These values also exercise the parsing of each kind: float from an int literal,
    # a comma list, None and a bool.
    code = main(
        [
            "fit",
            str(csv_file),
            "--target",
            "price",
            "--out",
            str(out),
            "--model",
            tiny_model_dir,
            "--sft_epochs",
            "1",
            "--batch_size",
            "8",
            "--n_samples",
            "2",
            "--random_state",
            "0",
            "--lora_alpha",
            "8",
            "--lora_target_modules",
            "q_proj,v_proj",
            "--n_iter_no_change",
            "none",
            "--early_stopping=false",
            "--rl_algorithm",
            "remax",
        ]
    )
    assert code == 0
    return out


def run_error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    return err


def test_fit_saves_a_model_with_typed_params(model_dir, csv_file, tiny_model_dir):
    reg = LLMRegressor.load(model_dir)
    params = reg.get_params()
    assert params["lora_alpha"] == 8.0 and isinstance(params["lora_alpha"], float)
    assert params["lora_target_modules"] == ["q_proj", "v_proj"]
    assert params["n_iter_no_change"] is None and params["early_stopping"] is False
    assert params["random_state"] == 0 and params["verbose"] == 1
    assert list(reg.feature_names_in_) == ["size", "color", "note"]
    assert reg.n_samples_fit_ == 20


def test_predict_writes_predictions_and_intervals(model_dir, csv_file, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert main(["predict", str(model_dir), str(csv_file), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    preds = pd.read_csv(out)
    frame = pd.read_csv(csv_file)
    expected = LLMRegressor.load(model_dir).predict(frame.drop(columns="price"))
    assert list(preds.columns) == ["prediction"]
    np.testing.assert_allclose(preds["prediction"], expected, rtol=1e-12)

    assert main(["predict", str(model_dir), str(csv_file), "--interval", "0.8"]) == 0
    printed = capsys.readouterr()
    to_stdout = pd.read_csv(pd.io.common.StringIO(printed.out))
    assert list(to_stdout.columns) == ["prediction", "lower", "upper"] and len(to_stdout) == 20
    assert (to_stdout["lower"] <= to_stdout["upper"]).all()


@pytest.fixture(scope="module")
def calibrated(houses, tiny_model_dir, tmp_path_factory):
    """A model folder fitted with calibration (all 60 rows, 24 held out), and its data as CSV."""
    frame, y = houses(60, missing=False)
    reg = LLMRegressor(
        model=tiny_model_dir,
        sft_epochs=1,
        n_samples=2,
        validation_fraction=0.4,
        # The whole decoded residual: raw intervals of some width, and by default every
        # row calibrating, the 36 trained on decoded again.
        residual_scale=1.0,
        random_state=0,
    ).fit(frame, y)
    folder = tmp_path_factory.mktemp("calibrated")
    reg.save(folder / "model")
    frame["price"] = y
    frame.to_csv(folder / "houses.csv", index=False)
    return reg, folder / "model", folder / "houses.csv"


def test_intervals_are_calibrated_unless_raw_ones_are_asked_for(calibrated, tmp_path, capsys):
    reg, model, data = calibrated
    X = pd.read_csv(data).drop(columns="price")
    for flags, expected in (
        ([], reg.predict_interval(X, 0.8)),
        (["--raw-interval"], reg.predict_interval(X, 0.8, calibrated=False)),
    ):
        out = tmp_path / "preds.csv"
        assert (
            main(["predict", str(model), str(data), "--out", str(out), "--interval", "0.8", *flags])
            == 0
        )
        np.testing.assert_allclose(pd.read_csv(out)[["lower", "upper"]], expected, rtol=1e-12)
    assert "needs --interval" in run_error(
        ["predict", str(model), str(data), "--raw-interval"], capsys
    )
    assert main(["info", str(model)]) == 0
    calibration = "calibration:     60 training rows (held-out and decoded in-sample), n_samples=2"
    assert calibration in capsys.readouterr().out


def test_info_describes_the_model(model_dir, tiny_model_dir, capsys):
    assert main(["info", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert f"format version {FORMAT_VERSION}" in out
    assert f"base model:      {tiny_model_dir} (fingerprint " in out
    assert "training rows:   20" in out
    assert "calibration:     none (raw intervals)" in out  # 10% of 20 rows are too few
    assert "features:        3 (size, color, note)" in out
    assert "fit time:" in out and "1 SFT epochs, 2 RL epochs" in out
    assert "  lora_target_modules = ['q_proj', 'v_proj']" in out


def test_fit_with_an_anchor_saves_it_and_predict_reads_it(
    csv_file, tiny_model_dir, tmp_path, capsys
):
    model = tmp_path / "model"
    fit = ["fit", str(csv_file), "--target", "price", "--out", str(model), "--model"]
    fit += [tiny_model_dir, "--sft_epochs", "1", "--rl_algorithm", "none", "--anchor", "ridge"]
    assert main(fit) == 0
    reg = LLMRegressor.load(model)
    assert reg.get_params()["anchor"] == "ridge" and reg.serializer_.estimate
    out = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(csv_file), "--out", str(out)]) == 0
    expected = reg.predict(pd.read_csv(csv_file).drop(columns="price"))
    np.testing.assert_allclose(pd.read_csv(out)["prediction"], expected, rtol=1e-12)
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    assert "  anchor = 'ridge'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "cost"], "has no column 'cost'; its columns are: size, color, note, price"),
        (["--target", "color"], "not numeric"),
        (["--target", "price", "--layers", "3"], "unknown parameter(s) --layers"),
        (["--target", "price", "--lora_r", "abc"], "argument --lora_r: takes INT, got 'abc'"),
        (["--target", "price", "--rl_algorithm", "ppo"], "rl_algorithm must be one of"),
        (["--target", "price", "--mlp_hidden", "0,5"], "mlp_hidden must be a tuple of positive"),
        (["--target", "price", "--model", "mlp-decoder"], "cannot be saved to a model folder"),
        (["--target", "price", "--anchor", "lasso"], "anchor must be one of 'ridge'"),
    ],
)
def test_fit_errors(csv_file, tmp_path, capsys, tiny_model_dir, argv, message):
    out = tmp_path / "m"
    err = run_error(
        ["fit", str(csv_file), "--out", str(out), "--model", tiny_model_dir, *argv], capsys
    )
    assert message in err
    assert not out.exists()


def test_unknown_parameter_lists_the_valid_ones(csv_file, tmp_path, capsys):
    err = run_error(["fit", str(csv_file), "--target", "price", "--out", "m", "--lr", "1"], capsys)
    assert "--sft_lr" in err and "--rl_algorithm" in err and "--verbose" in err


def test_unreadable_files(model_dir, tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    err = run_error(["fit", str(missing), "--target", "y", "--out", "m"], capsys)
    assert f"cannot read {missing} as CSV" in err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x00\xff")
    assert "cannot read" in run_error(["predict", str(model_dir), str(binary)], capsys)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "cannot read" in run_error(["predict", str(model_dir), str(empty)], capsys)


def test_predict_needs_the_feature_columns(model_dir, tmp_path, capsys):
    data = tmp_path / "partial.csv"
    pd.DataFrame({"size": [1.0], "note": ["x"]}).to_csv(data, index=False)
    assert "lacks the feature columns ['color']" in run_error(
        ["predict", str(model_dir), str(data)], capsys
    )


def test_model_folder_of_another_format_version(model_dir, csv_file, tmp_path, capsys):
    newer = tmp_path / "newer"
    newer.mkdir()
    for file in model_dir.iterdir():
        (newer / file.name).write_bytes(file.read_bytes())
    manifest = json.loads((newer / MANIFEST_FILE).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (newer / MANIFEST_FILE).write_text(json.dumps(manifest))
    for argv in (["info", str(newer)], ["predict", str(newer), str(csv_file)]):
        assert "Upgrade llmregressor" in run_error(argv, capsys)
    assert "is not a model folder" in run_error(["info", str(tmp_path)], capsys)
    del manifest["fitted"]
    manifest["format_version"] = FORMAT_VERSION
    (newer / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert "damaged manifest" in run_error(["info", str(newer)], capsys)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("lora_r", "8", 8),
        ("lora_alpha", "16", 16.0),
        ("sft_lr", "1e-3", 1e-3),
        ("early_stopping", "auto", "auto"),
        ("early_stopping", "True", True),
        ("rl_algorithm", "None", None),
        ("rl_algorithm", "grpo", "grpo"),
        ("n_iter_no_change", "null", None),
        ("random_state", "42", 42),
        ("model", "none", "none"),  # a str-only parameter keeps the word
        ("lora_target_modules", "all-linear", "all-linear"),
        ("lora_target_modules", "q_proj, v_proj", ["q_proj", "v_proj"]),
        ("prompt_template", "{features} -> 3,4", "{features} -> 3,4"),
        ("mlp_hidden", "512", [512]),  # no str alternative: one item is a list of one
        ("mlp_hidden", "512, 256", [512, 256]),
        ("anchor", "ridge", "ridge"),
        ("anchor", "none", None),
    ],
)
def test_parameter_values_parse_into_the_estimator_types(name, text, expected):
    kinds, _ = _cli_params()[name]
    value = _converter(name, kinds)(text)
    assert value == expected and type(value) is type(expected)


def test_every_parameter_but_callbacks_is_settable():
    # Callbacks are objects, which text cannot give; reward takes its names from text.
    names = set(LLMRegressor().get_params()) - {"callbacks"}
    assert set(_cli_params()) == names
    assert _cli_params()["reward"][0] == (str,)


def test_python_dash_m(tmp_path):
    # One start of the interpreter (seconds of imports): an error shows both the wiring of
    # __main__ and the exit code reaching the shell.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "llmregressor", "info", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "is not a model folder" in result.stderr and "Traceback" not in result.stderr


def test_info_names_the_rows_that_calibrate():
    calibration = {"targets": [0.5] * 30, "n_samples": 16}
    held_out = {"calibration_": calibration, "residual_scale_": 0.25}
    every_row = {"calibration_": calibration, "residual_scale_": 0.0}
    conformal = {"interval_calibration": "conformal"}
    assert _describe_calibration(held_out, conformal) == "30 held-out rows, n_samples=16"
    assert _describe_calibration(every_row, conformal) == "30 out-of-fold rows, n_samples=16"
    kept = {"calibration_": {**calibration, "center": "mean"}, "residual_scale_": 0.25}
    assert _describe_calibration(kept, {"interval_calibration": "every_row"}) == (
        "30 training rows (held-out and out-of-fold), n_samples=16"
    )
    cqr = {"interval_calibration": "every_row_cqr"}
    assert _describe_calibration({**held_out, "residual_anchor_": True}, cqr) == (
        "30 training rows (held-out and decoded in-sample), n_samples=16"
    )
    # Without a residual anchor the option calibrates on the held-out rows.
    assert _describe_calibration(held_out, cqr) == "30 held-out rows, n_samples=16"
    assert _describe_calibration(every_row, cqr) == "30 out-of-fold rows, n_samples=16"
