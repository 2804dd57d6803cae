"""Test fixtures: one tiny random-initialized Llama per test run, loaded by path.

The tiny model has the SmolLM2 tokenizer (taken from the embedded GGUF file) so that the
number-token mapping is the real one, but only 2 layers of width 32, so a fit takes seconds.
"""

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Tests never reach a model hub: an unknown model name must fail fast, offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# scikit-learn's array-API check (run with the numpy namespace) skips itself without this.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

TINY_MODEL_DIR = Path(tempfile.mkdtemp(prefix="llmregressor-tiny-")) / "tiny-llama"


def pytest_configure(config):
    """Hide CUDA from the run unless it is ``-m gpu``.

    The default suite asserts what fits do on the CPU (bit-identical refits and resumes,
    the eager/sdpa kernel switch, gloo processes), and ``device="auto"`` would move them to
    a GPU where one exists; it must pass alike on any machine and never need a GPU. The
    CUDA tests (``tests/test_gpu.py``) run on their own, with ``pytest -m gpu``.
    """
    if config.getoption("markexpr").strip() == "gpu":
        return
    # Before torch first asks the driver, and inherited by the processes tests launch.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    torch.cuda.is_available = lambda: False


def build_tiny_model(target: Path) -> Path:
    import torch
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
        # Wider than the 0.02 default so logits over the number symbols are not all ~0:
        # the tiny policy can then move its distribution within a few steps.
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session", autouse=True)
def tiny_model_dir():
    """Path of the tiny model, built once for the whole test run."""
    build_tiny_model(TINY_MODEL_DIR)
    yield str(TINY_MODEL_DIR)
    shutil.rmtree(TINY_MODEL_DIR.parent, ignore_errors=True)


def make_houses(n_rows: int, *, missing: bool = True, notes: bool = True):
    """The tests' toy table: (X, y) with a number, a category and a free-text column.

    ``size`` is a float (row 3 missing when ``missing``), ``color`` a category, ``note`` a
    string column with missing values (left out when not ``notes``); ``y`` is twice the size
    (50 where it is missing) plus 5 for red houses. Draws come in a fixed order, so a table
    of ``n_rows`` rows is always the same table.
    """
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "size": rng.normal(50, 10, n_rows).round(1),
            "color": pd.Categorical(rng.choice(["red", "blue"], n_rows)),
        }
    )
    if notes:
        X["note"] = rng.choice(["old house", "new flat", None], n_rows)
    if missing:
        X.loc[3, "size"] = np.nan
    y = X["size"].fillna(50).to_numpy() * 2 + (X["color"] == "red").to_numpy() * 5
    return X, y


@pytest.fixture(scope="session")
def houses():
    """The toy-table factory :func:`make_houses`, for tests that take fixtures."""
    return make_houses


@pytest.fixture(scope="session")
def four_layer_model(tiny_model_dir, tmp_path_factory):
    """A tiny Llama of 4 layers (the session's tiny model has 2), by path: deep enough for
    some layers to stay frozen below the adapters."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("four-layers")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = LlamaConfig.from_pretrained(tiny_model_dir, num_hidden_layers=4)
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def split_and_plain_gradients(backbone, policy, batch, tokens) -> tuple[list, list]:
    """Gradients of the trainable weights from the cached split passes and from one plain pass.

    The first list scores ``tokens`` through :meth:`encode` and :meth:`advance` inside a
    ``caching_prompts`` block; the second through one ``encode_sequences`` pass (as under
    gradient checkpointing).
    """

    def grads(checkpointing):
        backbone.checkpointing = checkpointing
        for param in backbone.trainable_parameters():
            param.grad = None
        policy.score(batch, tokens).log_probs.sum().backward()
        backbone.checkpointing = False
        return [param.grad.clone() for param in backbone.trainable_parameters()]

    with backbone.caching_prompts():
        split = grads(False)
    return split, grads(True)


def interrupt_after(patch, n_saves: int) -> None:
    """Raise KeyboardInterrupt right after the n-th epoch checkpoint is written (a kill)."""
    from llmregressor._checkpoint import PhaseCheckpoint

    save = PhaseCheckpoint.save
    count = {"saves": 0}

    def save_then_interrupt(self, *args, **kwargs):
        save(self, *args, **kwargs)
        count["saves"] += 1
        if count["saves"] == n_saves:
            raise KeyboardInterrupt

    patch.setattr(PhaseCheckpoint, "save", save_then_interrupt)


def count_saves(patch) -> list:
    """Record every epoch checkpoint written from now on (one entry each)."""
    from llmregressor._checkpoint import PhaseCheckpoint

    saves = []
    save = PhaseCheckpoint.save
    patch.setattr(PhaseCheckpoint, "save", lambda *a, **k: saves.append(save(*a, **k)))
    return saves
