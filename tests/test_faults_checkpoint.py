"""Fault injection on checkpointed fits: damaged files, killed and concurrent fits.

One test (or parametrized group) per defect of issue 23: resuming with renamed columns
(5), damaged checkpoints (7), two fits on one folder (8), command-line output paths
checked only after training (11) and fits in threads of one process (12). The file only
uses what the package had before those fixes, so that it also runs (and fails) there.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import count_saves, interrupt_after

import llmregressor
from llmregressor import LLMRegressor
from llmregressor._checkpoint import PhaseCheckpoint
from llmregressor.cli import main

REPO = Path(llmregressor.__file__).resolve().parents[1]


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
        rl_epochs=1,
        kl_coef=0.1,
        lora_dropout=0.1,  # draws from torch's RNG
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


def without_times(history):
    return [{k: v for k, v in record.items() if k != "time_s"} for record in history]


def assert_same_fit(reg, expected, X):
    weights = expected.policy_.trainable_weights()
    for name, value in reg.policy_.trainable_weights().items():
        np.testing.assert_array_equal(value, weights[name], err_msg=name)
    np.testing.assert_array_equal(reg.predict(X), expected.predict(X))
    assert without_times(reg.history_) == without_times(expected.history_)


# 5 ------------------------------------------------------------ column names and dtypes
@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(2)
    table = pd.DataFrame({"size": rng.integers(1, 9, 30), "color": rng.choice(["red", "blue"], 30)})
    return table, table["size"] * 2.0 + (table["color"] == "red")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.rename(columns={"color": "colour"}), "other column names"),
        # In a mixed frame the integers stay integers, written "3", not "3.0".
        (lambda t: t.astype({"size": float}), "other training data"),
    ],
    ids=["renamed", "int-to-float"],
)
def test_resume_refuses_a_table_written_into_other_prompts(
    frame, tiny_model_dir, tmp_path, monkeypatch, change, message
):
    table, y = frame
    params = dict(sft_epochs=2, rl_algorithm=None)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            make(tiny_model_dir, tmp_path, **params).fit(table, y)
    with pytest.raises(ValueError, match=message):
        make(tiny_model_dir, tmp_path, resume=True, **params).fit(change(table), y)


def test_resume_accepts_categories_the_fit_does_not_see(frame, tiny_model_dir, tmp_path):
    # A categorical column reaches the fit as its values: unused categories change nothing,
    # so the checkpoint stays valid and resuming gives the fresh fit's result.
    table, y = frame
    params = dict(sft_epochs=2, rl_algorithm=None)
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            make(tiny_model_dir, tmp_path / "a", **params).fit(table, y)
    categorical = table.astype({"color": pd.CategoricalDtype(["red", "blue", "green"])})
    resumed = make(tiny_model_dir, tmp_path / "a", resume=True, **params).fit(categorical, y)
    fresh = make(tiny_model_dir, tmp_path / "b", **params).fit(categorical, y)
    assert_same_fit(resumed, fresh, categorical)


# 7 ------------------------------------------------------------------ damaged checkpoints
@pytest.fixture(scope="module")
def uninterrupted(data, tiny_model_dir, tmp_path_factory):
    X, y = data
    return make(tiny_model_dir, tmp_path_factory.mktemp("full")).fit(X, y)


@pytest.fixture(scope="module")
def after_two_epochs(data, tiny_model_dir, tmp_path_factory):
    """A checkpoint folder of the uninterrupted fit's settings, killed after 2 epochs."""
    X, y = data
    folder = tmp_path_factory.mktemp("killed")
    with pytest.MonkeyPatch.context() as patch:
        interrupt_after(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            make(tiny_model_dir, folder).fit(X, y)
    return folder


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble(path):
    path.write_bytes(b'{"epoch": 1, "histo')


def flip_last_byte(path):
    # The end of a safetensors file is tensor data: a silently different weight.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def delete(path):
    path.unlink()


@pytest.mark.parametrize(
    ("source", "damaged", "damage"),
    [
        ("killed", "sft-epoch-0001/adapter.safetensors", truncate),
        ("killed", "sft-epoch-0001/state.json", garble),
        ("killed", "sft-epoch-0001/optimizer.pt", delete),
        # RL's only epoch: RL reruns from the finished SFT.
        ("full", "rl-epoch-0000/adapter.safetensors", flip_last_byte),
        # The finished SFT epoch: SFT reruns its last epoch, and RL after it.
        ("full", "sft-epoch-0002/adapter.safetensors", truncate),
    ],
    ids=["truncated", "garbled-json", "missing-file", "flipped-byte", "finished-phase"],
)
def test_a_damaged_epoch_falls_back_to_the_one_before(
    data, tiny_model_dir, tmp_path, uninterrupted, after_two_epochs, source, damaged, damage
):
    X, y = data
    original = after_two_epochs if source == "killed" else uninterrupted.checkpoint_dir
    folder = tmp_path / "ckpt"
    shutil.copytree(original, folder)
    damage(folder / damaged)
    resumed = make(tiny_model_dir, folder, resume=True)
    with pytest.warns(UserWarning, match=f"{Path(damaged).parent}.*Resuming from"):
        resumed.fit(X, y)
    assert_same_fit(resumed, uninterrupted, X)


def test_no_intact_epoch_names_the_folder_and_the_remedy(
    data, tiny_model_dir, tmp_path, after_two_epochs
):
    X, y = data
    folder = tmp_path / "ckpt"
    shutil.copytree(after_two_epochs, folder)
    for adapter in folder.glob("*-epoch-*/adapter.safetensors"):
        truncate(adapter)
    message = f"checkpoint in {re.escape(str(folder))} is damaged.*resume=False"
    with pytest.raises(ValueError, match=message):
        make(tiny_model_dir, folder, resume=True).fit(X, y)
    # As the message says, resume=False starts over.
    make(tiny_model_dir, folder, sft_epochs=1, rl_algorithm=None).fit(X, y)


def test_a_damaged_fit_file_names_the_folder_and_the_remedy(
    data, tiny_model_dir, tmp_path, after_two_epochs
):
    X, y = data
    folder = tmp_path / "ckpt"
    shutil.copytree(after_two_epochs, folder)
    garble(folder / "fit.json")
    with pytest.raises(
        ValueError, match=f"checkpoint in {folder} is damaged: fit.json.*resume=False"
    ):
        make(tiny_model_dir, folder, resume=True).fit(X, y)


# 8 ------------------------------------------------------------ two fits on one folder
def test_a_second_fit_on_a_folder_in_use_is_refused(data, tiny_model_dir, tmp_path, monkeypatch):
    X, y = data
    params = dict(sft_epochs=2, rl_algorithm=None)
    save = PhaseCheckpoint.save
    intrusions = []

    def save_then_intrude(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if not intrusions:  # while the first fit runs, after its first checkpoint
            intrusions.append("started")  # once: the intruder's own saves pass through
            intruder = make(tiny_model_dir, tmp_path, random_state=1, **params)
            message = f"{re.escape(str(tmp_path))} is in use by the fit of process"
            with pytest.raises(RuntimeError, match=message):
                intruder.fit(X, y + 1)

    with monkeypatch.context() as patch:
        patch.setattr(PhaseCheckpoint, "save", save_then_intrude)
        first = make(tiny_model_dir, tmp_path, **params).fit(X, y)
    assert intrusions == ["started"]
    # The folder still holds the first fit: resuming restores it without training.
    with monkeypatch.context() as patch:
        saves = count_saves(patch)
        again = make(tiny_model_dir, tmp_path, resume=True, **params).fit(X, y)
    assert saves == []
    np.testing.assert_array_equal(again.predict(X), first.predict(X))


HOLDING_FIT = """
import sys, time
from pathlib import Path
import numpy as np
from llmregressor import LLMRegressor
from llmregressor._checkpoint import PhaseCheckpoint

model, folder, marker = sys.argv[1:]
save = PhaseCheckpoint.save

def save_then_hang(self, *args, **kwargs):
    save(self, *args, **kwargs)
    Path(marker).touch()
    time.sleep(600)  # until the test kills this process

PhaseCheckpoint.save = save_then_hang
rng = np.random.default_rng(1)
X = rng.normal(size=(30, 2)).round(2)
LLMRegressor(
    model=model, sft_epochs=2, rl_algorithm=None, batch_size=8, checkpoint_dir=folder,
    random_state=0,
).fit(X, X @ np.array([2.0, -1.0]))
"""


def test_a_fit_in_another_process_holds_the_folder_until_killed(
    data, tiny_model_dir, tmp_path, monkeypatch
):
    X, _ = data
    y = X @ np.array([2.0, -1.0])
    folder, marker = tmp_path / "ckpt", tmp_path / "first-epoch-saved"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDING_FIT, tiny_model_dir, str(folder), str(marker)],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        params = dict(sft_epochs=2, rl_algorithm=None, checkpoint_dir=folder, resume=True)
        with pytest.raises(RuntimeError, match=f"in use by the fit of process {process.pid} "):
            LLMRegressor(model=tiny_model_dir, batch_size=8, random_state=0, **params).fit(X, y)
    finally:
        process.kill()
        process.wait()
    # Killed: its lock is stale, taken over with a warning, and its epoch is resumed.
    with monkeypatch.context() as patch:
        saves = count_saves(patch)
        with pytest.warns(UserWarning, match=f"process {process.pid} .*no longer runs"):
            reg = LLMRegressor(model=tiny_model_dir, batch_size=8, random_state=0, **params)
            reg.fit(X, y)
    assert len(saves) == 1 and [r["epoch"] for r in reg.history_] == [0, 1]
    assert not (folder / "fit.lock").exists()


def test_a_lock_of_another_host_is_not_taken_over(data, tiny_model_dir, tmp_path):
    # Whether a process on another host still runs cannot be checked from here.
    X, y = data
    tmp_path.joinpath("fit.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    message = f"process 1 on host elsewhere.*delete {re.escape(str(tmp_path))}"
    with pytest.raises(RuntimeError, match=message):
        make(tiny_model_dir, tmp_path).fit(X, y)


# 11 ---------------------------------------------------- command-line output paths
@pytest.fixture
def csv_file(tmp_path):
    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0], "price": [2.0, 4.0, 6.0, 8.0]})
    frame.to_csv(tmp_path / "ok.csv", index=False)
    return tmp_path / "ok.csv"


