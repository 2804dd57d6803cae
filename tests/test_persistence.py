import copy
import json
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
from sklearn.exceptions import NotFittedError

from llmregressor import LLMRegressor, __version__
from llmregressor.persistence import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ModelFormatError,
    read_manifest,
)


@pytest.fixture(scope="module")
def data(houses):
    return houses(24, missing=False, notes=False)


@pytest.fixture(scope="module")
def fitted(data, tiny_model_dir):
    X, y = data
    reg = LLMRegressor(
        model=tiny_model_dir,
        anchor=None,  # the save format of the LM alone (anchors: test_anchor.py)
        sft_epochs=1,
        rl_algorithm="remax",
        rl_epochs=1,
        batch_size=8,
        n_samples=4,
        lora_target_modules=("q_proj", "v_proj"),  # a tuple must come back as a tuple
        # The rows version 1 wrote, so that its manifest can be rewritten as version 1's.
        row_format="sentence",
        random_state=0,
    )
    return reg.fit(X, y)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    fitted.save(folder)
    return folder


def edit_manifest(folder, edit):
    file = folder / MANIFEST_FILE
    manifest = json.loads(file.read_text())
    edit(manifest)
    file.write_text(json.dumps(manifest))


def copy_folder(src, dst):
    dst.mkdir()
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())
    return dst


def test_round_trip_predicts_identically(fitted, saved, data):
    X, _ = data
    assert sorted(p.name for p in saved.iterdir()) == sorted([MANIFEST_FILE, WEIGHTS_FILE])
    loaded = LLMRegressor.load(saved)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.lora_target_modules == ("q_proj", "v_proj")
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(loaded.sample(X[:3], 5), fitted.sample(X[:3], 5))
    for name in ("n_features_in_", "n_samples_fit_", "fit_time_", "history_", "seed_"):
        assert getattr(loaded, name) == getattr(fitted, name), name
    np.testing.assert_array_equal(loaded.feature_names_in_, fitted.feature_names_in_)
    assert loaded.feature_names_in_.dtype == object
    assert loaded.serializer_ == fitted.serializer_
    assert vars(loaded.codec_) == vars(fitted.codec_)
    assert [r["phase"] for r in loaded.history_] == ["sft", "rl_step", "rl_step", "rl"]


def test_weights_file_holds_only_the_trainable_weights(fitted, saved):
    weights = safetensors.numpy.load_file(saved / WEIGHTS_FILE)
    adapters = fitted.policy_.policy.backbone.adapter_state()
    assert set(weights) == set(adapters)
    for name, value in adapters.items():
        np.testing.assert_array_equal(weights[name], value.numpy())
    base_bytes = sum(p.numel() * 4 for p in fitted.policy_.policy.backbone.model.parameters())
    assert (saved / WEIGHTS_FILE).stat().st_size < base_bytes / 10


def test_manifest_records_versions_and_base_model(fitted, saved, tiny_model_dir):
    manifest = read_manifest(saved)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["package_version"] == __version__
    assert manifest["base_model"] == {
        "model": tiny_model_dir,
        "fingerprint": fitted.policy_.spec.base_fingerprint,
    }
    assert manifest["fitted"]["n_samples_fit_"] == 24
    assert manifest["codec"]["class"] == "NormalizedCodec"


@pytest.mark.parametrize(
    ("params", "fit_on_names"),
    [({"number_format": "scientific"}, False), ({"rl_algorithm": None}, True)],
)
def test_round_trip_variants(tiny_model_dir, tmp_path, params, fit_on_names):
    X = np.random.default_rng(1).normal(size=(12, 2))
    y = X[:, 0] * 3
    if fit_on_names:
        X = pd.DataFrame(X, columns=["a", "b"])
    reg = LLMRegressor(
        model=tiny_model_dir, sft_epochs=1, n_samples=2, random_state=1, **params
    ).fit(X, y)
    reg.save(tmp_path / "m")
    loaded = LLMRegressor.load(tmp_path / "m")
    assert hasattr(loaded, "feature_names_in_") == fit_on_names
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))


def test_constant_target_round_trip(tiny_model_dir, tmp_path):
    X = np.zeros((4, 1))
    LLMRegressor(model=tiny_model_dir).fit(X, np.full(4, 2.5)).save(tmp_path)
    np.testing.assert_array_equal(LLMRegressor.load(tmp_path).predict(X), 2.5)


