"""The one epoch loop that SFT and RL share, and its pieces: batching, optimizer, best state.

A phase (:class:`Phase`: SFT in :mod:`.sft`, RL in :mod:`.rl`) says how to train on one
batch of rows and what to log; :func:`run_phase` does the rest the same way for both:
optimizer and schedule, resuming from and saving checkpoints, shuffled batches, the update
(gradient sync across processes, clipping, optimizer and schedule step, a stop when the
gradients are no longer finite), validation, early stopping, restoring the best state and
the history records.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
)

from ._distributed import DataParallel
from .backbone_protocol import Backbone, EncodedRows, RowInputs
from .decoding import NumberPolicy

if TYPE_CHECKING:  # the checkpoints restore a BestState: a runtime import would be circular
    from ._checkpoint import PhaseCheckpoint

logger = logging.getLogger(__name__)

__all__ = [
    "LR_SCHEDULES",
    "BestState",
    "Phase",
    "PhaseConfig",
    "TrainingDivergedError",
    "make_optimizer",
    "minibatches",
    "run_phase",
]

LR_SCHEDULES = ("cosine", "constant")


def minibatches(n_rows: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield shuffled row indices in batches of at most ``batch_size``."""
    order = rng.permutation(n_rows)
    for start in range(0, n_rows, batch_size):
        yield order[start : start + batch_size]


