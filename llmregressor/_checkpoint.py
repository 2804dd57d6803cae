"""Per-epoch checkpoints of a fit, so that an interrupted fit resumes where it stopped.

Layout of a ``checkpoint_dir``:

``fit.json``
    Format version, what identifies the fit (the parameters that shape the result, the
    column names, a hash of the training rows and targets, the base model's fingerprint,
    and with an anchor a hash of its out-of-fold estimates) and the fit's seed.
``fit.lock``
    Present while a fit uses the folder: the pid, host and start time of that fit
    (see :class:`~llmregressor._locks.FolderLock`). A second fit on the folder is refused.
``sft-epoch-0002/``, ``sft-epoch-0003/``, ``rl-epoch-0001/``
    The state after each of the two latest completed epochs of each phase:

    - ``adapter.safetensors``: adapter weights;
    - ``best.safetensors``: adapter weights of the best validation epoch, when validating;
    - ``optimizer.pt``: optimizer and learning-rate scheduler state and the torch RNG state
      of every process (``torch.save``; read back with ``weights_only=True``);
    - ``state.json``: epoch, whether the phase finished, its history, the numpy RNG state
      and the early-stopping bookkeeping;
    - ``manifest.json``: the SHA-256 of each of those files.

An epoch folder is written under a temporary name and renamed once complete, and of a
phase's earlier epochs only the one before is kept, so a process killed at any moment
leaves a complete checkpoint behind, and one damaged later (a truncated or altered file)
still has its predecessor. Resuming checks every file against the manifest and continues
from the latest intact epoch, with a warning when it skips a damaged one. Only rank 0
writes; every process reads, so under several nodes the folder must be on a file system
they share.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from ._distributed import DataParallel
from ._locks import CheckpointInUseError, FolderLock
from ._training import BestState
from .backbone_protocol import WeightsMismatchError
from .backbones import LanguageModelBackbone, is_legacy_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["FitCheckpoints", "PhaseCheckpoint", "Resumed", "fit_identity"]

# 2: epoch folders have a manifest of checksums; fit.json has the column names.
FORMAT_VERSION = 2
FIT_FILE = "fit.json"
MANIFEST_FILE = "manifest.json"
_REQUIRED_FILES = ("adapter.safetensors", "optimizer.pt", "state.json")
_FIT_KEYS = ("params", "feature_names", "data", "seed", "base_fingerprint")
_EPOCH_FOLDER = re.compile(r"^(?P<phase>[a-z]+)-epoch-(?P<epoch>\d+)$")
# In training order: a phase resumes only after the earlier ones finished.
PHASES = ("sft", "rl")
# The latest epoch of a phase and the one before: a fallback when the latest is damaged.
KEPT_EPOCHS = 2


def _describe(value: object) -> object:
    """Describe a parameter value as JSON, equal for equal settings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        # numpy scalars (a grid from np.arange) must compare by value, not by type name.
        return _describe(value.item())
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if hasattr(value, "get_params") and not isinstance(value, type):
        # An estimator (the anchor): its class and its parameters, nested ones included.
        params = {k: _describe(v) for k, v in value.get_params(deep=False).items()}
        return {"estimator": type(value).__qualname__, "params": params}
    if isinstance(value, Callable):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}"
    # A RandomState instance: the seed it gave is stored in the checkpoint itself.
    return type(value).__name__


def _default_identity_params() -> dict:
    """JSON descriptions of every estimator parameter's default, as :func:`fit_identity`."""
    from .estimator import LLMRegressor  # here, not on top: the estimator imports this module

    return {k: _describe(v) for k, v in LLMRegressor().get_params(deep=False).items()}


