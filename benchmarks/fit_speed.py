"""Fit and predict time of today's default against the new one, side by side, with accuracy.

    python benchmarks/fit_speed.py [--datasets diabetes] [--seeds 0 1 2]
                                   [--configs before after] [--section NAME]
    python benchmarks/fit_speed.py --configs lora_layers=4 lora_layers=8 --section NAME
    python benchmarks/fit_speed.py --report [--configs ...] [--section NAME]

For each dataset and seed (256 training rows, up to 1000 test rows; diabetes has 186), every
configuration is fitted in this process on the same split and predicts the test rows:
fit seconds, predict seconds, R^2 of the default prediction (mean of 16 draws). A
configuration is ``before`` (the default before 2026-12-02, kept reachable by parameters:
adapters on every layer, ``attn_implementation="sdpa"``, every row trained on),
``after`` (today's defaults), or ``name=value``
overrides of the defaults (``lora_layers=8``; several joined by ``,``).

Beside the seconds, a machine-independent figure measured in the same run: each fit's time
divided by the time of one epoch of plain forward + backward (to the input embeddings) of
the frozen base model over the same 256 rows in batches of 16, written as prompts the
way the fit wrote them but without an anchor's estimate (one workload for every
configuration), at the estimator's compute precision. Machines of the same kind differ by
1.5x and more in seconds; this ratio moves much less.

Every finished (dataset, seed, configuration) appends a record to
``benchmarks/results/fit_speed.jsonl``; tables are built from all the records there (the
newest per dataset, seed and configuration), so runs split across sessions add up. Fits run
where ``device="auto"`` puts them: on a machine with CUDA the records say so, the table
keeps to them and goes to a section of its own (the name with " (GPU)" added), and every
timer waits for the GPU's queued work.
"""

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import r2_score

import public_datasets
from _report import (
    append_records,
    clock,
    command_line,
    markdown_table,
    newest_records,
    write_section,
)
from llmregressor import LLMRegressor
from llmregressor.backbones import compute_autocast, load_pretrained, resolve_compute_dtype

RESULTS = Path(__file__).resolve().parent / "results" / "fit_speed.jsonl"
# Where the estimator's device="auto" fits: a GPU when there is one.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# The default of 2026-11-30 (when issue 21 measured it), as parameters of today's estimator:
# adapters on every layer, the fused attention kernel, every row trained on (none held out
# to calibrate), no anchor, six SFT epochs then two of ReMax. Each is pinned, so that a
# change of today's defaults never moves it.
NAMED = {
    "before": {
        "lora_layers": None,
        "attn_implementation": "sdpa",
        "interval_calibration": None,
        "anchor": None,
        "sft_epochs": 6,
        "rl_algorithm": "remax",
        "rl_epochs": 2,
    },
    "after": {},
}
BATCH = 16


def parse_config(label: str) -> dict:
    """Estimator overrides of a configuration label (``before``, ``after``, ``k=v,k=v``).

    An ``anchor`` named in ``public_datasets.NAMED_ANCHORS`` (``anchor="spline_ridge"``)
    stands for that anchor: a ``RidgeAnchor`` setting the package has no name for.
    """
    if label in NAMED:
        return NAMED[label]
    overrides = {}
    for item in label.split(","):
        key, value = item.split("=", 1)
        overrides[key] = None if value == "None" else json.loads(value)
    if overrides.get("anchor") in public_datasets.NAMED_ANCHORS:
        overrides["anchor"] = public_datasets.NAMED_ANCHORS[overrides["anchor"]]()
    return overrides


def reference_epoch_s(reg: LLMRegressor, X_tr) -> float:
    """Seconds of one epoch of plain forward + backward of the frozen base over X_tr's prompts."""
    # The fitted backbone writes, tokenizes and left-pads the rows as the fit did, without an
    # anchor's estimate: the same workload whatever the configuration, a constant of the
    # machine and the split; on the fit's device (collate moves the batches there).
    backbone = reg.policy_.policy.backbone
    device = backbone.device
    causal_lm, _ = load_pretrained(reg.model)
    if device.type != "cpu":
        # A copy: the cached CPU base also embeds the anchor's text cells.
        causal_lm = copy.deepcopy(causal_lm).to(device)
    plain = dataclasses.replace(backbone.serializer, estimate=False)
    token_ids = backbone.tokenize(plain(X_tr.to_numpy(dtype=object)))
    embed = causal_lm.get_input_embeddings()
    decoder = causal_lm.get_submodule(causal_lm.base_model_prefix)
    autocast = compute_autocast(device, resolve_compute_dtype(reg.dtype, device))
    start = clock(device)
    for first in range(0, len(token_ids), BATCH):
        batch = backbone.pad_prompts(token_ids[first : first + BATCH])
        mask = batch["attention_mask"]
        embeddings = embed(batch["input_ids"]).detach().requires_grad_(True)
        with autocast:
            hidden = decoder(
                inputs_embeds=embeddings,
                attention_mask=mask,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            ).last_hidden_state
        hidden[:, -1].float().sum().backward()
    return clock(device) - start


