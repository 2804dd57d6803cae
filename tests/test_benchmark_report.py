"""benchmarks/_report.py routes headline sections to the benchmarks page, others to the log."""

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def report(tmp_path, monkeypatch):
    """The module, writing to copies of the two pages in tmp_path."""
    spec = importlib.util.spec_from_file_location("_report", ROOT / "benchmarks" / "_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for page in ("benchmarks.md", "experiment_log.md"):
        shutil.copy(ROOT / "docs" / page, tmp_path / page)
    monkeypatch.setattr(module, "REPORT", tmp_path / "benchmarks.md")
    monkeypatch.setattr(module, "LOG", tmp_path / "experiment_log.md")
    return module


def test_every_headline_section_on_the_page_is_one_of_the_set(report):
    page = report.REPORT.read_text()
    log = report.LOG.read_text()
    for name in report.HEADLINE_SECTIONS:
        # a headline section is never kept in the log, where the scripts would not update it
        assert f"<!-- {name}:start -->" not in log
    assert "<!-- Cost vs rows:start -->" in page


def test_a_headline_section_is_replaced_on_the_benchmarks_page(report):
    log_before = report.LOG.read_text()
    report.write_section("Cost vs rows", "python scaling_rows.py", "new table")
    page = report.REPORT.read_text()
    assert page.count("<!-- Cost vs rows:start -->") == 1
    assert "`python benchmarks/scaling_rows.py` on" in page
    assert "new table\n<!-- Cost vs rows:end -->" in page
    assert report.LOG.read_text() == log_before


def test_any_other_section_goes_to_the_experiment_log(report):
    page_before = report.REPORT.read_text()
    report.write_section("Stratified draws (diabetes)", "python draw_stratification.py", "x")
    report.write_section("A new screen", "python rl_sweep.py", "y")
    log = report.LOG.read_text()
    assert log.count("<!-- Stratified draws (diabetes):start -->") == 1
    assert "x\n<!-- Stratified draws (diabetes):end -->" in log
    assert "\n<!-- A new screen:start -->\n## A new screen\n" in log
    assert log.endswith("y\n<!-- A new screen:end -->\n")
    assert report.REPORT.read_text() == page_before


def test_a_missing_page_starts_with_its_own_header(report, tmp_path):
    report.LOG = tmp_path / "new" / "experiment_log.md"
    report.write_section("A new screen", "python rl_sweep.py", "y")
    assert report.LOG.read_text().startswith("# Experiment log\n")


def test_appended_records_are_read_back_the_newest_per_key(report, tmp_path):
    path = tmp_path / "results" / "runs.jsonl"  # the folder does not exist yet
    report.append_records(path, [{"seed": 0, "r2": 0.1}, {"seed": 1, "r2": 0.2}])
    report.append_records(path, [{"seed": 0, "r2": 0.3}])
    records = sorted(report.newest_records(path, ("seed",)), key=lambda r: r["seed"])
    assert records == [{"seed": 0, "r2": 0.3}, {"seed": 1, "r2": 0.2}]


def test_a_table_rebuilt_from_records_says_whose_threads_it_holds(report, monkeypatch):
    monkeypatch.setattr(report.torch, "get_num_threads", lambda: 7)
    report.write_section("Cost vs rows", "python scaling_rows.py", "measured here")
    assert ", 7 threads, torch" in report.REPORT.read_text()
    report.write_section("Cost vs rows", "python scaling_rows.py --report", "t", "threads: below")
    page = report.REPORT.read_text()
    assert ", threads: below, torch" in page and "7 threads" not in page


def test_the_command_line_is_quoted_as_a_shell_would_read_it(report, monkeypatch):
    argv = ["benchmarks/fit_speed.py", "--section", "Screening: a name with spaces"]
    monkeypatch.setattr(report.sys, "argv", argv)
    assert report.command_line() == (
        "python benchmarks/fit_speed.py --section 'Screening: a name with spaces'"
    )