def fit_identity(
    params: dict, X: np.ndarray, y: np.ndarray, feature_names: Sequence[str] | None = None
) -> dict:
    """Describe what a checkpoint must match to be resumed by a fit.

    A fit sees the validated table, its column names and its parameters, so together
    they decide the result. A data frame's dtypes and categories matter through the
    validated table: an integer column of a mixed frame keeps its integers, a categorical
    column becomes its values (unused categories change nothing).

    Parameters
    ----------
    params : dict
        The parameters that shape the result: the estimator's ``get_params(deep=False)``
        without those a fit may resume with changed (``llmregressor.params.RESUMABLE``).
    X : ndarray of shape (n_rows, n_features)
        The validated training rows (numbers, strings, missing values).
    y : ndarray
        The training targets.
    feature_names : sequence of str, optional
        The column names (``feature_names_in_``), which prompts are written with; None
        for an array without names.

    Returns
    -------
    identity : dict
        ``params`` (JSON descriptions of the result-shaping parameters),
        ``feature_names`` and ``data`` (a SHA-256 of the rows and targets).
    """
    digest = hashlib.sha256()
    # The array's dtype besides its values: an int64 table and a float64 one hold equal
    # numbers that prompts may write differently.
    digest.update(str(X.dtype).encode("utf-8") + b"\0")
    # repr() writes floats exactly and tells strings, numbers and None apart. Row by row,
    # so that no Python copy of the whole table is ever built.
    for row in X:
        digest.update(repr(row.tolist()).encode("utf-8") + b"\0")
    digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    described = {k: _describe(v) for k, v in params.items()}
    names = None if feature_names is None else [str(name) for name in feature_names]
    return {"params": described, "feature_names": names, "data": digest.hexdigest()}


@dataclass
class Resumed:
    """Where a phase continues after loading its checkpoint.

    Attributes
    ----------
    next_epoch : int
        First epoch still to run.
    history : list of dict
        The phase's history records so far.
    finished : bool
        Whether the phase had completed (all epochs run, or stopped early).
    """

    next_epoch: int
    history: list[dict]
    finished: bool


