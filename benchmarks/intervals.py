"""Coverage of calibrated and raw predictive intervals, next to conformalized classic models.

    python benchmarks/intervals.py [--datasets diabetes abalone] [--seeds 0 1 2]
                                   [--rows 256 1000] [--test-rows 1000] [--min-test-rows 100]
                                   [--model PATH] [--config K=V,K=V] [--results FILE]
                                   [--report] [--fresh] [--print-only]

For each dataset, seed and training size (a size runs where the dataset keeps at least
``--min-test-rows`` rows to test on: 1000 training rows only on abalone), fits the
default ``LLMRegressor(random_state=seed)`` (or, with ``--config``, the default with
``fit_speed.py``'s overrides, such as ``anchor="ridge",rl_algorithm=null``, the table
naming them) and scores its 90% and 80% intervals on the
test rows: the calibrated ones (``predict_interval``: CQR on the rows the fit held out
and, with the default residual anchor and ``interval_calibration="every_row_cqr"``, on
every training row, by its out-of-fold residual where the correction is scaled to 0 and
by its own decoded draws where it is kept) and the raw ones (``calibrated=False``):
coverage (share of targets inside), mean width, and mean pinball loss of the two bounds at
their levels ((1 - c) / 2 and (1 + c) / 2). Beside it, on the same split, trained on the
same rows and calibrated on the same held-out rows (``llmregressor.engine.calibration_rows``
with the fit's seed; not like for like where the LM calibrates on every row, as the 'cal
rows' column shows):

- Ridge with split-conformal intervals (absolute residuals; its "raw" interval is the point);
- quantile HistGradientBoosting: one model per bound (``loss="quantile"``) and CQR, raw
  being its uncalibrated quantile pair.

The LM's test rows are sampled once (``sample``, the draws ``predict_interval`` takes);
both interval kinds are computed from those draws and the fitted ``calibration_`` with
:mod:`llmregressor.conformal`. ``predict_interval`` on the first 5 test rows is checked
against the same computation over those rows' own draws (equal to rounding), and how far its
bounds lie from those computed among all test rows (bfloat16 draws depend on the batch) is
recorded as ``batch_shift_90`` and ``batch_shift_80``, in standard deviations of the test
targets.

A default fit takes minutes on a 2-core CPU, so every finished (dataset, seed, rows)
appends its records to ``benchmarks/results/intervals.jsonl`` (``--results`` elsewhere),
and the table is built from the newest record per (dataset, seed, rows, model) of the
same base model: runs split across sessions add up. ``--fresh`` starts the file anew,
``--report`` fits nothing and rebuilds the table, ``--print-only`` prints the table
instead of writing the docs section. ``--model`` fits another base model (a folder),
for instance a tiny one to try the script.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

import public_datasets
from _report import append_records, command_line, markdown_table, newest_records, write_section
from fit_speed import anchored, parse_config
from llmregressor import LLMRegressor
from llmregressor.anchor import cross_fit, make_anchor, residual_slope
from llmregressor.conformal import (
    central_levels,
    conformal_margin,
    conformalize,
    conformity_scores,
)
from llmregressor.engine import calibration_rows, raw_bounds, sample_quantiles, validation_rows
from llmregressor.metrics import interval_coverage

RESULTS = Path(__file__).resolve().parent / "results" / "intervals.jsonl"
COVERAGES = (0.9, 0.8)
DEFAULT_MODEL = "smollm2-135m"
LLM, RIDGE, HGB = "LLMRegressor", "Ridge, split conformal", "quantile HGB, CQR"


# Test rows whose predict_interval is checked against the script's own CQR of their draws.
FEW = 5


def pinball(y: np.ndarray, bounds: np.ndarray, coverage: float) -> float:
    """Mean pinball loss of the lower and upper bound at their quantile levels."""
    losses = []
    for column, level in enumerate(central_levels(coverage)):
        error = y - bounds[:, column]
        with np.errstate(invalid="ignore"):  # an infinite bound costs inf
            losses.append(np.mean(np.maximum(level * error, (level - 1) * error)))
    return float(np.mean(losses))


def interval_scores(y: np.ndarray, bounds: np.ndarray, coverage: float, prefix: str) -> dict:
    key = f"{coverage:g}"
    return {
        f"{prefix}coverage_{key}": interval_coverage(y, bounds),
        f"{prefix}width_{key}": float(np.mean(bounds[:, 1] - bounds[:, 0])),
        f"{prefix}pinball_{key}": pinball(y, bounds, coverage),
    }


def cqr(cal_bounds, y_cal, bounds, coverage) -> np.ndarray:
    margin = conformal_margin(conformity_scores(cal_bounds, y_cal), coverage)
    return conformalize(bounds, margin)


def sampled_intervals(
    cal_draws: np.ndarray,
    cal_targets: np.ndarray,
    draws: np.ndarray,
    coverage: float,
    center: str = "quantiles",
) -> tuple[np.ndarray, np.ndarray]:
    """The raw central interval of ``draws`` at ``coverage``, and its CQR-calibrated one.

    The calibrated one starts from the fitted calibration's ``center``, as
    ``predict_interval`` does (``engine.raw_bounds``): the central quantiles, or the mean as
    both bounds. The calibration rows' draws and targets may be residuals while ``draws`` are
    targets: the conformity scores do not change when a row's draws and target move together.
    """
    levels = central_levels(coverage)
    calibrated = cqr(
        raw_bounds(cal_draws, levels, center),
        cal_targets,
        raw_bounds(draws, levels, center),
        coverage,
    )
    return sample_quantiles(draws, levels), calibrated


def llm_record(
    reg: LLMRegressor,
    X_tr,
    y_tr: np.ndarray,
    is_cal: np.ndarray,
    X_te,
    y_te: np.ndarray,
    arrays: Path | None,
) -> dict:
    draws = reg.sample(X_te)  # the draws predict_interval takes: the fit's n_samples
    record = {"r2": r2_score(y_te, draws.mean(axis=1)), "n_cal": reg.calibration_.n_rows}
    # The first rows sampled on their own, as predict_interval below samples them.
    few_draws = reg.sample(X_te[:FEW])
    calibration = reg.calibration_
    for coverage in COVERAGES:
        raw, calibrated = sampled_intervals(
            calibration.draws, calibration.targets, draws, coverage, calibration.center
        )
        # What predict_interval returns is checked against the same formula over the draws
        # of the same batch of rows: exactly, since sampling the same rows in the same order
        # repeats itself. Against the draws of all test rows the bounds agree only up to how
        # the batch moves a row's draws in bfloat16 (docs/reliability.md): recorded, not checked.
        _, few_calibrated = sampled_intervals(
            calibration.draws, calibration.targets, few_draws, coverage, calibration.center
        )
        np.testing.assert_allclose(
            reg.predict_interval(X_te[:FEW], coverage),
            few_calibrated,
            rtol=0,
            atol=1e-6 * np.std(y_te),
        )
        shift = np.max(np.abs(few_calibrated - calibrated[:FEW])) / np.std(y_te)
        record[f"batch_shift_{round(coverage * 100)}"] = float(shift)
        record.update(interval_scores(y_te, calibrated, coverage, ""))
        record.update(interval_scores(y_te, raw, coverage, "raw_"))
    return {
        **record,
        **anchored(reg, X_te, y_te),
        **one_se_counterfactual(reg, is_cal, X_te, draws, y_te),
        **every_row_counterfactual(reg, X_tr, y_tr, is_cal, draws, y_te, arrays),
    }


def held_out_rows(reg: LLMRegressor, rows: int) -> np.ndarray:
    """The training rows a fit on ``rows`` rows held out to calibrate (a boolean mask)."""
    is_val = validation_rows(rows, reg.early_stopping, reg.validation_fraction, reg.seed_)
    return calibration_rows(is_val, reg.validation_fraction, reg.seed_)


def held_out_calibration(reg: LLMRegressor, is_cal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The held-out rows' calibration draws and targets (those the residual scale is fitted on).

    ``calibration_`` holds them first: alone under ``interval_calibration="conformal"``,
    followed by the rows the model trained on under the default ``"every_row_cqr"`` where
    the correction is kept.
    """
    n_cal = int(is_cal.sum())
    return reg.calibration_.draws[:n_cal], reg.calibration_.targets[:n_cal]


