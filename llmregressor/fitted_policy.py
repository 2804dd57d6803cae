"""What a fit leaves behind: the trained weights and the recipe that rebuilds the policy.

A :class:`FittedPolicy` is the estimator's ``policy_``. It pickles without the base model
(trained weights as numpy arrays, so a GPU fit loads on a CPU-only machine, plus the
backbone recipe), rebuilds the live :class:`~llmregressor.decoding.NumberPolicy` on first
use, and gives :mod:`~llmregressor.persistence` what a model folder stores. It knows no
estimator class.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

from ._distributed import local_device
from ._locks import FIT_LOCK
from .backbone_protocol import BACKBONES, BackboneSpec
from .decoding import NumberPolicy
from .serialize import RowSerializer

__all__ = ["FittedPolicy", "forked_torch_rng", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """Turn the estimator's ``device`` parameter into this process's torch device.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    device : torch.device
        Under several processes, the process's own GPU.

    Raises
    ------
    ValueError
        If ``device`` is no device name, or names CUDA on a machine without it or a GPU
        index the machine lacks.
    """
    if device == "auto":
        return local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} was requested but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s), numbered from 0"
        )
    return local_device(resolved)


def restored_device(device: str) -> torch.device:
    """Device to rebuild a fitted policy on: its fit's, or the CPU for a GPU this machine lacks.

    A model fitted with ``device="cuda"`` must still predict after unpickling or loading on a
    CPU-only machine; it warns, because it runs far slower there.
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(
            f"this model was fitted with device={device!r}, but CUDA is not available here: "
            "it runs on the CPU",
            UserWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
    return resolve_device(device)


def forked_torch_rng():
    """Fork torch's global RNG (CPU and every CUDA device) for the enclosed block.

    Every device, not just the current one: ``torch.manual_seed`` reseeds them all.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    return torch.random.fork_rng(devices=devices)


class FittedPolicy:
    """The fitted policy, rebuilt lazily from a backbone spec and the trained weights.

    Parameters
    ----------
    spec : BackboneSpec
        Recipe of the backbone (a registered kind).
    allowed : ndarray of shape (length, n_symbols)
        The codec's grammar: which symbols each position allows.
    device : str
        The ``device`` parameter of the fit.
    weights : dict of str to ndarray, optional
        Trained weights to restore on :meth:`build` (a loaded or unpickled model); None
        builds fresh ones (a fit).
    """

    def __init__(
        self,
        spec: BackboneSpec,
        allowed: np.ndarray,
        device: str,
        weights: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.spec = spec
        self.allowed = allowed
        self.device = device
        self._weights = None if weights is None else dict(weights)
        self._policy: NumberPolicy | None = None

    def build(self) -> NumberPolicy:
        """Build the backbone with fresh trainable weights (restoring saved ones if any).

        Returns
        -------
        policy : NumberPolicy
            The live policy, also kept for :attr:`policy`.

        Raises
        ------
        ValueError
            If restored weights hold NaN or infinite values (a diverged fit saved by a
            version that did not stop it): such a model would ignore its inputs.
        """
        restoring = self._weights is not None
        device = restored_device(self.device) if restoring else resolve_device(self.device)
        backbone = self.spec.build(device)
        if restoring:
            bad = sorted(name for name, w in self._weights.items() if not np.isfinite(w).all())
            if bad:
                raise ValueError(
                    f"the trained weights {bad[:3]} hold NaN or infinite values: this model "
                    "diverged in training and would ignore its inputs; refit it with a lower "
                    "learning rate"
                )
            backbone.load_adapter_state({k: torch.tensor(v) for k, v in self._weights.items()})
        self._policy = NumberPolicy(backbone, self.allowed)
        return self._policy

    @property
    def policy(self) -> NumberPolicy:
        """The live policy, built on first use."""
        if self._policy is None:
            # Fresh weights are drawn before the saved ones are loaded: keep that from
            # disturbing the caller's torch random state, or a fit in another thread.
            with FIT_LOCK, forked_torch_rng():
                self.build()
        return self._policy

    @property
    def kind(self) -> str:
        """Name of this policy's backbone kind (a key of ``BACKBONES``)."""
        return self.spec.kind

    def trainable_weights(self) -> dict[str, np.ndarray]:
        """Return the policy's trainable weights as CPU numpy arrays."""
        if self._policy is not None:
            return {k: v.numpy() for k, v in self._policy.backbone.adapter_state().items()}
        return dict(self._weights or {})

    def config(self) -> dict:
        """Everything but the weights and the row serializer that rebuilds the policy, as JSON.

        Raises
        ------
        TypeError
            If the backbone kind has no pickle-free format.
        """
        return {**self.spec.to_config(), "allowed": self.allowed.tolist(), "device": self.device}

    @classmethod
    def from_config(
        cls,
        kind: str,
        config: Mapping,
        weights: Mapping[str, np.ndarray],
        serializer: RowSerializer,
    ) -> FittedPolicy:
        """Rebuild a fitted policy from :meth:`config`, its kind, the weights and serializer.

        Raises
        ------
        KeyError
            If ``kind`` is no registered backbone kind.
        """
        spec = BACKBONES[kind].from_config(config, serializer)
        return cls(spec, np.asarray(config["allowed"], dtype=bool), config["device"], weights)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._policy is not None:
            state["_weights"] = self.trainable_weights()
        state["_policy"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        # Pickles written before this class replaced the estimator's _PolicyHandle keep
        # the trained weights under "_adapter".
        if "_adapter" in state:
            state["_weights"] = state.pop("_adapter")
        self.__dict__.update(state)
