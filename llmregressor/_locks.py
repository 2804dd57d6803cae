"""Locks that keep fits from interfering: one per process, one per checkpoint folder.

:data:`FIT_LOCK` runs the part of ``fit`` that uses torch's process-global state (its
random generator, reseeded by ``torch.manual_seed`` and saved and restored by
``fork_rng``) one fit at a time, so fits in threads of one process give the results they
give alone. :class:`FolderLock` is an exclusive lock file in a ``checkpoint_dir``, naming
the process and host of the fit that holds it, so two fits never write one folder.

This module imports only the standard library: a test can load it in a bare subprocess.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path

__all__ = ["FIT_LOCK", "CheckpointInUseError", "FolderLock"]

# Reentrant: user code a fit calls (a reward function) may itself fit an estimator.
FIT_LOCK = threading.RLock()

LOCK_FILE = "fit.lock"


class CheckpointInUseError(RuntimeError):
    """A ``checkpoint_dir`` is held by another fit that may still be running."""


class FolderLock:
    """An exclusive lock file ``fit.lock`` in a folder, owned by this process.

    Use :meth:`acquire` to take it and :meth:`release` (or a ``with`` block) to give it
    back. The file holds the owner's pid, host and start time as JSON.

    Parameters
    ----------
    path : Path
        The lock file.
    record : str
        The JSON text this process wrote into it.
    """

    def __init__(self, path: Path, record: str) -> None:
        self.path = path
        self.record = record

    @classmethod
    def acquire(cls, folder: str | os.PathLike) -> FolderLock:
        """Take the lock of ``folder``, taking over a stale one left by a dead process.

        Parameters
        ----------
        folder : str or path-like
            An existing folder.

        Returns
        -------
        lock : FolderLock
            The lock, held until :meth:`release`.

        Raises
        ------
        CheckpointInUseError
            If another live fit holds the folder, or a fit on another host whose state
            this process cannot check (its lock file then has to be removed by hand).
        """
        path = Path(folder) / LOCK_FILE
        record = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                # Tells this acquisition's file from a later one, for release().
                "token": uuid.uuid4().hex,
            }
        )
        # A second round follows the removal of a stale lock; a third can only follow
        # another process's stale-lock removal in between, which is a live competitor.
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                text = _read(path)
                if text is None:  # released in the meantime
                    continue
                owner = _parse(text)
                if not _is_stale(owner):
                    raise CheckpointInUseError(_in_use_message(path, owner)) from None
                if _remove_if_unchanged(path, text):
                    warnings.warn(
                        f"{path.parent} was locked by process {owner['pid']} on this host, "
                        "which no longer runs (a fit that was killed): taking the lock over.",
                        stacklevel=2,
                    )
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(record)
            return cls(path, record)
        raise CheckpointInUseError(_in_use_message(path, _parse(_read(path) or "")))

    def release(self) -> None:
        """Remove the lock file, unless another process has taken it over since."""
        if _read(self.path) == self.record:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _parse(text: str) -> dict:
    """Return the lock's owner; empty when the file is being written or is damaged."""
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _is_stale(owner: dict) -> bool:
    """Whether the owner is a process of this host that no longer runs."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False  # another host's processes cannot be checked from here
    if os.name != "posix":
        return False  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def _remove_if_unchanged(path: Path, text: str) -> bool:
    """Remove the lock file if it still holds ``text``; False if another process was faster.

    Moving the file aside is atomic, so of two processes taking over one stale lock only
    one moves it; the other moves nothing, or the first one's new lock, which it puts back.
    """
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if _read(aside) == text:
        aside.unlink()
        return True
    try:
        os.link(aside, path)  # fails if yet another lock appeared: that one then holds
    except FileExistsError:
        pass
    aside.unlink()
    return False


def _in_use_message(path: Path, owner: dict) -> str:
    who = (
        f"the fit of process {owner.get('pid')} on host {owner.get('host')} "
        f"(since {owner.get('started')})"
        if owner
        else "a fit whose lock file is being written, or is damaged"
    )
    return (
        f"{path.parent} is in use by {who}. Fits that run at the same time need "
        "checkpoint_dir folders of their own. If no fit uses the folder any more (it was "
        "killed on another host, or its process id now belongs to another program), "
        f"delete {path}."
    )