def every_row_counterfactual(
    reg: LLMRegressor, X_tr, y_tr: np.ndarray, is_cal: np.ndarray, draws, y_te, arrays: Path | None
) -> dict:
    """Intervals of a kept correction calibrated on every training row (``every_row_`` fields).

    Where the residual scale is above 0, the fit calibrates on its held-out rows only. The
    candidate scores every training row instead, as a scale of 0 does: a held-out row by
    its distance from the fit's prediction (out-of-fold estimate plus the scaled mean
    decoded residual), any other row by its distance from its out-of-fold estimate (the
    language model trained on it, so its decoded residual is not a fair one), and new
    rows' intervals are the point prediction plus or minus the conformal margin of those
    scores. The out-of-fold estimates are cross-fitted again with the fit's seed, and
    checked against the held-out rows' stored residual targets. Nothing at a scale of 0,
    where the fit already calibrates on every row, or without a fitted scale. With
    ``arrays``, the per-row arrays behind these numbers are saved there (``.npz``), so that
    other calibration rules can be scored on the same fit without fitting it again; they
    include the training rows' own draws (decoded for this, in-sample for the model) and
    full-anchor estimates, for rules that score every row on the draws' shape.
    """
    if not getattr(reg, "residual_anchor_", False) or reg.residual_scale_ == 0:
        return {}
    estimates, _ = cross_fit(
        make_anchor(reg.anchor, reg.model), X_tr, y_tr, reg.anchor_folds, reg.seed_
    )
    residuals = y_tr - estimates
    cal_draws, cal_targets = held_out_calibration(reg, is_cal)
    np.testing.assert_array_equal(residuals[is_cal], cal_targets)
    decoded = np.zeros(len(y_tr))
    decoded[is_cal] = cal_draws.mean(axis=1)  # already scaled by the fit's scale
    cal_bounds = np.column_stack([decoded, decoded])
    point = draws.mean(axis=1)
    record = {"every_row_n_cal": len(y_tr)}
    for coverage in COVERAGES:
        bounds = cqr(cal_bounds, residuals, np.column_stack([point, point]), coverage)
        record.update(interval_scores(y_te, bounds, coverage, "every_row_"))
    if arrays is not None:
        arrays.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            arrays,
            y_te=y_te,
            draws=draws,
            residuals=residuals,
            is_cal=is_cal,
            cal_draws=cal_draws,
            train_draws=reg.sample(X_tr),
            train_estimates=reg.anchor_.predict(X_tr),
        )
    return record


