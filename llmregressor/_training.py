"""Pieces shared by the training phases: batching, optimizer, early stopping."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from .backbone_protocol import Backbone

__all__ = ["BestState", "make_optimizer", "minibatches"]


def minibatches(n_rows: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield shuffled row indices in batches of at most ``batch_size``."""
    order = rng.permutation(n_rows)
    for start in range(0, n_rows, batch_size):
        yield order[start : start + batch_size]


def make_optimizer(
    backbone: Backbone, lr: float, total_steps: int, warmup_fraction: float = 0.1
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW on the trainable weights with linear warm-up and cosine decay to 0.1x.

    The paper's tabular runs use 100 warm-up steps out of many thousands; small tabular fits
    here have tens of steps, so the warm-up is a fraction of the run instead.
    """
    optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=lr, weight_decay=0.0)
    warmup = math.ceil(warmup_fraction * total_steps)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup, num_training_steps=total_steps, min_lr_rate=0.1
    )
    return optimizer, scheduler


class BestState:
    """Remember the trained weights with the lowest validation score, and when to stop.

    Parameters
    ----------
    backbone : Backbone
        Whose trained weights (:meth:`~Backbone.adapter_state`) to snapshot.
    patience : int or None
        Epochs without improvement before :attr:`should_stop` turns true; None never stops.
    """

    def __init__(self, backbone: Backbone, patience: int | None) -> None:
        self.backbone = backbone
        self.patience = patience
        self.best_score = math.inf
        self.best_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None
        self._epochs_since_best = 0

    def update(self, score: float, epoch: int) -> bool:
        """Record an epoch's validation score; return True if it is the best so far."""
        if score < self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self._state = self.backbone.adapter_state()
            self._epochs_since_best = 0
            return True
        self._epochs_since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Whether the patience is exhausted."""
        return self.patience is not None and self._epochs_since_best >= self.patience

    def restore(self) -> None:
        """Load the best weights back (no-op if no epoch was scored)."""
        if self._state is not None:
            self.backbone.load_adapter_state(self._state)

    def state_dict(self) -> dict:
        """Everything needed to continue tracking after a restart (for checkpoints)."""
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "epochs_since_best": self._epochs_since_best,
            "weights": self._state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`."""
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self._epochs_since_best = state["epochs_since_best"]
        self._state = state["weights"]
