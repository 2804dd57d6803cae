"""Fault injection into saved models and their base models (tracker issue 23).

Each test corrupts, truncates or tampers with what a saved model depends on and checks
that loading (or resuming, or predicting) refuses it with a message that names what is
wrong, instead of predicting from something else than what was fitted. Only names that
existed before these checks are imported at module level, so that the module also runs
against the code before them (where these tests fail).
"""

import copy
import hashlib
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
import safetensors.torch

from llmregressor import LLMRegressor
from llmregressor.cli import main
from llmregressor.persistence import MANIFEST_FILE, WEIGHTS_FILE, ModelFormatError

# Folders of format 2 load without checksum verification, and say so.
pytestmark = pytest.mark.filterwarnings("ignore:.*which has no checksums:UserWarning")

B = dict(
    sft_epochs=1,
    rl_epochs=1,
    n_samples=4,
    batch_size=8,
    rl_batch_size=8,
    random_state=0,
    device="cpu",
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(23)
    X = pd.DataFrame(
        {
            "size": rng.normal(50, 10, 30).round(1),
            "rooms": rng.integers(1, 6, 30),
            "city": rng.choice(["Lyon", "Oslo", "Lima"], 30),
        }
    )
    y = X["size"].to_numpy() * 2 + X["rooms"].to_numpy() * 5
    return X, y


@pytest.fixture(scope="module")
def fitted(data, tiny_model_dir):
    X, y = data
    return LLMRegressor(model=tiny_model_dir, **B).fit(X, y)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    fitted.save(folder)
    return folder


def copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_manifest(folder, edit):
    file = folder / MANIFEST_FILE
    manifest = json.loads(file.read_text())
    edit(manifest)
    file.write_text(json.dumps(manifest))


def as_format_2(manifest):
    """Make a manifest look as the code before checksums wrote it (a no-op for that code)."""
    manifest.pop("checksums", None)
    manifest["format_version"] = 2


def names(folder, *parts):
    """A regex matching the folder's path, then each part, in that order."""
    return ".*".join(re.escape(str(p)) for p in (folder, *parts))


# ---------------------------------------------------------------- 2. custom model code
def custom_code_model(tiny_model_dir, folder, model_type):
    """A copy of the tiny model whose config maps its classes to code in the folder."""
    shutil.copytree(tiny_model_dir, folder)
    marker = folder / "the-code-ran"
    for module, name, base in (
        ("configuration_custom", "CustomConfig", "LlamaConfig"),
        ("modeling_custom", "CustomForCausalLM", "LlamaForCausalLM"),
    ):
        (folder / f"{module}.py").write_text(
            f"open({str(marker)!r}, 'w').close()\n"
            f"from transformers import {base}\n\n\n"
            f"class {name}({base}):\n    model_type = {model_type!r}\n"
        )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


# An unknown model type makes transformers ask on stdin whether to run the code; a known
# one makes it build its own class instead of the model's, without a word.
@pytest.mark.parametrize("model_type", ["custom-llama", "llama"])
def test_a_model_that_ships_code_is_refused_without_running_it(
    saved, data, tiny_model_dir, tmp_path, monkeypatch, model_type
):
    base, marker = custom_code_model(tiny_model_dir, tmp_path / "custom", model_type)
    asked = []
    # A user who answers "y" to transformers' question.
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "y")
    folder = copy_folder(saved, tmp_path / "m")

    def point_at_custom(manifest):
        for section in (manifest["params"], manifest["base_model"], manifest["policy"]["config"]):
            section["model"] = str(base)

    # Where the base model lies is not checksummed: a moved base may be pointed at.
    edit_manifest(folder, point_at_custom)
    with pytest.raises(ValueError, match=r"ships its own code \(auto_map in its config.json"):
        LLMRegressor.load(folder)
    X, y = data
    with pytest.raises(ValueError, match="ships its own code"):
        LLMRegressor(**{**B, "model": str(base)}).fit(X, y)
    assert asked == []
    assert not marker.exists()


# ------------------------------------------------------------ 3. missing adapter weights
def test_missing_or_misshaped_adapter_weights_are_refused(saved, tmp_path):
    weights = safetensors.numpy.load_file(saved / WEIGHTS_FILE)
    first = sorted(weights)[0]
    damaged = {
        "empty": {},
        "one missing": {k: v for k, v in weights.items() if k != first},
        "one mis-shaped": {**weights, first: weights[first][:1]},
    }
    for case, tensors in damaged.items():
        folder = copy_folder(saved, tmp_path / case)
        safetensors.numpy.save_file(tensors, folder / WEIGHTS_FILE)
        # Without checksums (as saved before them, or with verify=False) the tensor
        # check itself refuses, naming the file and the tensor.
        edit_manifest(folder, as_format_2)
        with pytest.raises(ModelFormatError, match=names(folder, WEIGHTS_FILE, first)):
            LLMRegressor.load(folder)
    folder = copy_folder(saved, tmp_path / "checksummed")
    safetensors.numpy.save_file({}, folder / WEIGHTS_FILE)
    with pytest.raises(ModelFormatError, match=names(folder, WEIGHTS_FILE, "checksum")):
        LLMRegressor.load(folder)


def test_a_checkpoint_missing_a_tensor_does_not_resume(data, tiny_model_dir, tmp_path):
    X, y = data
    params = {**B, "model": tiny_model_dir, "checkpoint_dir": tmp_path / "checkpoints"}
    LLMRegressor(**params).fit(X, y)
    (epoch,) = (tmp_path / "checkpoints").glob("sft-epoch-*")
    file = epoch / "adapter.safetensors"
    tensors = safetensors.torch.load_file(file)
    first = sorted(tensors)[0]
    del tensors[first]
    safetensors.torch.save_file(tensors, file)
    # The epoch's checksums catch a changed file first (tests/test_faults_checkpoint.py);
    # rewritten to match, as a checkpoint written short would be, the tensor check refuses.
    manifest = json.loads((epoch / "manifest.json").read_text())
    manifest["sha256"]["adapter.safetensors"] = hashlib.sha256(file.read_bytes()).hexdigest()
    (epoch / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=names(epoch, first, "is missing")):
        LLMRegressor(**params, resume=True).fit(X, y)


