"""Save a fitted :class:`~llmregressor.LLMRegressor` to a folder and load it back, without pickle.

A model folder holds two files:

``llmregressor.json``
    The manifest: format name and version, package version, the base model's identity
    (``model`` source and fingerprint), the estimator's parameters, its fitted attributes
    (``n_features_in_``, ``feature_names_in_``, ``n_samples_fit_``, ``history_``,
    ``fit_time_`` and the fit's seed), the fitted codec (class, parameters, statistics), the
    row serializer's settings, and the policy's kind and configuration.
``policy.safetensors``
    The policy's trainable weights by name (for the LoRA backbone, the adapters).

Only JSON and safetensors are read, and classes are looked up in fixed tables, never
imported by name, so loading a folder cannot run code. The base model is not copied: it is
loaded from the saved ``model`` source and must have the saved fingerprint.

Parameters must be JSON values (None, bool, int, float, str, lists of them). A callable
``reward`` is refused rather than saved as null: a loaded model would otherwise report
parameters it was not fitted with and fail at refit. Name a built-in reward before saving
(``reg.set_params(reward="squared")``; the reward only matters to ``fit``).

Versioning: :data:`FORMAT_VERSION` grows when the layout changes so that an older reader
would misread it. A reader loads every version up to its own and refuses newer ones with
a message naming both; the package version is recorded for the user's information.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .backbone_protocol import BACKBONES
from .codecs import CODECS, NumberCodec
from .fitted_policy import FittedPolicy
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
FORMAT_VERSION = 2
MANIFEST_FILE = "llmregressor.json"
WEIGHTS_FILE = "policy.safetensors"

# Classes a manifest may name (the registered codecs, by class name); anything else is
# refused instead of imported. Policy kinds are the registered backbones.
_CODECS: dict[str, type[NumberCodec]] = {c.__name__: c for c in CODECS.values()}

# Fitted attributes stored as plain JSON values (feature_names_in_ only exists for named
# columns); codec_, serializer_, policy_ and seed_ have their own entries.
_FITTED_JSON = ("n_features_in_", "feature_names_in_", "n_samples_fit_", "history_", "fit_time_")
_KNOWN_STATE = frozenset((*_FITTED_JSON, "codec_", "serializer_", "policy_", "seed_"))

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
        If the estimator carries fitted state this format does not know how to store.
    """
    check_is_fitted(estimator)
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
        },
        "codec": _codec_to_json(estimator.codec_),
        "serializer": dataclasses.asdict(estimator.serializer_),
        "policy": {"kind": fitted_policy.kind, "config": policy_config},
    }
    text = json.dumps(manifest, indent=2, default=_json_default)
    weights = {
        name: np.ascontiguousarray(w) for name, w in fitted_policy.trainable_weights().items()
    }

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)}
    _write_atomic(
        folder / WEIGHTS_FILE, lambda tmp: safetensors.numpy.save_file(weights, tmp, metadata)
    )
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


def load_estimator(cls: type[LLMRegressor], path: str | os.PathLike) -> LLMRegressor:
    """Rebuild an estimator saved by :func:`save_estimator`.

    The base model is loaded right away, so a base that differs from the one the model
    was fitted on is refused here rather than at the first prediction.

    Parameters
    ----------
    cls : type
        The estimator class (:class:`~llmregressor.LLMRegressor`).
    path : str or path-like
        Folder written by :func:`save_estimator`.

    Returns
    -------
    estimator : LLMRegressor
        Fitted; predicts exactly as the saved estimator did.

    Raises
    ------
    ModelFormatError
        If the folder is unreadable, of another format version, or inconsistent.
    ValueError
        If the base model cannot be loaded or its fingerprint differs from the saved one.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    try:
        params = saved_params(manifest)
        unknown = sorted(set(params) - set(cls().get_params()))
        if unknown:
            raise ModelFormatError(
                f"{folder} was saved with parameters this llmregressor {__version__} does not "
                f"know: {unknown} (written by llmregressor {manifest['package_version']})"
            )
        estimator = cls(**params)
        fitted = manifest["fitted"]
        for name in _FITTED_JSON:
            if name in fitted:
                setattr(estimator, name, fitted[name])
        if "feature_names_in_" in fitted:
            # scikit-learn keeps feature names as an object array.
            estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        estimator.seed_ = int(fitted["seed"])
        estimator.codec_ = _codec_from_json(manifest["codec"])
        estimator.serializer_ = RowSerializer(**manifest["serializer"])
        policy = manifest["policy"]
        if policy["kind"] not in BACKBONES:
            raise ModelFormatError(
                f"{folder} holds a policy of the unknown kind {policy['kind']!r}; this "
                f"llmregressor {__version__} knows {sorted(BACKBONES)}"
            )
        weights = safetensors.numpy.load_file(folder / WEIGHTS_FILE)
        estimator.policy_ = FittedPolicy.from_config(
            policy["kind"], policy["config"], weights, estimator.serializer_
        )
    except (KeyError, TypeError, OSError, SafetensorError) as err:
        raise ModelFormatError(f"{folder} holds an incomplete or damaged model: {err!r}") from err
    # Build now: this loads the base model and checks its fingerprint.
    _ = estimator.policy_.policy
    return estimator


def _codec_from_json(data: dict) -> NumberCodec:
    codec_cls = _CODECS.get(data["class"])
    if codec_cls is None:
        raise ModelFormatError(f"unknown codec class {data['class']!r}; known: {sorted(_CODECS)}")
    codec = codec_cls(**data["params"])
    for name, value in data["fitted"].items():
        setattr(codec, name, value)
    return codec