def no_work(*args, **kwargs):
    raise AssertionError("the command started its work before checking its output paths")


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        ("ok.csv", [], "--out {dir}/ok.csv exists and is not a folder"),
        ("ok.csv/model", [], "--out {dir}/ok.csv/model cannot be created"),
        ("model", ["--checkpoint_dir", "{dir}/ok.csv"], "--checkpoint_dir {dir}/ok.csv exists"),
    ],
    ids=["out-is-the-data", "out-under-a-file", "checkpoint-dir-is-a-file"],
)
def test_fit_checks_its_output_paths_before_training(
    csv_file, tmp_path, tiny_model_dir, monkeypatch, capsys, out, extra, message
):
    monkeypatch.setattr(LLMRegressor, "fit", no_work)
    extra = [arg.format(dir=tmp_path) for arg in extra]
    argv = ["fit", str(csv_file), "--target", "price", "--out", f"{tmp_path}/{out}"]
    assert main([*argv, "--model", tiny_model_dir, *extra]) == 2
    assert message.format(dir=tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("", "is a folder, not a file"),
        ("missing/preds.csv", "cannot be written"),
        ("ok.csv", "is the input data file"),
    ],
    ids=["out-is-a-folder", "out-in-a-missing-folder", "out-is-the-data"],
)
def test_predict_checks_its_output_path_before_loading(
    csv_file, tmp_path, monkeypatch, capsys, out, message
):
    monkeypatch.setattr(LLMRegressor, "load", no_work)
    argv = ["predict", str(tmp_path / "model"), str(csv_file), "--out", str(tmp_path / out)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# 12 ---------------------------------------------------------- fits in threads
def test_fits_in_threads_match_the_same_fits_alone(data, tiny_model_dir):
    X, y = data
    settings = [dict(random_state=0), dict(random_state=1, sft_lr=0.01)]

    def fit(params):
        return make(tiny_model_dir, None, sft_epochs=2, **params).fit(X, y)

    alone = [fit(params) for params in settings]
    start = threading.Barrier(len(settings))
    results, errors = {}, []

    def run(i):
        try:
            start.wait()
            results[i] = fit(settings[i])
        except BaseException as err:  # re-raised in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(settings))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for i, expected in enumerate(alone):
        assert_same_fit(results[i], expected, X)
