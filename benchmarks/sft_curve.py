"""Diagnose SFT (and RL) on the LM: test metrics after every few epochs of one fit.

    python benchmarks/sft_curve.py --out curve.json [--dataset diabetes] [--seed 0]
                                   [--split {train_test_split,permutation}]
                                   [--every 2] [--test-rows 300] [param=value ...]

Fits ``LLMRegressor(random_state=seed, early_stopping=False, **params)`` on 256 training
rows and, through an engine callback (``callbacks=[...]``), scores the held-out test rows
after every ``--every``-th epoch (and every epoch from the last SFT epoch on, so RL epochs
are scored too): the teacher-forced NLL of each target symbol, and R^2 of the greedy
decode and of the mean / median of 16 samples, and the spread of those samples (mean
per-row variance over the target variance). Without early stopping nothing is restored,
so the curve shows the state each epoch leaves. Test metrics steer nothing: this is a
diagnosis of how SFT learns, not a way to pick epochs. Values are JSON
(``sft_epochs=12``, ``rl_algorithm=null``, ``batch_size=8``).
"""

import argparse
import json
import shlex
import sys
import time

import numpy as np
import torch
from sklearn.metrics import r2_score

import public_datasets
from llmregressor import LLMRegressor
from llmregressor.backbone_protocol import RowInputs
from llmregressor.engine import Callback


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="diabetes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=public_datasets.SPLITS, default="train_test_split")
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--test-rows", type=int, default=300)
    parser.add_argument("--out", required=True)
    parser.add_argument("params", nargs="*")
    args = parser.parse_args()
    params = parse_params(args.params)
    X, y = public_datasets.load(args.dataset)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, args.seed, 256, args.test_rows, args.split)
    records: list[dict] = []
    start = time.perf_counter()
    sft_epochs = params.get("sft_epochs", LLMRegressor().sft_epochs)

    class Probe(Callback):
        """Scores the test rows after the epochs the curve shows."""

        calls = 0

        def on_epoch_end(self, trainer, record: dict) -> None:
            self.calls += 1
            if self.calls % args.every and self.calls < sft_epochs:
                return
            policy, sampler = trainer.policy, trainer.sampler
            backbone = policy.backbone
            test = RowInputs.from_table(X_te.to_numpy(dtype=object), backbone.encode_rows)
            encoded = test.encode()
            targets = torch.as_tensor(trainer.codec.encode(y_te), device=backbone.device)
            backbone.train(False)
            nll = []
            with torch.no_grad():
                for s in range(0, len(encoded.keys), 32):
                    batch = backbone.collate(encoded.items[s : s + 32])
                    scores = policy.score(batch, targets[s : s + 32][:, None])
                    nll.append(-scores.log_probs[:, 0].float().cpu().numpy())
                greedy = sampler.draw(policy, test, greedy=True, progress=False)[:, 0]
                draws = sampler.draw(policy, test, n_samples=16, greedy=False, progress=False)
            result = {
                "call": self.calls,
                "phase": record["phase"],
                "elapsed_s": round(time.perf_counter() - start),
                "nll_per_symbol": np.concatenate(nll).astype(float).mean(0).round(3).tolist(),
                "r2_greedy": round(r2_score(y_te, greedy), 3),
                "r2_mean16": round(r2_score(y_te, draws.mean(1)), 3),
                "r2_median16": round(r2_score(y_te, np.median(draws, 1)), 3),
                # Spread of the draws around their own mean, as a share of the target
                # variance: one draw pays all of it in squared error, the mean of 16
                # about a sixteenth, so RL that shrinks it helps the one-draw modes most.
                "spread_share": round(np.mean(draws.var(1, ddof=1)) / y_te.var(), 3),
            }
            records.append(result)
            print(json.dumps(result), flush=True)

    reg = LLMRegressor(
        random_state=args.seed,
        early_stopping=False,
        n_iter_no_change=None,
        callbacks=[Probe()],
        **params,
    )
    reg.fit(X_tr, y_tr)
    sft = [h for h in reg.history_ if h["phase"] == "sft"]
    result = {
        "command": shlex.join(sys.argv),
        "params": params,
        "records": records,
        "train_loss": [h["train_loss"] for h in sft],
        "fit_s": reg.fit_time_,
    }
    with open(args.out, "w") as out:
        json.dump(result, out, indent=1)


if __name__ == "__main__":
    main()
