"""Per-epoch checkpoints of a fit, so that an interrupted fit resumes where it stopped.

Layout of a ``checkpoint_dir``:

``fit.json``
    Format version, what identifies the fit (the parameters that shape the result, a hash
    of the training rows and targets, the base model's fingerprint) and the fit's seed.
``sft-epoch-0003/``, ``rl-epoch-0001/``
    The state after the latest completed epoch of each phase:

    - ``adapter.safetensors``: adapter weights;
    - ``best.safetensors``: adapter weights of the best validation epoch, when validating;
    - ``optimizer.pt``: optimizer and learning-rate scheduler state and the torch RNG state
      of every process (``torch.save``; read back with ``weights_only=True``);
    - ``state.json``: epoch, whether the phase finished, its history, the numpy RNG state
      and the early-stopping bookkeeping.

An epoch folder is written under a temporary name and renamed once complete, and the
previous one is removed only after that, so a process killed at any moment leaves a
complete checkpoint behind. Only rank 0 writes; every process reads, so under several
nodes the folder must be on a file system they share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from ._distributed import DataParallel
from ._training import BestState
from .backbone_protocol import WeightsMismatchError
from .backbones import LanguageModelBackbone, is_legacy_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["FitCheckpoints", "PhaseCheckpoint", "Resumed", "fit_identity"]

FORMAT_VERSION = 1
FIT_FILE = "fit.json"
_EPOCH_FOLDER = re.compile(r"^(?P<phase>[a-z]+)-epoch-(?P<epoch>\d+)$")

# Parameters that change where or how fast a fit runs, not what it computes (beyond float
# rounding): a fit may resume with other values, e.g. smaller micro-batches on a smaller GPU.
RESUMABLE_CHANGES = frozenset(
    ("checkpoint_dir", "resume", "verbose", "device", "micro_batch_size", "gradient_checkpointing")
)


def _describe(value: object) -> object:
    """Describe a parameter value as JSON, equal for equal settings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        # numpy scalars (a grid from np.arange) must compare by value, not by type name.
        return _describe(value.item())
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if isinstance(value, Callable):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}"
    # A RandomState instance: the seed it gave is stored in the checkpoint itself.
    return type(value).__name__


def fit_identity(params: dict, X: np.ndarray, y: np.ndarray) -> dict:
    """Describe what a checkpoint must match to be resumed by a fit.

    Parameters
    ----------
    params : dict
        The estimator's ``get_params(deep=False)``.
    X : ndarray of shape (n_rows, n_features)
        The validated training rows (numbers, strings, missing values).
    y : ndarray
        The training targets.

    Returns
    -------
    identity : dict
        ``params`` (JSON descriptions of the result-shaping parameters) and ``data`` (a
        SHA-256 of the rows and targets).
    """
    digest = hashlib.sha256()
    # repr() writes floats exactly and tells strings, numbers and None apart. Row by row,
    # so that no Python copy of the whole table is ever built.
    for row in X:
        digest.update(repr(row.tolist()).encode("utf-8") + b"\0")
    digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    described = {k: _describe(v) for k, v in params.items() if k not in RESUMABLE_CHANGES}
    return {"params": described, "data": digest.hexdigest()}


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

    def open(self, resume: bool, seed: int) -> int:
        """Start a fresh checkpoint, or check the existing one when resuming.

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
        ValueError
            If the checkpoint was written by a fit with other parameters, other data or
            another format.
        """
        saved = self._read_fit_file() if resume else None
        if saved is not None:
            self._check_identity(saved)
            self.resuming = True
            seed = saved["seed"]
            logger.info("Resuming the fit checkpointed in %s", self.folder)
        elif resume:
            logger.info("No checkpoint in %s: the fit starts from the beginning", self.folder)
        _check_same_on_all(self.parallel, int(self.resuming), "whether a checkpoint exists")
        if not self.resuming and self.parallel.is_main:
            self._clear()
        self.parallel.barrier()
        self._seed = seed
        return seed

    def check_base_model(self, fingerprint: str | None) -> None:
        """Compare (resuming) or record (fresh fit) the base model's fingerprint.

        Raises
        ------
        ValueError
            If the checkpoint was trained on another base model.
        """
        if self.resuming:
            saved = self._read_fit_file()["base_fingerprint"]
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
            self.folder.mkdir(parents=True, exist_ok=True)
            record = {
                "format_version": FORMAT_VERSION,
                **self.identity,
                "seed": self._seed,
                "base_fingerprint": fingerprint,
            }
            tmp = self.folder / f".{FIT_FILE}.tmp"
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
            os.replace(tmp, self.folder / FIT_FILE)
        self.parallel.barrier()

    def phase(self, name: str) -> PhaseCheckpoint:
        """Return the checkpoint of one training phase (``"sft"`` or ``"rl"``)."""
        return PhaseCheckpoint(self, name)

    def _read_fit_file(self) -> dict | None:
        path = self.folder / FIT_FILE
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def _check_identity(self, saved: dict) -> None:
        where = f"The checkpoint in {self.folder}"
        advice = "Set resume=False to start over, or choose another checkpoint_dir."
        if saved.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where} has format version {saved.get('format_version')!r}; this "
                f"llmregressor reads version {FORMAT_VERSION}. {advice}"
            )
        params, old = self.identity["params"], saved["params"]
        changed = sorted(k for k in set(params) | set(old) if params.get(k) != old.get(k))
        if changed:
            details = ", ".join(f"{k}={old.get(k)!r} -> {params.get(k)!r}" for k in changed)
            raise ValueError(f"{where} was written with other parameters ({details}). {advice}")
        if saved["data"] != self.identity["data"]:
            raise ValueError(f"{where} was written for other training data (X or y). {advice}")

    def _clear(self) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if _EPOCH_FOLDER.match(path.name) or path.name.endswith(".tmp"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        (self.folder / FIT_FILE).unlink(missing_ok=True)

    def latest(self, phase: str) -> tuple[int, Path] | None:
        """Return the latest complete epoch and folder of a phase, if any."""
        if not self.folder.is_dir():
            return None
        found = [
            (int(match["epoch"]), path)
            for path in self.folder.iterdir()
            if (match := _EPOCH_FOLDER.match(path.name)) and match["phase"] == phase
        ]
        return max(found) if found else None


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
        latest = self.fit.latest(self.phase) if self.fit.resuming else None
        parallel = self.fit.parallel
        _check_same_on_all(parallel, -1 if latest is None else latest[0], f"{self.phase} epoch")
        if latest is None:
            return None
        folder = latest[1]
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        try:
            backbone.load_adapter_state(safetensors.torch.load_file(folder / "adapter.safetensors"))
        except WeightsMismatchError as err:
            raise ValueError(
                f"The checkpoint in {folder} does not fit this model: {err}. Set resume=False "
                "to start over."
            ) from err
        weights = None
        if (folder / "best.safetensors").is_file():
            weights = safetensors.torch.load_file(folder / "best.safetensors")
        best.load_state_dict({**state["best"], "weights": weights})
        saved = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        self._restore_torch_rng(saved, backbone.device)
        logger.info("Resumed %s from %s", self.phase, folder)
        return Resumed(state["epoch"] + 1, state["history"], state["finished"])

    def save(self, epoch: int, history: list[dict], finished: bool) -> None:
        """Write the state after ``epoch`` and remove the previous epoch's checkpoint.

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
            os.replace(tmp, self.fit.folder / name)
            for path in self.fit.folder.iterdir():
                match = _EPOCH_FOLDER.match(path.name)
                if match and match["phase"] == self.phase and path.name != name:
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
