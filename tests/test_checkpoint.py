"""Per-epoch checkpoints: an interrupted fit resumes to the uninterrupted result.

Resuming restores the adapter weights, optimizer, scheduler, random generators and
early-stopping state exactly, so on one CPU process the resumed fit reproduces the
uninterrupted one bit for bit: the tests compare weights and predictions for equality.
"""

import json

import numpy as np
import pytest
import torch
from conftest import count_saves, interrupt_after

import llmregressor.estimator as estimator
from llmregressor import LLMRegressor
from llmregressor._checkpoint import fit_identity


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2)).round(2)
    return X, X @ np.array([2.0, -1.0]) + rng.normal(size=30) * 0.1


def make(model_dir, folder, **params):
    defaults = dict(
        model=model_dir,
        sft_epochs=3,
        rl_algorithm="remax",
        rl_epochs=2,
        kl_coef=0.1,
        lora_dropout=0.1,  # draws from torch's RNG, which must be restored too
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=None,
        batch_size=8,
        rl_batch_size=8,
        n_samples=4,
        checkpoint_dir=folder,
        random_state=0,
    )
    return LLMRegressor(**{**defaults, **params})


@pytest.fixture(scope="module")
def uninterrupted(data, tiny_model_dir, tmp_path_factory):
    X, y = data
    return make(tiny_model_dir, tmp_path_factory.mktemp("full")).fit(X, y)


def without_times(history):
    return [{k: v for k, v in record.items() if k != "time_s"} for record in history]


# 3 SFT epochs then 2 RL epochs: interrupt inside SFT, at the phase change, inside RL.
@pytest.mark.parametrize("n_saves", [1, 3, 4])
def test_interrupted_fit_resumes_to_the_same_result(
    data, tiny_model_dir, tmp_path, monkeypatch, uninterrupted, n_saves
):
    X, y = data
    reg = make(tiny_model_dir, tmp_path)
    with monkeypatch.context() as patch:
        interrupt_after(patch, n_saves)
        with pytest.raises(KeyboardInterrupt):
            reg.fit(X, y)
    assert not hasattr(reg, "history_")
    resumed = make(tiny_model_dir, tmp_path, resume=True)
    with monkeypatch.context() as patch:
        saves = count_saves(patch)
        resumed.fit(X, y)
    assert len(saves) == 5 - n_saves  # only the epochs after the interruption ran
    expected = uninterrupted.policy_.trainable_weights()
    for name, value in resumed.policy_.trainable_weights().items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    np.testing.assert_array_equal(resumed.predict(X), uninterrupted.predict(X))
    assert without_times(resumed.history_) == without_times(uninterrupted.history_)


def test_resume_keeps_the_checkpointed_seed(data, tiny_model_dir, tmp_path, monkeypatch):
    X, y = data
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            make(tiny_model_dir, tmp_path, sft_epochs=2, random_state=None).fit(X, y)
    seed = json.loads((tmp_path / "fit.json").read_text())["seed"]
    # random_state=None draws a new seed per fit; resuming must use the checkpointed one.
    resumed = make(tiny_model_dir, tmp_path, sft_epochs=2, random_state=None, resume=True)
    assert resumed.fit(X, y).seed_ == seed
    assert [r["epoch"] for r in resumed.history_ if r["phase"] == "sft"] == [0, 1]


def test_checkpoint_folder_layout(uninterrupted):
    folder = uninterrupted.checkpoint_dir
    names = sorted(p.name for p in folder.iterdir())
    # Each phase keeps its latest epoch and the one before, a fallback if the latest is
    # damaged; the lock is gone once the fit ends.
    assert names == [
        "fit.json",
        "rl-epoch-0000",
        "rl-epoch-0001",
        "sft-epoch-0001",
        "sft-epoch-0002",
    ]
    assert sorted(p.name for p in (folder / "sft-epoch-0002").iterdir()) == [
        "adapter.safetensors",
        "best.safetensors",
        "manifest.json",
        "optimizer.pt",
        "state.json",
    ]


def test_a_half_written_epoch_folder_is_ignored(data, tiny_model_dir, tmp_path):
    # A process killed while writing leaves only a temporary folder behind.
    X, y = data
    reg = make(tiny_model_dir, tmp_path, rl_algorithm=None).fit(X, y)
    (tmp_path / ".sft-epoch-0003.tmp").mkdir()
    (tmp_path / ".sft-epoch-0003.tmp" / "adapter.safetensors").write_bytes(b"partial")
    again = make(tiny_model_dir, tmp_path, rl_algorithm=None, resume=True).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))


def test_resume_refuses_other_params_or_data(data, tiny_model_dir, tmp_path):
    X, y = data
    make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None).fit(X, y)
    other_lr = make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None, sft_lr=0.5)
    with pytest.raises(ValueError, match=r"other parameters \(sft_lr=0.001 -> 0.5\)"):
        other_lr.set_params(resume=True).fit(X, y)
    same = make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None, resume=True)
    with pytest.raises(ValueError, match="other training data"):
        same.fit(X, y + 1)
    # Where and how fast the fit runs may change between runs.
    same.set_params(micro_batch_size=2, gradient_checkpointing=True, verbose=0).fit(X, y)


