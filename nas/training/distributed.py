"""Data-parallel training across processes launched by ``torchrun``.

``torchrun --nproc_per_node=N`` starts N processes and sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` joins them in one process group (NCCL on GPU, gloo on CPU). Without
those variables the run is a single process and every function here is a no-op.

Why no ``DistributedDataParallel``: a supernet step runs several subnets, each using a different
part of the weights, and accumulates their gradients. DDP would need
``find_unused_parameters=True`` and a reduction per backward pass. Instead every rank trains the
same subnets (sampled from a seed shared by all ranks) on its own shard of the batch, and
:func:`average_gradients` reduces all gradients once per step, in one flat bucket.

This module does not sample subnets or shard data; see :mod:`nas.training.loop`.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from nas.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by torchrun); a single process
    without them.

    Raises:
        ConfigError: the variables are malformed.
    """
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (launch with torchrun)"
                          ) from None
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={size}: need 0 <= RANK < WORLD_SIZE")
    return World(rank, size, local)


def setup(world: World, device: torch.device) -> None:
    """Joins the process group (NCCL for CUDA devices, gloo for CPU) when ``world`` has more
    than one process; sets the CUDA device to the local rank's."""
    if not world.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank,
                            world_size=world.size, timeout=datetime.timedelta(minutes=30))


def teardown(world: World) -> None:
    """Leaves the process group joined by :func:`setup`."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Waits for every rank (e.g. while rank 0 evaluates or writes a checkpoint)."""
    if world.distributed:
        dist.barrier()


def broadcast_parameters(model: nn.Module, world: World) -> None:
    """Copies rank 0's parameters and buffers to every rank."""
    if world.distributed:
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: list[nn.Parameter], world: World,
                      extra: torch.Tensor) -> torch.Tensor:
    """Averages the gradients of ``params`` and the values ``extra`` across ranks, in one
    all-reduce of one flat bucket.

    A parameter without a gradient counts as zeros; after the reduction it has a gradient on
    every rank if it had one on any rank (all ranks train the same subnets, so in practice the
    sets agree), and stays ``None`` on every rank otherwise, as in a single process.

    Args:
        params: the parameters, in the same order on every rank.
        world: the processes.
        extra: a 1-D float tensor reduced along (e.g. the step's losses, to stop every rank on a
            non-finite loss together).

    Returns:
        ``extra`` averaged across ranks (``extra`` itself in a single process).
    """
    if not world.distributed:
        return extra
    device = extra.device
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                            device=device)
    parts = [p.grad.reshape(-1).float() if p.grad is not None
             else torch.zeros(p.numel(), device=device) for p in params]
    bucket = torch.cat(parts + [has_grad, extra.float().reshape(-1)])
    dist.all_reduce(bucket)
    bucket /= world.size
    offset = 0
    for p, flag in zip(params, bucket[-len(extra) - len(params):-len(extra)].tolist()):
        n = p.numel()
        p.grad = bucket[offset:offset + n].view_as(p).to(p.dtype) if flag > 0 else None
        offset += n
    return bucket[-len(extra):]
