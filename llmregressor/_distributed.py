"""Data parallelism: how a global training batch is split over processes and micro-batches.

One fit can run in several processes (``torchrun --nproc_per_node N script.py`` or
``accelerate launch script.py``), each on its own device. Every process holds the whole
data set and draws the same batch order and the same sampling uniforms from the same seed;
of each global batch of ``batch_size`` rows it computes only its own contiguous slice, split
further into micro-batches of at most ``micro_batch_size`` rows when memory is short.

Each micro-batch's mean loss is weighted by its share of the *global* batch, so the summed
gradients of all micro-batches on all processes equal the gradient of the global batch's
mean loss: the optimizer step does not depend on the number of processes or micro-batches
(up to float summation order). The summing over processes is one ``all_reduce`` of the
flattened adapter gradients per step; DistributedDataParallel does not fit, because the
decoding engine calls the decoder with a KV cache rather than through one ``forward``.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

__all__ = ["DataParallel", "data_parallel", "local_device"]


@dataclass
class DataParallel:
    """A process's share of every global batch, and the collectives that join the shares.

    The default, one process and no micro-batches, makes every method a no-op or an identity.

    Parameters
    ----------
    rank : int, default=0
        Index of this process in the process group.
    world_size : int, default=1
        Number of processes.
    micro_batch_size : int or None, default=None
        Most rows one forward pass holds on this process; None puts the process's whole
        slice of a batch in one pass.
    comm_device : torch.device, default=cpu
        Where collective tensors live (the GPU for NCCL, the CPU for gloo).
    """

    rank: int = 0
    world_size: int = 1
    micro_batch_size: int | None = None
    comm_device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files."""
        return self.rank == 0

    def shard(self, n_rows: int) -> np.ndarray:
        """Positions ``0..n_rows-1`` this process owns: a contiguous, near-equal slice.

        A process gets an empty slice when there are fewer rows than processes.
        """
        return np.array_split(np.arange(n_rows), self.world_size)[self.rank]

    def micro_batches(self, n_rows: int) -> Iterator[tuple[np.ndarray, float]]:
        """Split this process's slice of a global batch into micro-batches.

        Parameters
        ----------
        n_rows : int
            Rows in the global batch.

        Yields
        ------
        positions : ndarray of int
            Positions in the global batch of the micro-batch's rows.
        weight : float
            ``len(positions) / n_rows``: multiply the micro-batch's mean loss by it.
        """
        own = self.shard(n_rows)
        if len(own) == 0:
            return
        parts = 1 if self.micro_batch_size is None else -(-len(own) // self.micro_batch_size)
        for positions in np.array_split(own, parts):
            yield positions, len(positions) / n_rows

    def sync_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``parameters`` over all processes, in place.

        A process that had no rows in this batch contributes zeros.
        """
        if self.world_size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        # One flat buffer: a single collective instead of one per adapter matrix.
        flat = torch.cat([g.reshape(-1) for g in grads]).to(self.comm_device)
        dist.all_reduce(flat)
        offset = 0
        for parameter, grad in zip(parameters, grads, strict=True):
            size = grad.numel()
            parameter.grad = flat[offset : offset + size].view_as(grad).to(grad.device)
            offset += size

    def all_sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum of a float array over all processes (every process gets it)."""
        values = np.asarray(values, dtype=np.float64)
        if self.world_size == 1:
            return values
        tensor = torch.as_tensor(values, device=self.comm_device).clone()
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def broadcast_seed(self, seed: int) -> int:
        """Rank 0's seed, so ``random_state=None`` gives one shared seed per fit."""
        if self.world_size == 1:
            return seed
        tensor = torch.tensor([seed], dtype=torch.int64, device=self.comm_device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def broadcast_parameters(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Copy rank 0's values of ``parameters`` to every process, in place.

        Every process already computes identical weights; broadcasting at the start and the
        end of a fit makes that a guarantee rather than a consequence of identical float
        operations.
        """
        if self.world_size == 1:
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in parameters]).to(self.comm_device)
            dist.broadcast(flat, src=0)
            offset = 0
            for parameter in parameters:
                size = parameter.numel()
                parameter.copy_(flat[offset : offset + size].view_as(parameter))
                offset += size

    def gather_bytes(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every process's copy of a same-sized uint8 tensor (an RNG state), by rank."""
        if self.world_size == 1:
            return [state]
        local = state.to(self.comm_device)
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(gathered, local)
        return [t.cpu() for t in gathered]

    def seed_process(self, seed: int) -> None:
        """Give each process a torch RNG stream of its own (it only drives dropout).

        Identical streams would draw the same dropout masks on every process's slice.
        """
        if self.world_size > 1:
            torch.manual_seed(int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0]))

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.world_size > 1:
            dist.barrier()


def _launched_world_size() -> int:
    """World size a launcher (torchrun, accelerate launch) announced in the environment."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def local_device(device: torch.device) -> torch.device:
    """Pin an unindexed CUDA device to this process's GPU under a multi-process launch.

    ``torchrun`` and ``accelerate launch`` set ``LOCAL_RANK``; without this every process
    would compute on ``cuda:0``.
    """
    if device.type == "cuda" and device.index is None and _launched_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def data_parallel(device: torch.device, micro_batch_size: int | None = None) -> DataParallel:
    """Join the process group this fit runs in, if any.

    An initialized default process group is used as it is. Otherwise, when a launcher set
    ``WORLD_SIZE > 1`` (with ``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``), the group is
    initialized from those variables, with NCCL on CUDA and gloo on CPU, and destroyed when
    the interpreter exits. Without either, the fit runs in this process alone.

    Parameters
    ----------
    device : torch.device
        The device this process computes on (see :func:`local_device`).
    micro_batch_size : int or None, default=None
        Most rows per forward pass.

    Returns
    -------
    parallel : DataParallel
    """
    if not dist.is_available():
        return DataParallel(micro_batch_size=micro_batch_size)
    if not dist.is_initialized():
        if _launched_world_size() <= 1:
            return DataParallel(micro_batch_size=micro_batch_size)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        atexit.register(_destroy_process_group)
        logger.info(
            "Joined a %s process group: rank %d of %d",
            backend,
            dist.get_rank(),
            dist.get_world_size(),
        )
    if dist.get_world_size() == 1:
        return DataParallel(micro_batch_size=micro_batch_size)
    comm_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    return DataParallel(dist.get_rank(), dist.get_world_size(), micro_batch_size, comm_device)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