def anchored(model: LLMRegressor, X_te, y_te: np.ndarray) -> dict:
    """An anchored fit's anchor alone on the test rows, its residual scale and per-epoch scales.

    ``sft_residual_scales`` is the scale fitted after each SFT epoch where
    ``residual_patience`` checks it (a patience above ``sft_epochs`` records them without
    stopping): the epoch at which any patience would have stopped the same fit, whose
    predictions would then have been the anchor's. Nothing without an anchor.
    """
    if getattr(model, "anchor_", None) is None:
        return {}
    sft = [r for r in model.history_ if r.get("phase") == "sft"]
    checked = {}
    if sft and "residual_scale" in sft[0]:
        checked = {
            "sft_residual_scales": [r["residual_scale"] for r in sft],
            "sft_epoch_s": [r["time_s"] for r in sft],
        }
    return {
        "anchor_r2": r2_score(y_te, model.anchor_.predict(X_te)),
        "residual_scale": model.residual_scale_,
        **checked,
    }


def run_one(name: str, seed: int, labels: list[str]) -> list[dict]:
    """Fit every configuration on one (dataset, seed) split, then time the reference epoch."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, 256, 1000, "train_test_split")
    records, fitted = [], None
    for label in labels:
        reg = LLMRegressor(random_state=seed, **parse_config(label))
        start = clock(DEVICE)
        reg.fit(X_tr, y_tr)
        fit_s = clock(DEVICE) - start
        start = clock(DEVICE)
        pred = reg.predict(X_te)
        predict_s = clock(DEVICE) - start
        epochs = [r["time_s"] for r in reg.history_ if r.get("phase") in ("sft", "rl")]
        records.append(
            {
                "config": label,
                "fit_s": fit_s,
                "predict_s": predict_s,
                "r2": r2_score(y_te, pred),
                "rmse": float(np.sqrt(np.mean((pred - y_te) ** 2))),
                "epoch_s": epochs,
                **anchored(reg, X_te, y_te),
            }
        )
        fitted = reg
    reference = reference_epoch_s(fitted, X_tr)
    for record in records:
        record.update(
            device=DEVICE.type,
            dataset=name,
            seed=seed,
            train_rows=len(X_tr),
            test_rows=len(X_te),
            reference_epoch_s=reference,
            fit_ratio=record["fit_s"] / reference,
        )
        print(json.dumps(record), flush=True)
    return records


def table(records: list[dict], datasets: list[str], labels: list[str]) -> str:
    """Mean over seeds per dataset and configuration; speed-ups against the first label."""
    rows = []
    for name in datasets:
        base = None
        for label in labels:
            mine = [r for r in records if r["dataset"] == name and r["config"] == label]
            if not mine:
                continue
            fit_s = float(np.mean([r["fit_s"] for r in mine]))
            ratio = float(np.mean([r["fit_ratio"] for r in mine]))
            base = base or (fit_s, ratio)
            rows.append(
                [
                    name,
                    label,
                    len(mine),
                    float(np.mean([r["r2"] for r in mine])),
                    " ".join(f"{r['r2']:.3f}" for r in sorted(mine, key=lambda r: r["seed"])),
                    round(fit_s, 1),
                    round(float(np.mean([r["predict_s"] for r in mine])), 1),
                    round(ratio, 1),
                    f"{base[0] / fit_s:.2f}x / {base[1] / ratio:.2f}x",
                ]
            )
    header = [
        "dataset",
        "config",
        "seeds",
        "R^2 (mean)",
        "R^2 per seed",
        "fit s",
        "predict s",
        "fit / reference epoch",
        "speed-up (s / ratio)",
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["diabetes"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=["before", "after"])
    parser.add_argument("--section", default="Fit speed: before and after")
    parser.add_argument("--report", action="store_true", help="rebuild the table only")
    args = parser.parse_args()
    if not args.report:
        for name in args.datasets:
            for seed in args.seeds:
                append_records(RESULTS, run_one(name, seed, args.configs))
    # Records before the device field were all CPU runs.
    records = newest_records(
        RESULTS,
        ("dataset", "seed", "config"),
        lambda r: r["seed"] in args.seeds and r.get("device", "cpu") == DEVICE.type,
    )
    body = table(records, args.datasets, args.configs)
    print(body)
    # A GPU run gets a section of its own instead of replacing the CPU numbers.
    section = args.section + (" (GPU)" if DEVICE.type == "cuda" else "")
    # Rebuilt from records, the table holds runs of their own thread counts.
    threads = "threads: as the text below says" if args.report else None
    write_section(section, command_line(), body, threads)


if __name__ == "__main__":
    main()