def one_se_counterfactual(
    reg: LLMRegressor, is_cal: np.ndarray, X_te, draws: np.ndarray, y_te: np.ndarray
) -> dict:
    """The scale ``residual_scale="one_se"`` would have chosen for this fit, and what it gives.

    Both rules fit the scale on the same calibration draws, which the fit stores scaled by
    its own scale: dividing by it recovers them, and the test draws' decoded residuals
    likewise (exact: the draws are the anchor's estimate plus the scale times the decoded
    residual). At a scale of 0 the slope was not positive, so one SE less is 0 too. Where
    the one-SE scale is above 0, its intervals are calibrated on the same held-out rows
    (``one_se_`` fields); at 0 they are the anchor's with every training row calibrating,
    which ``anchor_calibration.py`` derives for the same split. Nothing for a fit without
    a fitted scale.
    """
    if not getattr(reg, "residual_anchor_", False) or not isinstance(reg.residual_scale, str):
        return {}
    scale, estimates = reg.residual_scale_, reg.anchor_.predict(X_te)
    if scale == 0:
        return {"scale_one_se": 0.0, "r2_one_se": r2_score(y_te, estimates)}
    cal_draws, cal_targets = held_out_calibration(reg, is_cal)
    one_se = residual_slope(cal_draws.mean(axis=1) / scale, cal_targets, "one_se")
    ratio = one_se / scale
    one_se_draws = estimates[:, None] + ratio * (draws - estimates[:, None])
    record = {"scale_one_se": one_se, "r2_one_se": r2_score(y_te, one_se_draws.mean(axis=1))}
    if one_se > 0:
        for coverage in COVERAGES:
            _, calibrated = sampled_intervals(
                cal_draws * ratio, cal_targets, one_se_draws, coverage
            )
            record.update(interval_scores(y_te, calibrated, coverage, "one_se_"))
    return record