def test_resume_refuses_another_precision_from_the_same_dtype(
    data, tiny_model_dir, tmp_path, monkeypatch
):
    # dtype="auto" computes in float32 on most CPUs and in bfloat16 on a GPU, and device
    # may change on resume: what must match is the precision, not the parameter.
    X, y = data
    make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None, dtype="float32").fit(X, y)
    monkeypatch.setattr(estimator, "resolve_compute_dtype", lambda dtype, device: torch.bfloat16)
    again = make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None, resume=True)
    with pytest.raises(ValueError, match=r"other parameters \(dtype='float32' -> 'bfloat16'\)"):
        again.fit(X, y)


def test_a_checkpoint_older_than_a_parameter_resumes_with_its_default(
    data, tiny_model_dir, tmp_path
):
    # A checkpoint written before anchor_mode existed lacks it: it had the default then.
    X, y = data
    reg = make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None).fit(X, y)
    record = json.loads((tmp_path / "fit.json").read_text())
    del record["params"]["anchor_mode"]
    (tmp_path / "fit.json").write_text(json.dumps(record))
    again = make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None, resume=True)
    np.testing.assert_array_equal(again.fit(X, y).predict(X), reg.predict(X))
    # A value other than the default still counts as a change.
    record["params"]["sft_lr"] = 0.5
    (tmp_path / "fit.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"other parameters \(sft_lr=0.5 -> 0.001\)"):
        again.fit(X, y)


def test_resume_refuses_a_checkpoint_with_an_older_fingerprint(data, tiny_model_dir, tmp_path):
    # Checkpoints written before fingerprints hashed every weight hold 16 hex digits.
    X, y = data
    make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None).fit(X, y)
    record = json.loads((tmp_path / "fit.json").read_text())
    record["base_fingerprint"] = "0123456789abcdef"
    (tmp_path / "fit.json").write_text(json.dumps(record))
    resumed = make(tiny_model_dir, tmp_path, sft_epochs=1, rl_algorithm=None, resume=True)
    with pytest.raises(ValueError, match="written by an older llmregressor"):
        resumed.fit(X, y)


def test_resume_without_checkpoint_starts_over(data, tiny_model_dir, tmp_path):
    X, y = data
    folder = tmp_path / "new"
    reg = make(tiny_model_dir, folder, sft_epochs=1, rl_algorithm=None, resume=True).fit(X, y)
    assert len(reg.history_) == 1 and (folder / "fit.json").is_file()


def test_resume_needs_a_checkpoint_dir(data, tiny_model_dir):
    X, y = data
    with pytest.raises(ValueError, match="resume=True needs a checkpoint_dir"):
        make(tiny_model_dir, None, resume=True).fit(X, y)


def test_a_checkpointed_fit_saves_and_loads(uninterrupted, data, tmp_path):
    X, _ = data
    uninterrupted.save(tmp_path / "model")
    loaded = LLMRegressor.load(tmp_path / "model")
    assert loaded.checkpoint_dir == uninterrupted.checkpoint_dir  # a Path stays a Path
    np.testing.assert_array_equal(loaded.predict(X), uninterrupted.predict(X))


def test_identity_compares_numpy_scalars_by_value():
    X, y = np.zeros((2, 1)), np.zeros(2)

    def params(**values):
        return fit_identity(values, X, y)["params"]

    assert params(lora_r=np.int64(4), sft_lr=np.float32(0.5), early_stopping=np.True_) == params(
        lora_r=4, sft_lr=0.5, early_stopping=True
    )
    assert params(lora_r=np.int64(4)) != params(lora_r=np.int64(8))


@pytest.mark.parametrize("early_stopping", [True, False])
def test_a_resumed_fit_calibrates_as_the_uninterrupted_one(
    tiny_model_dir, tmp_path, monkeypatch, early_stopping
):
    # 40% of 50 rows calibrate: early stopping's validation rows, or rows held out for it.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 2)).round(2)
    y = X @ np.array([2.0, -1.0]) + rng.normal(size=50) * 0.1
    params = dict(sft_epochs=2, rl_epochs=1, early_stopping=early_stopping, validation_fraction=0.4)
    full = make(tiny_model_dir, tmp_path / "full", **params).fit(X, y)
    reg = make(tiny_model_dir, tmp_path / "cut", **params)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)  # after SFT, before RL
        with pytest.raises(KeyboardInterrupt):
            reg.fit(X, y)
    resumed = make(tiny_model_dir, tmp_path / "cut", resume=True, **params).fit(X, y)
    # The 20 held-out rows, then (the correction kept) the 30 trained on, decoded again.
    assert full.calibration_.n_rows == 50
    np.testing.assert_array_equal(resumed.calibration_.draws, full.calibration_.draws)
    np.testing.assert_array_equal(resumed.calibration_.targets, full.calibration_.targets)
    np.testing.assert_array_equal(resumed.predict_interval(X), full.predict_interval(X))
