"""Stratified (Latin-hypercube) draws against independent ones for the mean of N draws.

    python benchmarks/draw_stratification.py [--dataset diabetes] [--seeds 0 1 2]
        [--split train_test_split] [--reps 3] [--n-samples 16] [--rl]

Per seed: one default SFT-only fit (and, with ``--rl``, the default ReMax phase continued
from it, as ``rl_accuracy.py`` does), then ``--reps`` predictions of the held-out rows
with each sampler, each repetition under another sampling seed. The fits are the same
for both samplers; only the uniforms behind the draws differ, so the spread over the
repetitions is the prediction's own sampling noise. "independent" draws i.i.d. uniforms
(``Sampler(stratified=False)`` of the engine), the sampler before 2026-11-30.
"""

import argparse

import numpy as np
from rl_accuracy import continue_with_rl
from sklearn.metrics import r2_score

import public_datasets
from _report import command_line, markdown_table, write_section
from llmregressor import LLMRegressor
from llmregressor.backbone_protocol import RowInputs
from llmregressor.engine import Sampler


def sampler_scores(
    reg: LLMRegressor, X, y: np.ndarray, reps: int, label: str
) -> dict[str, list[float]]:
    """R^2 of the mean of draws, per sampler and sampling seed (the fit's seed + rep)."""
    policy = reg.policy_.policy
    inputs = RowInputs.from_table(X.to_numpy(dtype=object), policy.backbone.encode_rows)
    scores = {"stratified": [], "independent": []}
    for rep in range(reps):
        for sampler in scores:
            draws = Sampler(
                reg.codec_,
                reg.seed_ + rep,
                reg.batch_size,
                n_samples=reg.n_samples,
                stratified=sampler == "stratified",
            )
            scores[sampler].append(r2_score(y, draws.predict(policy, inputs)))
            print(label, rep, sampler, f"{scores[sampler][-1]:.3f}", flush=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="diabetes", choices=public_datasets.NAMES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split", default="train_test_split", choices=public_datasets.SPLITS)
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n-samples", type=int, default=16)
    parser.add_argument("--rl", action="store_true", help="also score the default ReMax phase")
    args = parser.parse_args()
    X, y = public_datasets.load(args.dataset)
    rows = []
    for seed in args.seeds:
        X_tr, X_te, y_tr, y_te = public_datasets.split(
            X, y, seed, args.train_rows, 1000, args.split
        )
        sft = LLMRegressor(rl_algorithm=None, random_state=seed, n_samples=args.n_samples)
        sft.fit(X_tr, y_tr)
        fitted = {"SFT only": sft}
        if args.rl:
            fitted["SFT + ReMax"] = continue_with_rl(sft, "remax", X_tr, y_tr)
        for label, reg in fitted.items():
            scores = sampler_scores(reg, X_te, y_te, args.reps, f"seed {seed}, {label}:")
            greedy = r2_score(y_te, reg.set_params(predict_mode="greedy").predict(X_te))
            reg.set_params(predict_mode="mean")
            for sampler, values in scores.items():
                rows.append(
                    [
                        seed,
                        label,
                        sampler,
                        f"{np.mean(values):.3f} ± {np.std(values):.3f}",
                        ", ".join(f"{v:.3f}" for v in values),
                        greedy,
                    ]
                )
    body = (
        f"{args.dataset}, {args.split}, {args.train_rows} training rows, {len(X_te)} test "
        f"rows; default parameters. R^2 of the mean of {args.n_samples} draws over "
        f"{args.reps} sampling seeds (mean ± std, then each), on the same fit for both "
        "samplers; 'stratified' is the estimator's sampler from 2026-11-30 (a Latin "
        "hypercube over each row's uniforms), 'independent' the i.i.d. one before it. "
        "Greedy: one greedy decode, for scale.\n\n"
        + markdown_table(
            ["seed", "fit", "draws", f"R^2 mean of {args.n_samples}", "each", "R^2 greedy"],
            rows,
        )
    )
    split = public_datasets.split_label(args.split)
    section = f"Stratified draws ({args.dataset}" + (f", {split})" if split else ")")
    write_section(section, command_line(), body)


if __name__ == "__main__":
    main()