def ridge_record(X_fit, y_fit, X_cal, y_cal, X_te, y_te: np.ndarray) -> dict:
    model = public_datasets.classic(RidgeCV(), X_fit).fit(X_fit, y_fit)
    point, point_cal = model.predict(X_te), model.predict(X_cal)
    record = {"r2": r2_score(y_te, point), "n_cal": len(y_cal)}
    # CQR on a zero-width interval is split conformal with absolute residuals.
    raw, raw_cal = np.column_stack([point, point]), np.column_stack([point_cal, point_cal])
    for coverage in COVERAGES:
        bounds = cqr(raw_cal, y_cal, raw, coverage)
        record.update(interval_scores(y_te, bounds, coverage, ""))
    return record


def hgb_record(X_fit, y_fit, X_cal, y_cal, X_te, y_te: np.ndarray, seed: int) -> dict:
    record = {"n_cal": len(y_cal)}
    for coverage in COVERAGES:
        raw, raw_cal = [], []
        for level in central_levels(coverage):
            hgb = HistGradientBoostingRegressor(loss="quantile", quantile=level, random_state=seed)
            model = public_datasets.classic(hgb, X_fit).fit(X_fit, y_fit)
            raw.append(model.predict(X_te))
            raw_cal.append(model.predict(X_cal))
        # Two separate fits may cross; sorting keeps each row's pair an interval.
        raw, raw_cal = np.sort(np.column_stack(raw), 1), np.sort(np.column_stack(raw_cal), 1)
        record.update(interval_scores(y_te, cqr(raw_cal, y_cal, raw, coverage), coverage, ""))
        record.update(interval_scores(y_te, raw, coverage, "raw_"))
    return record


