"""Phase 1: token-level supervised fine-tuning on the number tokens.

The loss is cross-entropy of the true symbols under the policy's masked distribution,
averaged over the ``length`` positions and the rows of a batch (the prompt or feature
vector is context only), plus the number-aware term it is configured with, if any
(:mod:`.token_losses`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ._checkpoint import PhaseCheckpoint
from ._distributed import DataParallel
from ._training import BestState, make_optimizer, minibatches
from .backbone_protocol import RowInputs
from .decoding import NumberPolicy
from .token_losses import SFTLoss

logger = logging.getLogger(__name__)

__all__ = ["SFTConfig", "run_sft"]


@dataclass(frozen=True)
class SFTConfig:
    """Settings of the SFT phase.

    The estimator builds it from ``sft_epochs``, ``sft_lr``, ``batch_size``,
    ``n_iter_no_change`` and ``sft_loss`` / ``sft_loss_weight`` (``loss``, whose
    ``"ce"`` is cross-entropy alone). ``max_grad_norm`` has no estimator parameter.
    """

    epochs: int
    lr: float
    batch_size: int
    n_iter_no_change: int | None
    loss: SFTLoss
    max_grad_norm: float = 1.0


def run_sft(
    policy: NumberPolicy,
    row_inputs: RowInputs,
    targets: np.ndarray,
    config: SFTConfig,
    rng: np.random.Generator,
    validate: Callable[[], float] | None = None,
    verbose: int = 0,
    parallel: DataParallel | None = None,
    checkpoint: PhaseCheckpoint | None = None,
) -> list[dict]:
    """Train the policy's trainable weights with a token-level loss on the target symbols.

    Parameters
    ----------
    policy : NumberPolicy
        The policy to train, in place.
    row_inputs : RowInputs
        Model inputs of the training rows, encoded as the batches reach them.
    targets : ndarray of shape (n_rows, length)
        Encoded training targets (symbol indices).
    config : SFTConfig
        Epochs, learning rate, batch size, early-stopping patience, loss.
    rng : numpy.random.Generator
        Shuffles the batches.
    validate : callable, optional
        Returns the validation RMSE of the current policy; enables early stopping and
        restoring the best epoch's weights.
    verbose : int, default=0
        Show a progress bar when > 0.
    parallel : DataParallel, optional
        This process's share of each batch (several processes, micro-batches); by default
        one process computes each batch in one pass.
    checkpoint : PhaseCheckpoint, optional
        Saves the training state after every epoch and resumes from it.

    Returns
    -------
    history : list of dict
        One record per epoch: ``phase``, ``epoch``, ``train_loss``, ``val_rmse``, ``lr``,
        ``time_s``; with a number-aware term also ``train_ce`` and ``train_term``.
    """
    backbone = policy.backbone
    parallel = parallel or DataParallel()
    steps_per_epoch = -(-len(row_inputs) // config.batch_size)
    optimizer, scheduler = make_optimizer(backbone, config.lr, steps_per_epoch * config.epochs)
    best = BestState(backbone, config.n_iter_no_change)
    target_tensor = torch.as_tensor(targets, dtype=torch.long, device=backbone.device)
    history, first_epoch, last_epoch = [], 0, config.epochs
    if checkpoint is not None:
        resumed = checkpoint.attach(backbone, optimizer, scheduler, best, rng)
        if resumed is not None:
            history, first_epoch = resumed.history, resumed.next_epoch
            last_epoch = first_epoch if resumed.finished else last_epoch
    epochs = tqdm(range(first_epoch, last_epoch), desc="SFT", unit="epoch", disable=verbose <= 0)
    # Decided by the loss, not by the rows: a process without rows in a step must still
    # log a term, or the processes' term lists differ in length and their sum hangs.
    logs_term = config.loss.has_term
    for epoch in epochs:
        start = time.perf_counter()
        backbone.train(True)
        losses, terms = [], []
        batches = minibatches(len(row_inputs), config.batch_size, rng)
        for rows, encoded in row_inputs.batches(batches):
            optimizer.zero_grad(set_to_none=True)
            loss, term = 0.0, 0.0
            # This process's micro-batches; their weighted losses add up to the batch mean.
            for positions, weight in parallel.micro_batches(len(rows)):
                part = rows[positions]
                batch = backbone.collate(encoded.take(positions).items)
                part_targets = target_tensor[part][:, None]
                scores = policy.score(batch, part_targets)
                part_loss, part_term = config.loss(scores.table, part_targets)
                if part_term is not None:
                    term += part_term.item() * weight
                (part_loss * weight).backward()
                loss += part_loss.item() * weight
            parallel.sync_gradients(backbone.trainable_parameters())
            torch.nn.utils.clip_grad_norm_(backbone.trainable_parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss)
            if logs_term:
                terms.append(term)
        record = {
            "phase": "sft",
            "epoch": epoch,
            "train_loss": float(np.mean(parallel.all_sum(losses))),
            "val_rmse": validate() if validate is not None else None,
            "lr": scheduler.get_last_lr()[0],
            "time_s": time.perf_counter() - start,
        }
        if logs_term:
            record["train_term"] = float(np.mean(parallel.all_sum(terms)))
            record["train_ce"] = record["train_loss"] - config.loss.weight * record["train_term"]
        history.append(record)
        epochs.set_postfix(loss=f"{record['train_loss']:.3f}", val_rmse=record["val_rmse"])
        logger.info("SFT epoch %d: %s", epoch, record)
        if record["val_rmse"] is not None:
            best.update(record["val_rmse"], epoch)
        if checkpoint is not None:
            checkpoint.save(epoch, history, best.should_stop or epoch + 1 == config.epochs)
        if best.should_stop:
            logger.info("SFT early stop after epoch %d (best %s)", epoch, best.best_epoch)
            break
    best.restore()
    if best.best_epoch is not None:
        logger.info("SFT kept epoch %d (val RMSE %.4g)", best.best_epoch, best.best_score)
    return history