def test_saving_over_a_model_replaces_it(fitted, saved, tmp_path, data):
    X, _ = data
    folder = copy_folder(saved, tmp_path / "m")
    reg = copy.copy(fitted).set_params(predict_mode="greedy")
    reg.save(folder)
    assert LLMRegressor.load(folder).predict_mode == "greedy"
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST_FILE, WEIGHTS_FILE])


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [
        ("reward", lambda y_pred, y_true: -abs(y_pred - y_true), r"set_params\(reward='squared'\)"),
        ("random_state", np.random.RandomState(0), "set an int or None"),
    ],
)
def test_refuses_parameters_json_cannot_hold(fitted, tmp_path, param, value, match):
    reg = copy.copy(fitted).set_params(**{param: value})
    with pytest.raises(ValueError, match=match):
        reg.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_refuses_unknown_fitted_state(fitted, tmp_path):
    reg = copy.copy(fitted)
    reg.preprocessor_ = object()
    with pytest.raises(TypeError, match="preprocessor_"):
        reg.save(tmp_path)


def test_refuses_unfitted(tiny_model_dir, tmp_path):
    with pytest.raises(NotFittedError):
        LLMRegressor(model=tiny_model_dir).save(tmp_path)


def test_refuses_a_changed_base_model(saved, tmp_path):
    folder = copy_folder(saved, tmp_path / "m")
    fingerprint = "sha256:" + "0" * 64
    edit_manifest(folder, lambda m: m["policy"]["config"].update(base_fingerprint=fingerprint))
    # The fingerprint is checksummed too: verify=False gets past that to the base's own check.
    with pytest.raises(ValueError, match="differs from the one this estimator was fitted on"):
        LLMRegressor.load(folder, verify=False)


def _set(*keys, value):
    def edit(manifest):
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("format_version", value=FORMAT_VERSION + 1), "Upgrade llmregressor"),
        (_set("format_version", value="1"), "unknown model format version"),
        (_set("format", value="something-else"), "not an llmregressor model manifest"),
        (_set("params", "layers", value=3), "parameters this llmregressor .* does not know"),
        (_set("codec", "class", value="os.system"), "unknown codec class"),
        (_set("policy", "kind", value="pickle"), "unknown kind"),
        (lambda m: m.pop("fitted"), "incomplete or damaged"),
    ],
)
def test_refuses_bad_manifests(saved, tmp_path, edit, match):
    folder = copy_folder(saved, tmp_path / "m")
    edit_manifest(folder, edit)
    with pytest.raises(ModelFormatError, match=match):
        LLMRegressor.load(folder)


def test_reads_version_1_manifests_as_sentence_rows(saved, fitted, data, tmp_path):
    # Version 1 predates row_format: its models wrote "sentence" rows, whatever the
    # default is now.
    folder = copy_folder(saved, tmp_path / "m")

    def to_version_1(manifest):
        manifest["format_version"] = 1
        del manifest["params"]["row_format"], manifest["serializer"]["row_format"]

    edit_manifest(folder, to_version_1)
    with pytest.warns(UserWarning, match="version 1, which has no checksums"):
        loaded = LLMRegressor.load(folder)
    assert loaded.get_params()["row_format"] == "sentence"
    assert loaded.serializer_ == fitted.serializer_
    np.testing.assert_array_equal(loaded.predict(data[0]), fitted.predict(data[0]))


def test_refuses_folders_that_are_no_model(saved, tmp_path):
    with pytest.raises(ModelFormatError, match="has no llmregressor.json"):
        LLMRegressor.load(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelFormatError, match="cannot be read as JSON"):
        LLMRegressor.load(tmp_path)
    folder = copy_folder(saved, tmp_path / "m")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFormatError, match="incomplete or damaged"):
        LLMRegressor.load(folder)
    (folder / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match="does not match its checksum"):
        LLMRegressor.load(folder)
    with pytest.raises(ModelFormatError, match="incomplete or damaged"):
        LLMRegressor.load(folder, verify=False)


def test_a_gpu_fit_predicts_on_a_cpu_only_machine(fitted, saved, data, tmp_path):
    # A model whose fit ran with device="cuda" (the handle's record of it, as a GPU fit
    # leaves it) must fall back to the CPU here, with a warning.
    X, _ = data
    expected = fitted.predict(X)
    gpu_fit = copy.deepcopy(fitted)
    gpu_fit.policy_.device = "cuda"
    unpickled = pickle.loads(pickle.dumps(gpu_fit))
    with pytest.warns(UserWarning, match="CUDA is not available"):
        np.testing.assert_allclose(unpickled.predict(X), expected)
    folder = tmp_path / "gpu_model"
    gpu_fit.save(folder)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        loaded = LLMRegressor.load(folder)
    np.testing.assert_allclose(loaded.predict(X), expected)