def run_one(name: str, seed: int, rows: int, args: argparse.Namespace) -> list[dict]:
    """Fit and score the LM and the baselines on one (dataset, seed, rows) split."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(
        X, y, seed, rows, args.test_rows, "train_test_split"
    )
    y_tr = np.asarray(y_tr, dtype=float)
    reg = LLMRegressor(random_state=seed, model=args.model, **parse_config(args.config))
    reg.fit(X_tr, y_tr)
    if reg.calibration_ is None:
        raise RuntimeError(f"the fit on {rows} rows held out too few rows to calibrate")
    label = LLM if args.config == "after" else f"{LLM} {args.config}"
    # The rows the fit held out: they calibrate the baselines too, which train on the rest.
    is_cal = held_out_rows(reg, rows)
    arrays = args.arrays and args.arrays / f"{name}_{seed}_{rows}.npz"
    records = [
        {
            "model": label,
            **llm_record(reg, X_tr, y_tr, is_cal, X_te, y_te, arrays),
            "fit_s": reg.fit_time_,
        }
    ]
    split = X_tr[~is_cal], y_tr[~is_cal], X_tr[is_cal], y_tr[is_cal], X_te, y_te
    # The same rows the fit held out (their targets are stored as residuals when the fit
    # decodes what an anchor leaves, so the count is what compares across modes), or every
    # training row where the residual scale is 0 or where "every_row_cqr" (the default)
    # adds the rows the model trained on to a kept correction's.
    every_row = getattr(reg, "residual_anchor_", False) and (
        reg.residual_scale_ == 0 or reg.interval_calibration == "every_row_cqr"
    )
    assert reg.calibration_.n_rows == (rows if every_row else len(split[3]))
    if not getattr(reg, "residual_anchor_", False):
        np.testing.assert_array_equal(split[3], reg.calibration_.targets)
    for label, score in ((RIDGE, ridge_record), (HGB, hgb_record)):
        start = time.perf_counter()
        extra = (seed,) if score is hgb_record else ()
        record = score(*split, *extra)
        records.append({"model": label, **record, "fit_s": time.perf_counter() - start})
    for record in records:
        record.update(
            dataset=name, seed=seed, train_rows=rows, test_rows=len(y_te), base_model=args.model
        )
        print(json.dumps(record), flush=True)
    return records


def load_records(path: Path, base_model: str) -> list[dict]:
    """Newest record per (dataset, seed, rows, model) fitted on ``base_model``."""
    return newest_records(
        path,
        ("dataset", "seed", "train_rows", "model"),
        lambda r: r["base_model"] == base_model,
    )


def summary_rows(records: list[dict]) -> list[list]:
    """One row per (dataset, rows, model): means over seeds (coverage also ± std)."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["train_rows"], record["model"]), []).append(
            record
        )

    def mean(values: list[dict], key: str, spread: bool = False) -> str:
        if key not in values[0]:
            return "-"
        v = np.array([r[key] for r in values], dtype=float)
        return f"{v.mean():.3f} ± {v.std():.3f}" if spread else f"{v.mean():.3g}"

    rows = []
    for (name, train_rows, model), values in groups.items():
        row = [
            name,
            train_rows,
            model,
            len(values),
            "/".join(map(str, sorted({r["n_cal"] for r in values}))),
        ]
        for coverage in COVERAGES:
            key = f"{coverage:g}"
            row += [
                mean(values, f"coverage_{key}", spread=True),
                mean(values, f"raw_coverage_{key}", spread=True),
                mean(values, f"width_{key}"),
                mean(values, f"pinball_{key}"),
            ]
        rows.append([*row, mean(values, "r2")])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(public_datasets.NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", type=int, default=[256, 1000])
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument(
        "--min-test-rows",
        type=int,
        default=100,
        help="skip a training size that leaves fewer test rows than this",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="LLMRegressor's base model")
    parser.add_argument(
        "--config",
        default="after",
        help="the LM's overrides of the defaults, as fit_speed.py's (k=v,k=v; 'after': none)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSONL of the records")
    parser.add_argument("--fresh", action="store_true", help="discard earlier records")
    parser.add_argument(
        "--report", action="store_true", help="fit nothing: rebuild the table from the records"
    )
    parser.add_argument(
        "--print-only", action="store_true", help="print the table, write no docs section"
    )
    parser.add_argument(
        "--arrays", type=Path, help="save kept corrections' per-row arrays (.npz) here"
    )
    args = parser.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        args.results.unlink(missing_ok=True)
    for name in [] if args.report else args.datasets:
        n_rows = len(public_datasets.load(name)[1])
        for rows in args.rows:
            if n_rows - rows < args.min_test_rows:
                print(f"{name}: {n_rows} rows, too few for {rows} training rows", flush=True)
                continue
            for seed in args.seeds:
                append_records(args.results, run_one(name, seed, rows, args))
    header = ["dataset", "rows", "model", "n", "cal rows"]
    for coverage in COVERAGES:
        pct = f"{coverage:.0%}"
        header += [f"cov {pct}", f"raw cov {pct}", f"width {pct}", f"pinball {pct}"]
    table = markdown_table([*header, "R^2"], summary_rows(load_records(args.results, args.model)))
    if args.print_only:
        print(table)
        return
    body = (
        "Test rows up to 1000 (`train_test_split`, seeds as n says), the default "
        "`LLMRegressor(random_state=seed)`; means over seeds (coverage ± std). 'cov': share "
        "of test targets inside the calibrated interval (split-conformal CQR on the 'cal "
        "rows' the fit held out: 10% of the rows below 1000, early stopping's validation "
        "rows from 1000; every training row where the residual scale is 0, the seeds' counts "
        "joined by '/'); 'raw cov': inside the raw central interval of the 16 draws "
        "(`calibrated=False`). 'width': mean interval width and 'pinball': mean pinball loss "
        "of the two bounds at their levels, both of the calibrated interval, in target units. "
        "The baselines train on the same rows and calibrate on the same held-out rows: "
        "Ridge with split conformal on absolute residuals, and two quantile "
        "HistGradientBoosting models per coverage with CQR ('raw cov': their quantile pair "
        "alone). R^2: of the point prediction (the LM's mean of 16 draws). Raw records: "
        "benchmarks/results/intervals.jsonl.\n\n" + table
    )
    write_section("Calibrated intervals", command_line(), body)


if __name__ == "__main__":
    main()
