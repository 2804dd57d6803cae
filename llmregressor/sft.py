"""Phase 1: token-level supervised fine-tuning on the number tokens.

The loss is cross-entropy of the true symbols under the policy's masked distribution,
averaged over the ``length`` positions and the rows of a batch (the prompt or feature
vector is context only), plus the number-aware term it is configured with, if any
(:mod:`.token_losses`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ._distributed import DataParallel
from ._training import BestState
from .backbone_protocol import EncodedRows
from .decoding import NumberPolicy
from .token_losses import SFTLoss

logger = logging.getLogger(__name__)

__all__ = ["SFTConfig", "SFTPhase"]


@dataclass(frozen=True)
class SFTConfig:
    """Settings of the SFT phase.

    The estimator builds it from ``sft_epochs``, ``sft_lr``, ``batch_size``,
    ``n_iter_no_change``, ``sft_loss`` / ``sft_loss_weight`` (``loss``, whose ``"ce"`` is
    cross-entropy alone) and ``gradient_checkpointing``. ``max_grad_norm`` and
    ``lr_schedule`` (``"cosine"`` decay to 0.1x after the warm-up, or ``"constant"``) have
    no estimator parameter.
    """

    epochs: int
    lr: float
    batch_size: int
    n_iter_no_change: int | None
    loss: SFTLoss
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    lr_schedule: str = "cosine"


class SFTPhase:
    """Token-level training on the target symbols, a phase of the shared epoch loop.

    :class:`~llmregressor.engine.Trainer` runs it (``Trainer.sft``).

    Parameters
    ----------
    policy : NumberPolicy
        The policy to train.
    targets : ndarray of shape (n_rows, length)
        Encoded training targets (symbol indices).
    config : SFTConfig
        Early-stopping patience and loss.
    parallel : DataParallel
        This process's share of each batch.
    """

    name = "sft"
    title = "SFT"
    updates_per_batch = 1

    def __init__(
        self, policy: NumberPolicy, targets: np.ndarray, config: SFTConfig, parallel: DataParallel
    ) -> None:
        self.policy = policy
        self.loss = config.loss
        self.patience = config.n_iter_no_change
        self.parallel = parallel
        self.targets = torch.as_tensor(targets, dtype=torch.long, device=policy.backbone.device)
        self.losses: list[float] = []
        self.terms: list[float] = []

    def begin(self, best: BestState, validate: Callable[[], float] | None) -> list[dict]:
        """Log nothing before the first epoch."""
        return []

    def begin_epoch(self) -> None:
        """Switch dropout on and start the epoch's loss logs."""
        self.policy.backbone.train(True)
        self.losses, self.terms = [], []

    def train_batch(
        self, rows: np.ndarray, encoded: EncodedRows, update: Callable[[Callable[[], float]], float]
    ) -> None:
        """Take one step on the batch's cross-entropy (plus the number-aware term)."""
        term = [0.0]

        def accumulate() -> float:
            loss = 0.0
            # This process's micro-batches; their weighted losses add up to the batch mean.
            for positions, weight in self.parallel.micro_batches(len(rows)):
                batch = self.policy.backbone.collate(encoded.take(positions).items)
                part_targets = self.targets[rows[positions]][:, None]
                scores = self.policy.score(batch, part_targets)
                part_loss, part_term = self.loss(scores.table, part_targets)
                if part_term is not None:
                    term[0] += part_term.item() * weight
                (part_loss * weight).backward()
                loss += part_loss.item() * weight
            return loss

        self.losses.append(update(accumulate))
        # Decided by the loss, not by the rows: a process without rows in a step must still
        # log a term, or the processes' term lists differ in length and their sum hangs.
        if self.loss.has_term:
            self.terms.append(term[0])

    def end_epoch(self) -> dict:
        """Return the epoch's mean loss (and its cross-entropy and term parts)."""
        metrics = {"train_loss": float(np.mean(self.parallel.all_sum(self.losses)))}
        if self.loss.has_term:
            term = float(np.mean(self.parallel.all_sum(self.terms)))
            metrics["train_term"] = term
            metrics["train_ce"] = metrics["train_loss"] - self.loss.weight * term
        return metrics

    def end(self, best: BestState) -> list[dict]:
        """Log the epoch that was kept."""
        if best.best_epoch is not None:
            logger.info("SFT kept epoch %d (val RMSE %.4g)", best.best_epoch, best.best_score)
        return []