def test_a_format_2_folder_loads_unverified_and_saves_as_format_3(
    saved, fitted, data, tiny_model_dir, tmp_path
):
    # A folder as llmregressor wrote it before checksums: format 2 and the fingerprint of
    # the base's config and output-embedding sum only.
    from llmregressor.backbones import legacy_fingerprint, load_pretrained

    X, _ = data
    folder = copy_folder(saved, tmp_path / "m")
    old = legacy_fingerprint(load_pretrained(tiny_model_dir)[0])

    def to_version_2(manifest, fingerprint=old):
        manifest.pop("checksums", None)
        manifest["format_version"] = 2
        manifest["base_model"]["fingerprint"] = fingerprint
        manifest["policy"]["config"]["base_fingerprint"] = fingerprint

    edit_manifest(folder, to_version_2)
    with pytest.warns(UserWarning) as caught:
        loaded = LLMRegressor.load(folder)
    messages = " | ".join(str(w.message) for w in caught)
    assert "version 2, which has no checksums" in messages
    assert "fingerprint of an older llmregressor" in messages
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))

    # Saved again, it gets checksums and a fingerprint of every weight, and loads quietly.
    loaded.save(tmp_path / "again")
    manifest = read_manifest(tmp_path / "again")
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["base_model"]["fingerprint"] == fitted.policy_.spec.base_fingerprint
    assert manifest["base_model"]["fingerprint"].startswith("sha256:")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LLMRegressor.load(tmp_path / "again")

    # An old fingerprint is still compared, with the old method.
    edit_manifest(folder, lambda m: to_version_2(m, "0" * 16))
    with pytest.raises(ValueError, match="differs from the one this estimator was fitted on"):
        LLMRegressor.load(folder)


# ------------------------------------------------------------- calibrated intervals
@pytest.fixture(scope="module")
def calibrated(houses, tiny_model_dir, tmp_path_factory):
    X, y = houses(50, missing=False, notes=False)
    # 40% of 50 rows: 20 calibration rows, the fewest that calibrate.
    reg = LLMRegressor(
        model=tiny_model_dir, sft_epochs=1, n_samples=4, validation_fraction=0.4, random_state=0
    ).fit(X, y)
    folder = tmp_path_factory.mktemp("calibrated") / "model"
    reg.save(folder)
    return reg, folder, X


def resign(manifest):
    """Rewrite the fitted checksum after an edit, as an llmregressor writing that would."""
    from llmregressor.persistence import _fitted_checksum

    manifest["checksums"]["fitted"] = _fitted_checksum(manifest)


def test_round_trip_keeps_calibrated_intervals_exactly(calibrated):
    reg, folder, X = calibrated
    # The 20 held-out rows, then (the correction kept) the 30 trained on, decoded again.
    assert reg.calibration_.n_rows == 50
    loaded = LLMRegressor.load(folder)
    np.testing.assert_array_equal(loaded.calibration_.draws, reg.calibration_.draws)
    np.testing.assert_array_equal(loaded.calibration_.targets, reg.calibration_.targets)
    assert loaded.calibration_.n_samples == 4
    for coverage in (0.5, 0.9):
        np.testing.assert_array_equal(
            loaded.predict_interval(X, coverage), reg.predict_interval(X, coverage)
        )
    manifest = read_manifest(folder)
    assert manifest["format_version"] == FORMAT_VERSION == 3
    # A model without calibration saves null, and loads back without it, quietly.
    reg = copy.copy(reg)
    reg.calibration_ = None
    reg.save(folder.parent / "none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert LLMRegressor.load(folder.parent / "none").calibration_ is None


def test_a_folder_from_before_calibration_loads_with_raw_intervals(calibrated, tmp_path):
    reg, folder, X = calibrated
    old = copy_folder(folder, tmp_path / "m")

    def drop_calibration(manifest):
        del manifest["fitted"]["calibration_"]
        resign(manifest)

    edit_manifest(old, drop_calibration)
    loaded = LLMRegressor.load(old)
    assert not hasattr(loaded, "calibration_")
    with pytest.warns(UserWarning, match="fitted by an llmregressor without calibrated"):
        intervals = loaded.predict_interval(X[:5])
    np.testing.assert_array_equal(intervals, reg.predict_interval(X[:5], calibrated=False))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("fitted", "calibration_", "n_samples", value=0), "n_samples=0"),
        (_set("fitted", "calibration_", "n_samples", value=5), "damaged calibration"),
        (_set("fitted", "calibration_", "targets", value=[1.0]), "damaged calibration"),
        (_set("fitted", "calibration_", "draws", value=[["x"] * 4] * 20), "damaged calibration"),
        (lambda m: m["fitted"]["calibration_"].pop("draws"), "incomplete or damaged"),
    ],
)
def test_refuses_a_damaged_calibration(calibrated, tmp_path, edit, match):
    _, folder, _ = calibrated
    damaged = copy_folder(folder, tmp_path / "m")
    edit_manifest(damaged, lambda m: (edit(m), resign(m)))
    with pytest.raises(ModelFormatError, match=match):
        LLMRegressor.load(damaged)


def test_the_calibration_is_checksummed(calibrated, tmp_path):
    _, folder, _ = calibrated
    edited = copy_folder(folder, tmp_path / "m")
    edit_manifest(edited, lambda m: m["fitted"]["calibration_"]["targets"].reverse())
    with pytest.raises(ModelFormatError, match="does not match its checksum"):
        LLMRegressor.load(edited)