# ------------------------------------------------------------------ 4. changed base model
def test_a_changed_base_weight_is_refused(data, tiny_model_dir, tmp_path):
    X, y = data
    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    reg = LLMRegressor(**{**B, "model": str(base)}).fit(X, y)
    reg.save(tmp_path / "m")
    file = base / "model.safetensors"
    tensors = safetensors.torch.load_file(file)
    name = "model.layers.0.self_attn.q_proj.weight"
    tensors[name] = tensors[name] * 1.01
    safetensors.torch.save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="differs from the one this estimator was fitted on"):
        LLMRegressor.load(tmp_path / "m")


# ------------------------------------------------------------------- 9. unclear errors
def test_prediction_checks_parameters_set_after_the_fit(fitted, data):
    X, _ = data
    reg = copy.copy(fitted)
    for param, value, match in [
        ("batch_size", 0, "batch_size must be an int >= 1, got 0"),
        ("micro_batch_size", 0, "micro_batch_size must be an int >= 1, got 0"),
        ("verbose", "yes", "verbose must be an int"),
    ]:
        reg.set_params(**{param: value})
        with pytest.raises((TypeError, ValueError), match=match):
            reg.predict(X)
        reg.set_params(**{param: getattr(fitted, param)})


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("batch_size", 0, "batch_size must be an int >= 1, got 0"),
        ("batch_size", "8", "batch_size must be an int, got '8'"),
        ("n_samples", -5, "n_samples must be an int >= 1, got -5"),
    ],
)
def test_load_checks_the_saved_parameters(saved, tmp_path, param, value, match):
    folder = copy_folder(saved, tmp_path / "m")
    edit_manifest(folder, lambda m: m["params"].update({param: value}))
    with pytest.raises(ModelFormatError, match=names(folder, "invalid parameter", match)):
        LLMRegressor.load(folder)


def test_a_codec_that_does_not_fit_the_policy_is_refused(saved, data, tmp_path, capsys):
    folder = copy_folder(saved, tmp_path / "m")

    def more_digits(manifest):
        as_format_2(manifest)
        manifest["codec"]["params"]["digits"] += 1

    edit_manifest(folder, more_digits)
    with pytest.raises(ModelFormatError, match=names(folder, "codec that does not match")):
        LLMRegressor.load(folder)
    # The command line reports it as one line and exit status 2, not a traceback.
    csv = tmp_path / "rows.csv"
    data[0].to_csv(csv, index=False)
    assert main(["predict", str(folder), str(csv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[1].startswith("llmregressor: error: ")  # after "loading ..."
    assert "codec that does not match its policy" in err[1]


def test_a_table_without_columns_is_refused_clearly(fitted, data):
    X, y = data
    with pytest.raises(ValueError, match=r"X has no columns \(shape \(30, 0\)\)"):
        LLMRegressor(model=fitted.model, **B).fit(X[[]], y)
    with pytest.raises(ValueError, match=r"X has no columns \(shape \(30, 0\)\)"):
        fitted.predict(X[[]])


# ------------------------------------------------------ 10. manifest and weights tied
def _shift(section, key, by):
    def edit(manifest):
        target = manifest
        for name in section:
            target = target[name]
        target[key] = target[key] + by

    return edit


# Values a load can tell are wrong (a NaN scale, symbols the codec does not use) are
# refused as such; plausible ones only by the checksum.
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m["codec"]["fitted"].update(scale_=float("nan")), "scale_ is nan"),
        (_shift(("codec", "fitted"), "mean_", 1.0), "checksum"),
        (_shift(("fitted",), "seed", 1), "checksum"),
        (lambda m: m["serializer"].update(template="{features} -> "), "checksum"),
        (lambda m: m["policy"]["config"]["symbols"].reverse(), "codec that does not match"),
    ],
)
def test_an_edited_fitted_section_is_refused(saved, tmp_path, edit, match):
    folder = copy_folder(saved, tmp_path / "m")
    edit_manifest(folder, edit)
    with pytest.raises(ModelFormatError, match=names(folder, match)):
        LLMRegressor.load(folder)


def test_verify_false_loads_an_edited_manifest(saved, fitted, data, tmp_path):
    folder = copy_folder(saved, tmp_path / "m")
    edit_manifest(folder, lambda m: m["fitted"].update(seed=m["fitted"]["seed"] + 1))
    with pytest.raises(ModelFormatError, match=names(folder, MANIFEST_FILE, "checksum")):
        LLMRegressor.load(folder)
    loaded = LLMRegressor.load(folder, verify=False)
    assert loaded.seed_ == fitted.seed_ + 1


def test_a_flipped_byte_in_the_weights_is_refused(saved, tmp_path):
    folder = copy_folder(saved, tmp_path / "m")
    raw = bytearray((folder / WEIGHTS_FILE).read_bytes())
    raw[-3] ^= 0x01  # inside the last tensor's data: still a valid safetensors file
    (folder / WEIGHTS_FILE).write_bytes(bytes(raw))
    safetensors.numpy.load_file(folder / WEIGHTS_FILE)
    with pytest.raises(ModelFormatError, match=names(folder, WEIGHTS_FILE, "checksum")):
        LLMRegressor.load(folder)
