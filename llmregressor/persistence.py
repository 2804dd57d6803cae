"""Save a fitted :class:`~llmregressor.LLMRegressor` to a folder and load it back, without pickle.

A model folder holds two files:

``llmregressor.json``
    The manifest: format name and version, package version, the base model's identity
    (``model`` source and fingerprint), the estimator's parameters, its fitted attributes
    (``n_features_in_``, ``feature_names_in_``, ``n_samples_fit_``, ``history_``,
    ``fit_time_``, the fit's seed and ``calibration_``: the calibration rows' draws and
    targets, or null; with an anchor also ``residual_anchor_`` and ``residual_scale_``), the
    fitted codec (class, parameters, statistics), the row serializer's settings, the
    policy's kind and configuration, and with an anchor, an ``anchor`` section: the fitted
    :class:`~llmregressor.anchor.RidgeAnchor` of ``anchor="ridge"`` or ``"additive"`` as
    its function's weights, splines and embedding weights (see
    :meth:`~llmregressor.anchor.RidgeAnchor.to_json`; the base LM that embeds text cells
    is named there and reloaded), or the
    :class:`~llmregressor.kernel_anchor.KernelBlendAnchor` of ``anchor="additive_gp"`` as
    that ridge, the Gaussian process's training features, weights and kernel, and the
    share of each (:meth:`~llmregressor.kernel_anchor.KernelBlendAnchor.to_json`). An
    estimator of the user's as ``anchor`` has no pickle-free format: such a model is
    pickled (``joblib.dump``), and :func:`save_estimator` refuses it.
``policy.safetensors``
    The policy's trainable weights by name (for the LoRA backbone, the adapters).

Only JSON and safetensors are read, and classes are looked up in fixed tables, never
imported by name, so loading a folder cannot run code; the base model is loaded with
``trust_remote_code=False``, and one that ships its own code (``auto_map``) is refused.
The base model is not copied: it is loaded from the saved ``model`` source and must have
the saved fingerprint, a SHA-256 over its configuration and every weight.

The manifest ties itself to the weights: ``checksums`` holds the SHA-256 of
``policy.safetensors`` and one over the manifest's fitted sections (``fitted``, ``codec``,
``serializer``, ``policy``, the base fingerprint and ``anchor`` when there is one). Loading
refuses a mismatch unless ``verify=False``. Left out are what may be edited by hand: the
parameters (``set_params`` could change them as well; they are validated on load), the
versions, and where the base model is found and runs (``model``, ``device``: a moved base is
still identified by its fingerprint). The checksums detect damage and edits, not an
adversary, who could recompute them. Whatever ``verify`` says, loading refuses invalid
parameters, a codec that does not match the policy, non-finite codec statistics and weights
that lack, add or reshape a tensor, each with a message naming the folder and what is wrong.

Parameters must be JSON values (None, bool, int, float, str, lists of them). A callable
``reward`` is refused rather than saved as null: a loaded model would otherwise report
parameters it was not fitted with and fail at refit. Name a built-in reward before saving
(``reg.set_params(reward="squared")``; the reward only matters to ``fit``).

Versioning: :data:`FORMAT_VERSION` grows when the layout changes so that an older reader
would misread it. A reader loads every version up to its own and refuses newer ones with
a message naming both; the package version is recorded for the user's information.
The ``anchor`` section came without a new version: a reader that predates it refuses such
a folder anyway, for its parameter ``anchor``, which it does not know.
Folders of versions 1 and 2 have no checksums: they load without that verification, with
a warning, and their base fingerprint (configuration and output-embedding sum only) is
checked as such, with a warning too. Saving them again writes version 3.
``fitted.calibration_`` came within version 3: a folder without it loads without
calibration (its ``predict_interval`` warns and returns raw quantiles), and a reader
from before it ignores it, as it did not calibrate intervals anyway. Its ``center`` came
within version 3 too: a folder without it calibrated on quantiles, and only
``interval_calibration="every_row"`` writes ``"mean"``, a value a reader from before
``center`` refuses as an unknown parameter value rather than misreading the calibration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .anchor import ANCHORS, RidgeAnchor
from .backbone_protocol import BACKBONES, WeightsMismatchError
from .codecs import CODECS, NumberCodec
from .conformal import Calibration
from .engine import EXACT
from .fitted_policy import FittedPolicy
from .kernel_anchor import KernelBlendAnchor
from .params import validate_codec_params, validate_params
from .serialize import RowSerializer

if TYPE_CHECKING:  # the estimator imports this module; it is never imported from here
    from .estimator import LLMRegressor

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "WEIGHTS_FILE",
    "ModelFormatError",
    "load_estimator",
    "read_manifest",
    "save_estimator",
    "saved_params",
]

FORMAT_NAME = "llmregressor-model"
# 2: the row serializer and the parameters gained ``row_format`` (version 1 wrote
# "sentence" rows, which a reader fills in for it).
# 3: ``checksums`` of the weights and the fitted sections; the base fingerprint hashes
# every weight (older folders load unverified, with a warning).
FORMAT_VERSION = 3
_CHECKSUMS_SINCE = 3
MANIFEST_FILE = "llmregressor.json"
WEIGHTS_FILE = "policy.safetensors"

# Classes a manifest may name; anything else is refused instead of imported.
_CODECS: dict[str, type[NumberCodec]] = {c.__name__: c for c in CODECS.values()}

# How a model folder names the class of each named anchor: "ridge" for every RidgeAnchor
# (anchor="ridge" and "additive"), "additive_gp" for the blend with a Gaussian process.
_ANCHOR_KINDS = {RidgeAnchor: "ridge", KernelBlendAnchor: "additive_gp"}
_ANCHOR_CLASSES = {kind: cls for cls, kind in _ANCHOR_KINDS.items()}

# Fitted attributes stored as plain JSON values (feature_names_in_ only exists for named
# columns); codec_, serializer_, policy_ and seed_ have their own entries.
# Each saved when the model has it (residual_anchor_ and residual_scale_ only with an
# anchor; a folder written before residual_scale_ existed adds the whole residual).
_FITTED_JSON = (
    "n_features_in_",
    "feature_names_in_",
    "n_samples_fit_",
    "history_",
    "fit_time_",
    "residual_anchor_",
    "residual_scale_",
)
_KNOWN_STATE = frozenset(
    (*_FITTED_JSON, "codec_", "serializer_", "policy_", "seed_", "anchor_", "calibration_")
)

_SCALARS = (str, bool, int, float, type(None))


class ModelFormatError(ValueError):
    """A folder that is not a model folder this version of llmregressor can read."""


# ------------------------------------------------------------------------------- save
def save_estimator(estimator: LLMRegressor, path: str | os.PathLike) -> None:
    """Write a fitted estimator to the folder ``path`` (see the module docstring).

    Parameters
    ----------
    estimator : LLMRegressor
        A fitted estimator.
    path : str or path-like
        Folder to write, created if missing; earlier model files in it are replaced.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If a parameter is not a JSON value (a callable ``reward``, a ``RandomState``).
    TypeError
        If the estimator carries fitted state this format does not know how to store
        (an estimator of the user's as ``anchor``, the ``mlp-decoder``'s preprocessor).
    """
    check_is_fitted(estimator)
    anchor = _anchor_to_json(estimator)
    # What load would refuse is not written.
    validate_params(estimator.get_params(deep=False))
    fitted_policy = estimator.policy_
    # Raises for a backbone kind without a pickle-free format, before anything is written.
    policy_config = fitted_policy.config()
    unknown = sorted(
        name
        for name in vars(estimator)
        if name.endswith("_") and not name.startswith("__") and name not in _KNOWN_STATE
    )
    if unknown:
        raise TypeError(
            f"The save format does not know the fitted attributes {unknown}; saving would lose "
            "them. Teach llmregressor.persistence to store them."
        )
    # Build everything before writing, so a refused save leaves no files behind.
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "estimator": type(estimator).__name__,
        "base_model": {
            "model": policy_config["model"],
            "fingerprint": policy_config["base_fingerprint"],
        },
        "params": {
            name: _param_to_json(name, value)
            for name, value in estimator.get_params(deep=False).items()
        },
        "fitted": {
            **{
                name: _fitted_to_json(getattr(estimator, name))
                for name in _FITTED_JSON
                if hasattr(estimator, name)
            },
            "seed": estimator.seed_,
            **(
                {"calibration_": _calibration_to_json(estimator.calibration_)}
                if hasattr(estimator, "calibration_")
                else {}
            ),
        },
        "codec": _codec_to_json(estimator.codec_),
        "serializer": dataclasses.asdict(estimator.serializer_),
        "policy": {"kind": fitted_policy.kind, "config": policy_config},
    }
    # Without an anchor the manifest is the one earlier versions wrote.
    if anchor is not None:
        manifest["anchor"] = anchor
    weights = {
        name: np.ascontiguousarray(w) for name, w in fitted_policy.trainable_weights().items()
    }
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}
    weights_bytes = safetensors.numpy.save(weights, metadata)
    # Checksummed as a reader will see it: parsed back from JSON.
    parsed = json.loads(json.dumps(manifest, default=_json_default))
    manifest["checksums"] = {
        "algorithm": "sha256",
        "weights": _sha256(weights_bytes),
        "fitted": _fitted_checksum(parsed),
    }
    text = json.dumps(manifest, indent=2, default=_json_default)

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / WEIGHTS_FILE, lambda tmp: Path(tmp).write_bytes(weights_bytes))
    # The manifest goes last: a folder with a manifest always has its weights.
    _write_atomic(folder / MANIFEST_FILE, lambda tmp: Path(tmp).write_text(text, "utf-8"))


def _write_atomic(target: Path, write) -> None:
    """Write through a temporary sibling and rename, so a crash leaves no half file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fitted_checksum(manifest: dict) -> str:
    """SHA-256 of the manifest's fitted sections, in a canonical JSON form."""
    policy = manifest["policy"]
    # Where the base model is found and runs may change; its fingerprint may not.
    config = {k: v for k, v in policy["config"].items() if k not in ("model", "device")}
    sections = {
        "fitted": manifest["fitted"],
        "codec": manifest["codec"],
        "serializer": manifest["serializer"],
        "policy": {**policy, "config": config},
        "base_fingerprint": manifest["base_model"]["fingerprint"],
    }
    # Only present with an anchor, so that the checksums of other folders stay as they were.
    if "anchor" in manifest:
        sections["anchor"] = manifest["anchor"]
    text = json.dumps(sections, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _anchor_to_json(estimator: LLMRegressor) -> dict | None:
    """Return the ``anchor`` section of a fitted estimator's manifest (None without one)."""
    anchor = getattr(estimator, "anchor_", None)
    if anchor is None:
        return None
    kind = _ANCHOR_KINDS.get(type(anchor))
    if kind is None or not isinstance(estimator.anchor, str | None):
        raise TypeError(
            f"Cannot save a model whose anchor is an estimator ({type(anchor).__name__}): a "
            f"model folder stores only the named anchors ({', '.join(map(repr, ANCHORS))}), "
            "without pickle. Pickle it instead (joblib.dump(reg, 'model.joblib'), read back "
            "with joblib.load), or fit with a named anchor."
        )
    return {"kind": kind, "state": anchor.to_json()}


def _param_to_json(name: str, value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
        # JSON has no tuple; tag it so get_params() round-trips exactly.
        return {"tuple": list(value)} if isinstance(value, tuple) else list(value)
    if isinstance(value, os.PathLike):
        # A folder (checkpoint_dir), tagged so that it loads back as a Path.
        return {"path": os.fspath(value)}
    if name == "reward" and callable(value):
        hint = (
            "A callable cannot be stored without pickle, and loading must never run code. The "
            "reward only matters to fit: to save this fitted model, name a built-in reward "
            "first, e.g. reg.set_params(reward='squared').save(path); a refit of the loaded "
            "model then uses that reward."
        )
    elif name == "callbacks":
        hint = (
            "Callbacks only observe fit and cannot be stored without pickle: to save this "
            "fitted model, drop them first, e.g. reg.set_params(callbacks=None).save(path)."
        )
    elif name == "anchor":
        hint = (
            "An estimator as anchor cannot be stored without pickle: pickle the model instead "
            "(joblib.dump), or fit with a named anchor ('ridge', 'additive'), which a model "
            "folder stores."
        )
    elif isinstance(value, np.random.RandomState):
        hint = (
            "The fit's own seed is saved, so predictions do not depend on it: set an int "
            f"or None first, e.g. reg.set_params({name}=0)."
        )
    else:
        hint = f"Set {name} to such a value before saving."
    raise ValueError(
        f"Cannot save the parameter {name}={value!r}: only None, bool, int, float, str and "
        f"lists of them are saved (as JSON). {hint}"
    )


def _param_from_json(value: object) -> object:
    if isinstance(value, dict):
        return Path(value["path"]) if "path" in value else tuple(value["tuple"])
    return value


def _fitted_to_json(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _json_default(value: object) -> object:
    # History records may hold numpy scalars; they are plain numbers in JSON.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} values cannot be saved as JSON: {value!r}")


def _calibration_to_json(calibration: Calibration | None) -> dict | None:
    # JSON writes floats by repr, which reads back to the same float: intervals computed
    # from a loaded calibration equal the saved model's exactly.
    if calibration is None:
        return None
    return {
        "n_samples": calibration.n_samples,
        "center": calibration.center,
        "draws": calibration.draws.tolist(),
        "targets": calibration.targets.tolist(),
    }


def _calibration_from_json(data: dict | None, folder: Path) -> Calibration | None:
    if data is None:
        return None
    n_samples = data["n_samples"]
    if n_samples != EXACT and (
        isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1
    ):
        raise ModelFormatError(
            f"{folder} holds a calibration made with n_samples={n_samples!r}, neither a "
            f"positive int nor {EXACT!r}"
        )
    try:
        # Folders saved before ``center`` existed calibrated on quantiles.
        center = data.get("center", "quantiles")
        return Calibration(np.array(data["draws"]), np.array(data["targets"]), n_samples, center)
    except (TypeError, ValueError) as err:
        raise ModelFormatError(f"{folder} holds a damaged calibration: {err}") from err


def _codec_to_json(codec: NumberCodec) -> dict:
    name = type(codec).__name__
    if _CODECS.get(name) is not type(codec):
        raise TypeError(f"Cannot save a codec of class {name}; known: {sorted(_CODECS)}")
    init = inspect.signature(type(codec)).parameters
    return {
        "class": name,
        "params": {p: getattr(codec, p) for p in init},
        # Statistics learned by fit follow scikit-learn's trailing-underscore convention.
        "fitted": {
            k: v for k, v in vars(codec).items() if k.endswith("_") and not k.startswith("_")
        },
    }


# ------------------------------------------------------------------------------- load
def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check a model folder's manifest, without loading any weights.

    Parameters
    ----------
    path : str or path-like
        Folder written by :func:`save_estimator`.

    Returns
    -------
    manifest : dict
        The parsed ``llmregressor.json``.

    Raises
    ------
    ModelFormatError
        If the folder holds no manifest, it is no llmregressor manifest, or its format
        version is unknown or newer than :data:`FORMAT_VERSION`.
    """
    folder = Path(path)
    file = folder / MANIFEST_FILE
    if not file.is_file():
        raise ModelFormatError(
            f"{folder} is not a model folder: it has no {MANIFEST_FILE} (write one with "
            "LLMRegressor.save)"
        )
    try:
        manifest = json.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"{file} cannot be read as JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{file} is not an llmregressor model manifest")
    version = manifest.get("format_version")
    written_by = f"llmregressor {manifest.get('package_version', '(unknown version)')}"
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFormatError(
            f"{folder} has the unknown model format version {version!r} (written by "
            f"{written_by}); this llmregressor {__version__} reads versions 1 to "
            f"{FORMAT_VERSION}"
        )
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{folder} was written by {written_by} in model format version {version}; this "
            f"llmregressor {__version__} reads versions up to {FORMAT_VERSION}. Upgrade "
            "llmregressor to load it."
        )
    if version == 1:
        # A damaged section is left as it is, for load_estimator to name.
        for section in ("params", "serializer"):
            if isinstance(manifest.get(section), dict):
                manifest[section].setdefault("row_format", "sentence")
    return manifest


def saved_params(manifest: dict) -> dict:
    """Return the estimator parameters a manifest records, as ``get_params()`` gave them.

    Parameters
    ----------
    manifest : dict
        From :func:`read_manifest`.

    Returns
    -------
    params : dict
    """
    return {name: _param_from_json(value) for name, value in manifest["params"].items()}


def load_estimator(
    cls: type[LLMRegressor], path: str | os.PathLike, verify: bool = True
) -> LLMRegressor:
    """Rebuild an estimator saved by :func:`save_estimator`.

    The base model is loaded right away, so a base that differs from the one the model
    was fitted on, or weights that do not fit it, are refused here rather than at the
    first prediction.

    Parameters
    ----------
    cls : type
        The estimator class (:class:`~llmregressor.LLMRegressor`).
    path : str or path-like
        Folder written by :func:`save_estimator`.
    verify : bool, default=True
        Compare the weights and the manifest's fitted sections with their checksums
        (folders of format version 3 on). False loads an edited folder; every other
        check still runs.

    Returns
    -------
    estimator : LLMRegressor
        Fitted; predicts exactly as the saved estimator did.

    Raises
    ------
    ModelFormatError
        If the folder is unreadable, of another format version, inconsistent, fails its
        checksums, holds invalid parameters or weights that do not fit the model.
    ValueError
        If the base model cannot be loaded or its fingerprint differs from the saved one.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    try:
        checksums = (
            manifest["checksums"] if manifest["format_version"] >= _CHECKSUMS_SINCE else None
        )
        params = saved_params(manifest)
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise ModelFormatError(
                f"{folder} was saved with parameters this llmregressor {__version__} does not "
                f"know: {unknown} (written by llmregressor {manifest['package_version']})"
            )
        estimator = cls(**params)
        try:
            validate_params(estimator.get_params(deep=False))
        except (TypeError, ValueError) as err:
            raise ModelFormatError(f"{folder} holds an invalid parameter: {err}") from err
        fitted = manifest["fitted"]
        for name in _FITTED_JSON:
            if name in fitted:
                setattr(estimator, name, fitted[name])
        if "feature_names_in_" in fitted:
            # scikit-learn keeps feature names as an object array.
            estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        estimator.seed_ = int(fitted["seed"])
        if "calibration_" in fitted:
            estimator.calibration_ = _calibration_from_json(fitted["calibration_"], folder)
        policy = manifest["policy"]
        if policy["kind"] not in BACKBONES:
            raise ModelFormatError(
                f"{folder} holds a policy of the unknown kind {policy['kind']!r}; this "
                f"llmregressor {__version__} knows {sorted(BACKBONES)}"
            )
        estimator.codec_ = _codec_from_json(manifest["codec"], policy["config"], folder)
        estimator.serializer_ = RowSerializer(**manifest["serializer"])
        if verify and checksums is not None and checksums["fitted"] != _fitted_checksum(manifest):
            raise ModelFormatError(
                f"{folder / MANIFEST_FILE} does not match its checksum: its fitted sections "
                "(fitted, codec, serializer, policy, anchor) were changed after saving. Restore "
                "the saved file or refit; LLMRegressor.load(path, verify=False) loads it as it is."
            )
        has_anchor = "anchor" in manifest
        if estimator.serializer_.estimate != has_anchor:
            raise ModelFormatError(
                f"{folder} holds prompts {'with' if estimator.serializer_.estimate else 'without'}"
                f" the anchor's estimate, but {'an' if has_anchor else 'no'} anchor"
            )
        if has_anchor:
            estimator.anchor_ = _anchor_from_json(manifest["anchor"], folder)
        residual = fitted.get("residual_anchor_", False)
        if not isinstance(residual, bool) or (residual and not has_anchor):
            raise ModelFormatError(
                f"{folder} holds residual_anchor_={residual!r}: it must be true or false, "
                "and true only with an anchor"
            )
        scale = fitted.get("residual_scale_", 1.0)
        if (
            isinstance(scale, bool)
            or not isinstance(scale, int | float)
            or not 0 <= scale <= 1
            or ("residual_scale_" in fitted and not has_anchor)
        ):
            raise ModelFormatError(
                f"{folder} holds residual_scale_={scale!r}: it must be a number in [0, 1], "
                "and only with an anchor"
            )
        data = (folder / WEIGHTS_FILE).read_bytes()
        if verify and checksums is not None and checksums["weights"] != _sha256(data):
            raise ModelFormatError(
                f"{folder / WEIGHTS_FILE} does not match its checksum in {MANIFEST_FILE}: the "
                "weights were damaged or replaced after saving. Restore the saved file or refit."
            )
        weights = safetensors.numpy.load(data)
        estimator.policy_ = FittedPolicy.from_config(
            policy["kind"], policy["config"], weights, estimator.serializer_
        )
    except ModelFormatError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, OSError, SafetensorError) as err:
        raise ModelFormatError(f"{folder} holds an incomplete or damaged model: {err!r}") from err
    if verify and checksums is None:
        warnings.warn(
            f"{folder} was saved in model format version {manifest['format_version']}, which "
            "has no checksums: its weights and fitted statistics are not verified. Save it "
            "again to add them.",
            UserWarning,
            stacklevel=3,
        )
    # Build now: this loads the base model, checks its fingerprint and loads the weights.
    try:
        _ = estimator.policy_.policy
    except WeightsMismatchError as err:
        raise ModelFormatError(
            f"{folder / WEIGHTS_FILE} does not fit the model: {err}. Restore the saved file "
            "or refit."
        ) from err
    return estimator


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _anchor_from_json(data: dict, folder: Path) -> RidgeAnchor | KernelBlendAnchor:
    """Rebuild the fitted anchor of a manifest's ``anchor`` section."""
    if data["kind"] not in _ANCHOR_CLASSES:
        raise ModelFormatError(
            f"{folder} holds an anchor of the unknown kind {data['kind']!r}; this llmregressor "
            f"{__version__} knows {sorted(_ANCHOR_CLASSES)}"
        )
    try:
        return _ANCHOR_CLASSES[data["kind"]].from_json(data["state"])
    except ValueError as err:
        raise ModelFormatError(f"{folder} holds a damaged anchor: {err}") from err


def _codec_from_json(data: dict, policy_config: dict, folder: Path) -> NumberCodec:
    """Rebuild the fitted codec and check it against the policy it decodes for."""
    codec_cls = _CODECS.get(data["class"])
    if codec_cls is None:
        raise ModelFormatError(
            f"{folder} holds the unknown codec class {data['class']!r}; known: {sorted(_CODECS)}"
        )
    validate_codec_params(data["params"])
    codec = codec_cls(**data["params"])
    # The statistics a fit sets, learned from a stand-in target.
    expected = _codec_to_json(codec_cls(**data["params"]).fit(np.array([0.0, 1.0])))["fitted"]
    saved = data["fitted"]
    if set(saved) != set(expected):
        raise ModelFormatError(
            f"{folder} holds a {data['class']} with the fitted statistics {sorted(saved)}; "
            f"it needs {sorted(expected)}"
        )
    for name, value in saved.items():
        if isinstance(expected[name], bool):
            valid = isinstance(value, bool)
        else:  # a float statistic; JSON may write a whole one as an int
            valid = isinstance(value, int | float) and not isinstance(value, bool)
            valid = valid and bool(np.isfinite(value))
        if not valid:
            raise ModelFormatError(
                f"{folder} holds a codec whose statistic {name} is {value!r}, not a finite "
                f"{type(expected[name]).__name__}"
            )
        setattr(codec, name, value)
    if not codec.scale_ > 0:
        raise ModelFormatError(f"{folder} holds a codec whose scale_ {codec.scale_} is not > 0")
    allowed = np.asarray(policy_config["allowed"], dtype=bool)
    if tuple(policy_config["symbols"]) != codec.symbols or not np.array_equal(
        allowed, codec.allowed_mask()
    ):
        raise ModelFormatError(
            f"{folder} holds a codec that does not match its policy: the codec writes "
            f"{codec.length} symbols from {''.join(codec.symbols)!r}, the policy decodes "
            f"{len(allowed)} from {''.join(policy_config['symbols'])!r}"
        )
    return codec
