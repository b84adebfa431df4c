"""Data-parallel helpers of :mod:`ecse.atomistic.training` (``torch.distributed``).

:func:`setup` reads the ``torchrun`` environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and initialises the process group
(``gloo`` on CPU, ``nccl`` on CUDA), or uses one the caller has already initialised.
A single process (no ``torchrun``, or ``WORLD_SIZE=1``) gets a context whose
collectives are no-ops, so the training loop has a single code path.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ["Context", "setup", "shard_bounds"]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous slice ``[start, stop)`` of ``n`` items taken by ``rank``.

    >>> [shard_bounds(5, r, 2) for r in range(2)], shard_bounds(1, 1, 2)
    ([(0, 2), (2, 5)], (0, 1))
    """
    return n * rank // world_size, n * (rank + 1) // world_size


@dataclass
class Context:
    """Where this process runs: ``rank`` of ``world_size`` on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: Optional[str] = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence) -> list:
        """This rank's contiguous part of ``items``."""
        start, stop = shard_bounds(len(items), self.rank, self.world_size)
        return list(items[start:stop])

    def all_reduce(self, values: Sequence[float]) -> list[float]:
        """Sums over the ranks of a few float64 numbers (no-op for one process)."""
        if not self.distributed:
            return [float(v) for v in values]
        import torch.distributed as dist

        device = self.device if self.backend == "nccl" else "cpu"
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)`` when distributed, else ``model``.

        ``find_unused_parameters`` is on when the model has an ECSE auxiliary model
        (it only runs on structures without a usable frame).
        """
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        # a [1, k] weight (head output layer) trips a harmless bucket-stride warning
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        return DistributedDataParallel(model, device_ids=device_ids,
                                       find_unused_parameters=_has_optional_parameters(model))

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def _has_optional_parameters(model: nn.Module) -> bool:
    """True when some parameters may be unused in a forward (ECSE's auxiliary model)."""
    return any(name.startswith("aux.") or ".aux." in name for name, _ in model.named_parameters())


def setup(backend: Optional[str], device: str) -> Context:
    """Context of this process; initialises the process group under ``torchrun``.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        ``None``: ``"nccl"`` when ``device`` is CUDA, else ``"gloo"``.
    device : str
        The configured device; ``"cuda"`` becomes ``"cuda:LOCAL_RANK"`` for several
        processes.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    import torch.distributed as dist

    initialised = dist.is_available() and dist.is_initialized()
    if not initialised and env_world <= 1:
        return Context(device=device)
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={env_world} but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if device == "cuda":
            device = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(device))
    owns = False
    if not initialised:
        chosen = backend or ("nccl" if device.startswith("cuda") else "gloo")
        dist.init_process_group(chosen, init_method="env://")
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    return Context(rank=rank, world_size=world, local_rank=local_rank, device=device,
                   backend=dist.get_backend(), owns_group=owns)