def make_optimizer(
    backbone: Backbone,
    lr: float,
    total_steps: int,
    warmup_fraction: float = 0.1,
    schedule: str = "cosine",
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW on the trainable weights with linear warm-up, then cosine decay to 0.1x.

    The paper's tabular runs use 100 warm-up steps out of many thousands; small tabular fits
    here have tens of steps, so the warm-up is a fraction of the run instead.
    ``schedule="constant"`` keeps the peak rate after the warm-up.
    """
    optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=lr, weight_decay=0.0)
    warmup = math.ceil(warmup_fraction * total_steps)
    if schedule == "constant":
        return optimizer, get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup)
    if schedule != "cosine":
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
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


class TrainingDivergedError(FloatingPointError):
    """Training stopped because the gradients or the trained weights became NaN or infinite.

    The message names the phase, the epoch and the step, and the learning-rate parameter to
    lower. A fit that raises it leaves no fitted model behind.
    """


class Phase(Protocol):
    """What :func:`run_phase` needs from a training phase.

    Attributes
    ----------
    name : str
        ``"sft"`` or ``"rl"``: the ``phase`` of its history records (``name + "_step"`` for
        per-step records) and the prefix of its learning-rate parameter.
    title : str
        Name in progress bars and log lines.
    patience : int or None
        Epochs without validation improvement before the phase stops; None never stops.
    updates_per_batch : int
        Optimizer updates each batch of rows takes (for the schedule's length).
    """

    name: str
    title: str
    patience: int | None
    updates_per_batch: int

    def begin(self, best: BestState, validate: Callable[[], float] | None) -> list[dict]:
        """Start a phase that resumes nothing; return records to log first."""

    def begin_epoch(self) -> None:
        """Prepare an epoch (e.g. switch dropout on)."""

    def train_batch(
        self, rows: np.ndarray, encoded: EncodedRows, update: Callable[[Callable[[], float]], float]
    ) -> dict | None:
        """Train on one batch of rows through ``update``; return a per-step record or None.

        ``update(accumulate)`` zeroes the gradients, calls ``accumulate()`` (which runs the
        backward passes and returns the batch loss), then syncs, clips and steps.
        """

    def end_epoch(self) -> dict:
        """Return the epoch's training metrics (e.g. the mean loss)."""

    def end(self, best: BestState) -> list[dict]:
        """Finish after the best state was restored; return records to log last."""


class PhaseConfig(Protocol):
    """The settings :func:`run_phase` reads (both ``SFTConfig`` and ``RLConfig`` have them).

    Attributes
    ----------
    epochs : int
        Most epochs to train.
    lr : float
        Peak learning rate (AdamW; warm-up over the first 10% of updates, then
        ``lr_schedule``).
    batch_size : int
        Rows per batch (over all processes together).
    max_grad_norm : float
        Gradients are clipped to this global norm.
    lr_schedule : {"cosine", "constant"}
        Decay to 0.1x of ``lr`` along a cosine, or none.
    """

    epochs: int
    lr: float
    batch_size: int
    max_grad_norm: float
    lr_schedule: str


def run_phase(
    phase: Phase,
    policy: NumberPolicy,
    row_inputs: RowInputs,
    config: PhaseConfig,
    rng: np.random.Generator,
    *,
    validate: Callable[[], float] | None = None,
    verbose: int = 0,
    parallel: DataParallel | None = None,
    checkpoint: PhaseCheckpoint | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    check: Callable[[int], dict] | None = None,
) -> list[dict]:
    """Train ``policy`` in place for up to ``config.epochs`` epochs of ``phase``.

    Parameters
    ----------
    phase : Phase
        How to train on a batch and what to log (:class:`~llmregressor.sft.SFTPhase`,
        :class:`~llmregressor.rl.RLPhase`).
    policy : NumberPolicy
        The policy whose trainable weights are trained.
    row_inputs : RowInputs
        Model inputs of the training rows, encoded as the batches reach them.
    config : PhaseConfig
        Epochs, learning rate and schedule, batch size, gradient clipping.
    rng : numpy.random.Generator
        Shuffles the batches (and whatever else the phase draws).
    validate : callable, optional
        Returns the validation RMSE of the current policy; enables early stopping (with the
        phase's patience) and restoring the best state at the end.
    verbose : int, default=0
        Show a progress bar when > 0.
    parallel : DataParallel, optional
        This process's share of each batch; by default one process computes each batch in
        one pass.
    checkpoint : PhaseCheckpoint, optional
        Saves the training state after every epoch and resumes from it.
    on_epoch_end : callable, optional
        Called with each epoch's record after it is logged and checkpointed.
    check : callable, optional
        Called with the epoch's index after its training, before its record is logged:
        returns fields to add to the record. A true ``"stop"`` among them (not kept in the
        record) ends the phase after this epoch, which is then checkpointed as finished.

    Returns
    -------
    history : list of dict
        The phase's records: per-step records (``phase=name + "_step"``) if the phase logs
        them, and one record per epoch (``phase``, ``epoch``, the phase's metrics,
        ``val_rmse``, ``lr``, ``time_s``).

    Raises
    ------
    TrainingDivergedError
        If the gradients or the trained weights stop being finite; the weights are those
        of the last finite update.
    """
    epochs, lr, batch_size = config.epochs, config.lr, config.batch_size
    backbone = policy.backbone
    parallel = parallel or DataParallel()
    weights = backbone.trainable_parameters()
    steps_per_epoch = -(-len(row_inputs) // batch_size)
    total_updates = steps_per_epoch * epochs * phase.updates_per_batch
    optimizer, scheduler = make_optimizer(backbone, lr, total_updates, schedule=config.lr_schedule)
    best = BestState(backbone, phase.patience)
    history, first_epoch, last_epoch = [], 0, epochs
    resumed = None
    if checkpoint is not None:
        resumed = checkpoint.attach(backbone, optimizer, scheduler, best, rng)
    if resumed is not None:
        history, first_epoch = resumed.history, resumed.next_epoch
        last_epoch = first_epoch if resumed.finished else last_epoch
    else:
        history += phase.begin(best, validate)
    where = {"epoch": first_epoch, "step": 0}

    def diverged(what: str) -> TrainingDivergedError:
        return TrainingDivergedError(
            f"{phase.title} diverged at epoch {where['epoch']}, step {where['step']}: {what}. "
            f"Lower the learning rate {phase.name}_lr (now {lr:g}; with LoRA, a smaller "
            "lora_alpha also helps): the fit is not usable."
        )

    def update(accumulate: Callable[[], float]) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = accumulate()
        parallel.sync_gradients(weights)
        # The norm of the synced gradients is the same on every process, so all of them
        # stop together; a NaN loss gives NaN gradients too.
        norm = torch.nn.utils.clip_grad_norm_(weights, config.max_grad_norm)
        if not torch.isfinite(norm):
            raise diverged(f"the gradient norm is {norm.item()} (the loss was {loss})")
        optimizer.step()
        scheduler.step()
        return loss

    bar = tqdm(range(first_epoch, last_epoch), desc=phase.title, unit="epoch", disable=verbose <= 0)
    for epoch in bar:
        start = time.perf_counter()
        where.update(epoch=epoch, step=0)
        phase.begin_epoch()
        for rows, encoded in row_inputs.batches(minibatches(len(row_inputs), batch_size, rng)):
            step = phase.train_batch(rows, encoded, update)
            if step is not None:
                lr_now = scheduler.get_last_lr()[0]
                history.append(
                    {"phase": f"{phase.name}_step", "epoch": epoch, **step, "lr": lr_now}
                )
            where["step"] += 1
        if not all(torch.isfinite(w).all() for w in weights):
            raise diverged("the trained weights hold NaN or infinite values")
        checked = check(epoch) if check is not None else {}
        stop = bool(checked.pop("stop", False))
        record = {
            "phase": phase.name,
            "epoch": epoch,
            **phase.end_epoch(),
            "val_rmse": validate() if validate is not None else None,
            **checked,
            "lr": scheduler.get_last_lr()[0],
            "time_s": time.perf_counter() - start,
        }
        history.append(record)
        bar.set_postfix({k: record[k] for k in ("train_loss", "val_rmse") if k in record})
        logger.info("%s epoch %d: %s", phase.title, epoch, record)
        if record["val_rmse"] is not None:
            best.update(record["val_rmse"], epoch)
        if checkpoint is not None:
            checkpoint.save(epoch, history, stop or best.should_stop or epoch + 1 == epochs)
        if on_epoch_end is not None:
            on_epoch_end(dict(record))  # a copy: the history stays as checkpointed
        if best.should_stop:
            logger.info(
                "%s early stop after epoch %d (best %s)", phase.title, epoch, best.best_epoch
            )
            break
        if stop:
            logger.info("%s stopped by its check after epoch %d: %s", phase.title, epoch, checked)
            break
    best.restore()
    return history + phase.end(best)