class FitCheckpoints:
    """A fit's checkpoint folder.

    :meth:`open` locks the folder for this fit (rank 0 holds the lock); :meth:`close`, or
    the end of a ``with`` block on the object, unlocks it.

    Parameters
    ----------
    folder : str or path-like
        The ``checkpoint_dir``.
    identity : dict
        From :func:`fit_identity`.
    parallel : DataParallel
        Rank 0 writes; every process reads.
    """

    def __init__(self, folder: str | os.PathLike, identity: dict, parallel: DataParallel):
        self.folder = Path(folder)
        self.identity = identity
        self.parallel = parallel
        self.resuming = False
        self._seed: int | None = None
        self._anchor: str | None = None
        self._saved: dict | None = None
        self._lock: FolderLock | None = None
        self._resume_points: dict[str, tuple[int, Path]] = {}

    def open(self, resume: bool, seed: int) -> int:
        """Lock the folder, then start a fresh checkpoint or check the existing one.

        Parameters
        ----------
        resume : bool
            Continue from the folder's checkpoint if it has one; otherwise (or when False)
            the folder's checkpoints are removed and the fit starts over.
        seed : int
            The fit's own seed.

        Returns
        -------
        seed : int
            The seed to fit with: the checkpointed fit's seed when resuming.

        Raises
        ------
        CheckpointInUseError
            If another fit that may still run holds the folder.
        ValueError
            If the checkpoint was written by a fit with other parameters, column names,
            data or another format, or if it is damaged beyond the last intact epoch.
        """
        self._lock_folder()
        try:
            self._saved = self._read_fit_file() if resume else None
            if self._saved is not None:
                self._check_identity(self._saved)
                self.resuming = True
            # Before the next step: only resuming processes take part in its collectives.
            _check_same_on_all(self.parallel, int(self.resuming), "whether a checkpoint exists")
            if self.resuming:
                seed = self._saved["seed"]
                self._choose_resume_points()
                logger.info("Resuming the fit checkpointed in %s", self.folder)
            elif resume:
                logger.info("No checkpoint in %s: the fit starts from the beginning", self.folder)
            if not self.resuming and self.parallel.is_main:
                self._clear()
            self.parallel.barrier()
        except BaseException:
            self.close()
            raise
        self._seed = seed
        return seed

    def close(self) -> None:
        """Unlock the folder (after the fit, or after a failed :meth:`open`)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> FitCheckpoints:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_anchor(self, estimates: np.ndarray) -> None:
        """Compare (resuming) or record (fresh fit) the anchor's out-of-fold estimates.

        Call it before :meth:`check_base_model`, which writes the record of a fresh fit.

        Raises
        ------
        ValueError
            If the checkpointed fit's estimates were others: an anchor whose fit is
            random gives other prompts at every fit.
        """
        digest = hashlib.sha256(np.ascontiguousarray(estimates, dtype=np.float64)).hexdigest()
        if not self.resuming:
            self._anchor = digest
        elif self._saved.get("anchor") != digest:
            raise ValueError(
                f"The checkpoint in {self.folder} was trained on other anchor estimates than "
                "the anchor gives now: resuming needs an anchor that fits the same way every "
                "time (fix its random_state). Set resume=False to start over."
            )

    def check_base_model(self, fingerprint: str | None) -> None:
        """Compare (resuming) or record (fresh fit) the base model's fingerprint.

        Raises
        ------
        ValueError
            If the checkpoint was trained on another base model.
        """
        if self.resuming:
            saved = self._saved["base_fingerprint"]
            if saved is not None and fingerprint is not None and is_legacy_fingerprint(saved):
                # Written before fingerprints hashed every weight: the two cannot be compared.
                raise ValueError(
                    f"The checkpoint in {self.folder} was written by an older llmregressor, "
                    "whose fingerprint of the base model cannot be compared with this one's. "
                    "Set resume=False to start over."
                )
            if saved != fingerprint:
                raise ValueError(
                    f"The checkpoint in {self.folder} was trained on another base model "
                    f"(fingerprint {saved}, now {fingerprint}); resume=True needs the same "
                    "base model. Set resume=False to start over."
                )
            return
        if self.parallel.is_main:
            record = {
                "format_version": FORMAT_VERSION,
                **self.identity,
                "seed": self._seed,
                "base_fingerprint": fingerprint,
                "anchor": self._anchor,
            }
            tmp = self.folder / f".{FIT_FILE}.tmp"
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
            os.replace(tmp, self.folder / FIT_FILE)
        self.parallel.barrier()

    def phase(self, name: str) -> PhaseCheckpoint:
        """Return the checkpoint of one training phase (``"sft"`` or ``"rl"``)."""
        return PhaseCheckpoint(self, name)

    def latest(self, phase: str) -> tuple[int, Path] | None:
        """Return the epoch and folder a resumed phase continues from, if any.

        That is the phase's latest intact epoch, chosen by :meth:`open`; None when the fit
        starts over or the phase starts from its beginning.
        """
        return self._resume_points.get(phase)

    def _lock_folder(self) -> None:
        error = None
        if self.parallel.is_main:
            try:
                if self.folder.exists() and not self.folder.is_dir():
                    raise NotADirectoryError(f"checkpoint_dir {self.folder} is not a folder")
                self.folder.mkdir(parents=True, exist_ok=True)
                self._lock = FolderLock.acquire(self.folder)
            except (OSError, CheckpointInUseError) as err:
                error = err
        # Every process must learn of rank 0's failure, or the others wait for it forever.
        if self.parallel.world_size > 1:
            failed = self.parallel.all_sum(np.array([float(error is not None)]))[0]
            if failed and error is None:
                raise CheckpointInUseError(f"Rank 0 could not lock {self.folder}; see its error.")
        if error is not None:
            raise error

    def _read_fit_file(self) -> dict | None:
        path = self.folder / FIT_FILE
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(_damaged(self.folder, f"{FIT_FILE} cannot be read ({err})")) from err
        if not isinstance(saved, dict):
            raise ValueError(_damaged(self.folder, f"{FIT_FILE} holds no fit description"))
        return saved

    def _check_identity(self, saved: dict) -> None:
        where = f"The checkpoint in {self.folder}"
        advice = "Set resume=False to start over, or choose another checkpoint_dir."
        if saved.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where} has format version {saved.get('format_version')!r}; this "
                f"llmregressor reads version {FORMAT_VERSION}. {advice}"
            )
        missing = [key for key in _FIT_KEYS if key not in saved]
        if missing:
            raise ValueError(_damaged(self.folder, f"{FIT_FILE} lacks {', '.join(missing)}"))
        params, old = self.identity["params"], saved["params"]
        # A parameter added after the checkpoint was written had its default then.
        old = {**{k: v for k, v in _default_identity_params().items() if k in params}, **old}
        changed = sorted(k for k in set(params) | set(old) if params.get(k) != old.get(k))
        if changed:
            details = ", ".join(f"{k}={old.get(k)!r} -> {params.get(k)!r}" for k in changed)
            raise ValueError(f"{where} was written with other parameters ({details}). {advice}")
        names = self.identity["feature_names"]
        if saved["feature_names"] != names:
            raise ValueError(
                f"{where} was written for other column names ({saved['feature_names']} -> "
                f"{names}); the names are part of every prompt. {advice}"
            )
        if saved["data"] != self.identity["data"]:
            raise ValueError(f"{where} was written for other training data (X or y). {advice}")

    def _choose_resume_points(self) -> None:
        """Pick each phase's latest intact epoch; remove damaged and unusable epochs.

        A phase continues only from an intact epoch; a later phase only once the earlier
        ones have an intact finished epoch (otherwise it reruns after them, and its
        folders are stale). With epoch folders but none intact, resuming is refused.
        """
        found = self._epoch_folders()
        damaged, stale = [], []
        blocked = False
        for phase in PHASES:
            if blocked:
                stale += [path for _, path in found.get(phase, [])]
                continue
            for epoch, path in found.get(phase, []):
                try:
                    state = _verified_state(path)
                except _Damaged as err:
                    damaged.append((path, str(err)))
                    continue
                self._resume_points[phase] = (epoch, path)
                blocked = not state.get("finished")
                break
            else:
                blocked = bool(found.get(phase))  # folders, none intact
        for phase in PHASES:
            point = self._resume_points.get(phase)
            _check_same_on_all(self.parallel, -1 if point is None else point[0], f"{phase} epoch")
        unusable = damaged + [(path, "after an unfinished phase") for path in stale]
        if unusable:
            listed = "; ".join(f"{path.name} ({reason})" for path, reason in unusable)
            if not self._resume_points:
                raise ValueError(_damaged(self.folder, f"no epoch is intact: {listed}"))
            phase = max(self._resume_points, key=PHASES.index)
            warnings.warn(
                f"The checkpoint in {self.folder} has epochs it cannot resume from: {listed}. "
                f"Resuming from {self._resume_points[phase][1].name}, the latest intact "
                "epoch; those are removed.",
                stacklevel=2,
            )
            if self.parallel.is_main:
                for path, _ in unusable:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()

    def _epoch_folders(self) -> dict[str, list[tuple[int, Path]]]:
        """Each phase's epoch folders, latest first."""
        found: dict[str, list[tuple[int, Path]]] = {}
        for path in self.folder.iterdir():
            if match := _EPOCH_FOLDER.match(path.name):
                found.setdefault(match["phase"], []).append((int(match["epoch"]), path))
        return {phase: sorted(folders, reverse=True) for phase, folders in found.items()}

    def _clear(self) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if _EPOCH_FOLDER.match(path.name) or path.name.endswith(".tmp"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        (self.folder / FIT_FILE).unlink(missing_ok=True)


class PhaseCheckpoint:
    """Save and restore one phase's training state at epoch ends.

    A training loop calls :meth:`attach` once, after building its optimizer, and
    :meth:`save` after every epoch.

    Parameters
    ----------
    fit : FitCheckpoints
        The fit's checkpoint folder.
    phase : str
        ``"sft"`` or ``"rl"``.
    """

    def __init__(self, fit: FitCheckpoints, phase: str) -> None:
        self.fit = fit
        self.phase = phase
        self._state: tuple | None = None

    def attach(
        self,
        backbone: LanguageModelBackbone,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        best: BestState,
        rng: np.random.Generator,
    ) -> Resumed | None:
        """Bind the phase's training state; when resuming, load the latest checkpoint into it.

        Returns
        -------
        resumed : Resumed or None
            None when the phase starts from its beginning.
        """
        self._state = (backbone, optimizer, scheduler, best, rng)
        latest = self.fit.latest(self.phase)
        if latest is None:
            return None
        folder = latest[1]
        # Read once and checked before use: the folder may have changed since open().
        try:
            files = _read_verified(folder)
        except _Damaged as err:
            raise ValueError(_damaged(self.fit.folder, f"{folder.name}: {err}")) from err
        state = json.loads(files["state.json"])
        try:
            backbone.load_adapter_state(safetensors.torch.load(files["adapter.safetensors"]))
        except WeightsMismatchError as err:
            raise ValueError(
                f"The checkpoint in {folder} does not fit this model: {err}. Set resume=False "
                "to start over."
            ) from err
        weights = None
        if "best.safetensors" in files:
            weights = safetensors.torch.load(files["best.safetensors"])
        best.load_state_dict({**state["best"], "weights": weights})
        saved = torch.load(io.BytesIO(files["optimizer.pt"]), map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        self._restore_torch_rng(saved, backbone.device)
        logger.info("Resumed %s from %s", self.phase, folder)
        return Resumed(state["epoch"] + 1, state["history"], state["finished"])

    def save(self, epoch: int, history: list[dict], finished: bool) -> None:
        """Write the state after ``epoch``; keep only the epoch before of the earlier ones.

        Every process must call it (it gathers their RNG states); only rank 0 writes.
        """
        backbone, optimizer, scheduler, best, rng = self._state
        parallel = self.fit.parallel
        torch_rng = parallel.gather_bytes(torch.get_rng_state())
        cuda_rng = None
        if backbone.device.type == "cuda":
            cuda_rng = parallel.gather_bytes(torch.cuda.get_rng_state(backbone.device))
        if parallel.is_main:
            best_state = best.state_dict()
            weights = best_state.pop("weights")
            state = {
                "epoch": epoch,
                "finished": finished,
                "history": history,
                "numpy_rng": rng.bit_generator.state,
                "best": best_state,
            }
            name = f"{self.phase}-epoch-{epoch:04d}"
            tmp = self.fit.folder / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            _save_tensors(backbone.adapter_state(), tmp / "adapter.safetensors")
            if weights is not None:
                _save_tensors(weights, tmp / "best.safetensors")
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch_rng,
                    "cuda_rng": cuda_rng,
                },
                tmp / "optimizer.pt",
            )
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
            # Read back while still in the page cache: resuming checks each file against it.
            digests = {path.name: _sha256(path) for path in tmp.iterdir()}
            (tmp / MANIFEST_FILE).write_text(json.dumps({"sha256": digests}), encoding="utf-8")
            os.replace(tmp, self.fit.folder / name)
            # Only now, with this epoch complete, may the one before the previous go.
            folders = self.fit._epoch_folders().get(self.phase, [])
            for _, path in folders[KEPT_EPOCHS:]:
                shutil.rmtree(path)
        parallel.barrier()

    def _restore_torch_rng(self, saved: dict, device: torch.device) -> None:
        parallel = self.fit.parallel
        if len(saved["torch_rng"]) != parallel.world_size:
            # Only dropout (LoRA's, the mlp-decoder's) draws from torch's RNG; the rest of
            # the fit is unaffected.
            logger.warning(
                "The checkpoint was written by %d processes and is resumed by %d: dropout "
                "masks will differ from those of an uninterrupted fit.",
                len(saved["torch_rng"]),
                parallel.world_size,
            )
            return
        torch.set_rng_state(saved["torch_rng"][parallel.rank])
        if saved["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"][parallel.rank], device)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class _Damaged(Exception):
    """An epoch folder that fails its checks; the message says how."""


