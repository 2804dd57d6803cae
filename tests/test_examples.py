"""Smoke tests: every example runs end to end on the tiny model with a tiny budget."""

import math
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, argv: list[str]):
    """Load an example as a module (without its __main__ block) and call its main."""
    return runpy.run_path(str(EXAMPLES / name))["main"](argv)


@pytest.fixture
def tiny_budget(tiny_model_dir, tmp_path, monkeypatch):
    # Examples may write next to the working directory; keep that inside tmp_path.
    monkeypatch.chdir(tmp_path)
    return ["--model", tiny_model_dir, "--train-rows", "24", "--sft-epochs", "1"]


def test_quickstart(tiny_budget):
    results = run_example(
        "quickstart.py", [*tiny_budget, "--n-samples", "2", "--rl-algorithm", "none"]
    )
    assert set(results) == {"LLMRegressor", "RandomForestRegressor"}
    assert all(math.isfinite(r["rmse"]) and math.isfinite(r["r2"]) for r in results.values())


def test_quickstart_with_rl(tiny_budget):
    results = run_example(
        "quickstart.py", [*tiny_budget, "--n-samples", "2", "--rl-algorithm", "remax"]
    )
    assert math.isfinite(results["LLMRegressor"]["r2"])


def test_grid_search(tiny_budget):
    search = run_example("grid_search.py", [*tiny_budget, "--n-samples", "2", "--cv", "2"])
    # 2 codecs x 2 RL settings x 2 row formats, searched on a Pipeline fed a DataFrame.
    assert len(search.cv_results_["params"]) == 8
    assert {"llm__number_format", "llm__rl_algorithm", "llm__row_format"} <= set(
        search.best_params_
    )
    assert "bmi class" in search.best_estimator_[-1].feature_names_in_


def test_compare_writes_figures(tiny_budget, tmp_path):
    paths = run_example(
        "compare.py", [*tiny_budget, "--n-samples", "2", "--out-dir", str(tmp_path / "out")]
    )
    assert set(paths) == {"scores", "parity"}
    for path in paths.values():
        assert path.parent == tmp_path / "out"
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_free_text(tiny_budget):
    results = run_example("free_text.py", [*tiny_budget, "--n-samples", "2", "--test-rows", "16"])
    assert len(results) == 3
    assert all(math.isfinite(r["r2"]) for r in results.values())
