"""Check that a refactor leaves fits, predictions and saved models exactly as they were.

    python benchmarks/engine_equivalence.py record DIR   # on the code before the change
    python benchmarks/engine_equivalence.py check DIR    # on the code after it

``record`` builds a tiny random Llama (2 layers of width 32, the embedded SmolLM2 tokenizer)
into ``DIR``, fits ``LLMRegressor`` on a 40-row toy table for each backbone (the tiny LM
with LoRA, and the ``mlp-decoder``), each codec and each RL algorithm, and writes every
prediction (``predict`` in all three modes, ``sample``, ``predict_interval``) to
``DIR/predictions.npz``, each LM fit to a model folder (``save``) and each fit to a pickle.
``check`` refits the same configurations on the same tiny model and asserts identical
predictions (bit for bit on CPU), then loads the model folders and pickles written before
and asserts they predict as they did. Only the package's public API is used, so the same
script runs on both sides of a change. Exit code 0 when everything matches.
"""

import argparse
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch

from llmregressor import LLMRegressor

CONFIGS = {
    "lm-normalized-remax": dict(number_format="normalized"),
    "lm-scientific-grpo": dict(
        number_format="scientific", rl_algorithm="grpo", kl_coef=0.1, rl_updates_per_batch=2
    ),
    "lm-normalized-sample-reward": dict(reward_on="sample", sft_loss="dist"),
    "lm-early-stopping": dict(early_stopping=True, validation_fraction=0.2, sft_epochs=3),
    "lm-micro-batches": dict(micro_batch_size=3, gradient_checkpointing=True, kl_coef=0.1),
    "mlp-normalized-remax": dict(model="mlp-decoder", mlp_hidden=(16,), d_model=16, decoder_ff=32),
    "mlp-scientific-grpo": dict(
        model="mlp-decoder",
        mlp_hidden=(16,),
        d_model=16,
        decoder_ff=32,
        number_format="scientific",
        rl_algorithm="grpo",
    ),
}
COMMON = dict(
    sft_epochs=2,
    rl_epochs=1,
    batch_size=8,
    rl_batch_size=8,
    n_samples=4,
    random_state=0,
    device="cpu",
    dtype="float32",
)


def build_tiny_model(target: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmregressor.backbones import EMBEDDED_MODELS

    embedded = EMBEDDED_MODELS["smollm2-135m"]
    tokenizer = AutoTokenizer.from_pretrained(embedded.folder(), gguf_file=embedded.gguf_file)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)


def toy_table() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 52
    X = pd.DataFrame(
        {
            "size": rng.uniform(20, 120, n).round(1),
            "rooms": rng.integers(1, 6, n),
            "city": rng.choice(["paris", "lyon", "nice"], n),
        }
    )
    X.loc[3, "size"] = np.nan
    y = 10 * X["rooms"].to_numpy() + np.nan_to_num(X["size"].to_numpy()) / 4 + rng.normal(0, 2, n)
    return X[:40], y[:40], X[40:]


def outputs(reg: LLMRegressor, X_test: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    for mode in ("mean", "greedy", "median"):
        out[f"predict_{mode}"] = reg.set_params(predict_mode=mode).predict(X_test)
    reg.set_params(predict_mode="mean")
    out["sample"] = reg.sample(X_test, 6)
    out["interval"] = reg.predict_interval(X_test, 0.8)
    return out


def fit(name: str, model_dir: Path, X, y) -> LLMRegressor:
    params = {**COMMON, "model": str(model_dir), **CONFIGS[name]}
    return LLMRegressor(**params).fit(X, y)


def record(root: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    model_dir = root / "tiny-llama"
    build_tiny_model(model_dir)
    X, y, X_test = toy_table()
    arrays = {}
    for name in CONFIGS:
        reg = fit(name, model_dir, X, y)
        for key, value in outputs(reg, X_test).items():
            arrays[f"{name}/{key}"] = value
        joblib.dump(reg, root / f"{name}.pkl")
        if not name.startswith("mlp"):
            reg.save(root / name)
        print(f"recorded {name}")
    np.savez(root / "predictions.npz", **arrays)
    return 0


def check(root: Path) -> int:
    model_dir = root / "tiny-llama"
    X, y, X_test = toy_table()
    expected = np.load(root / "predictions.npz")
    failures = []

    def compare(label: str, name: str, reg: LLMRegressor) -> None:
        different = [
            key
            for key, value in outputs(reg, X_test).items()
            if not np.array_equal(value, expected[f"{name}/{key}"])
        ]
        failures.extend(f"{label} {name} {key}" for key in different)
        verdict = f"different: {', '.join(different)}" if different else "identical"
        print(f"{label:>7} {name}: {verdict}")

    for name in CONFIGS:
        compare("refit", name, fit(name, model_dir, X, y))
        compare("pickle", name, joblib.load(root / f"{name}.pkl"))
        if not name.startswith("mlp"):
            compare("load", name, LLMRegressor.load(root / name))
    if failures:
        print("DIFFERENT:", *failures, sep="\n  ")
        return 1
    print("all predictions identical")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "check"))
    parser.add_argument("dir", type=Path)
    args = parser.parse_args()
    return record(args.dir) if args.mode == "record" else check(args.dir)


if __name__ == "__main__":
    sys.exit(main())