def _read_verified(folder: Path) -> dict[str, bytes]:
    """Read an epoch folder's files, each checked against the folder's manifest.

    Raises
    ------
    _Damaged
        If the manifest or a required file is missing or unreadable, or a file's
        SHA-256 differs from the manifest's.
    """
    try:
        expected = json.loads((folder / MANIFEST_FILE).read_bytes())["sha256"]
        missing = [name for name in _REQUIRED_FILES if name not in expected]
        if missing:
            raise _Damaged(f"{MANIFEST_FILE} lacks {', '.join(missing)}")
        files = {name: (folder / name).read_bytes() for name in expected}
        for name, data in files.items():
            if hashlib.sha256(data).hexdigest() != expected[name]:
                raise _Damaged(f"{name} differs from what was written")
    except (OSError, ValueError, KeyError, TypeError) as err:
        # Whatever a damaged manifest or file gives: unreadable, not JSON, wrong shape.
        raise _Damaged(f"{type(err).__name__}: {err}") from err
    return files


def _verified_state(folder: Path) -> dict:
    """Check an epoch folder (see :func:`_read_verified`) and return its state."""
    state = json.loads(_read_verified(folder)["state.json"])
    if not isinstance(state, dict):
        raise _Damaged("state.json holds no state")
    return state


def _damaged(folder: Path, what: str) -> str:
    return (
        f"The checkpoint in {folder} is damaged: {what}. Set resume=False to start over "
        "(this replaces the folder's checkpoints)."
    )


def _check_same_on_all(parallel: DataParallel, value: int, what: str) -> None:
    """Refuse to go on when processes disagree (a checkpoint folder not shared by all)."""
    if parallel.world_size == 1:
        return
    total, squares = parallel.all_sum(np.array([value, value * value], dtype=np.float64))
    if squares * parallel.world_size != total * total:
        raise RuntimeError(
            f"The processes of this fit see different checkpoints ({what}): checkpoint_dir "
            "must be a folder every process can read."
        )
