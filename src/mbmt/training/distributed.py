"""One process or many: the device, rank and world of a training run.

A run started by ``torchrun`` (WORLD_SIZE > 1 in the environment) joins a torch.distributed
process group (NCCL on CUDA, gloo on CPU) and trains with DistributedDataParallel; a plain
``mbmt train`` is the same code with a world of one. Only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from mbmt.device import resolve_device
from mbmt.errors import ParamsError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process runs and which part of the world it is."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def setup(device: str) -> DistributedContext:
    """Join the process group described by torchrun's environment, if any (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if torch_device.type == "cuda":
            torch.cuda.set_device(torch_device)
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        # A generous timeout: rank 0 alone writes checkpoints and runs nothing collective meanwhile.
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=30),
                                device_id=torch_device if torch_device.type == "cuda" else None)
    return DistributedContext(device=torch_device, rank=rank, local_rank=local_rank, world_size=world_size)


def teardown(context: DistributedContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch_size(global_batch_size: int, world_size: int) -> int:
    """train.batch_size is the global batch; each rank takes an equal share."""
    if global_batch_size % world_size:
        raise ParamsError(
            f"train.batch_size {global_batch_size} is the global batch and must divide evenly over the "
            f"{world_size} processes; use a multiple of {world_size} or start {global_batch_size} or fewer processes "
            f"that divide it"
        )
    return global_batch_size // world_size


def barrier(context: DistributedContext) -> None:
    if context.distributed:
        dist.barrier()


def broadcast_object(obj: Any, context: DistributedContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not context.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any, context: DistributedContext) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not context.distributed:
        return [obj]
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over ranks (in place; returned for chaining)."""
    if context.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, in place.

    Without SyncBatchNorm (gloo on CPU) each rank's statistics follow its own share of the batches,
    so ranks would validate different models; rank 0's are the ones checkpointed and published.
    """
    if context.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


class ShardSampler(Sampler[int]):
    """Rank ``rank``'s strided share of ``range(length)`` in blocks of ``block`` consecutive
    indices (rank r: blocks r, r + world_size, ...), in order, without padding.

    For evaluation: unlike DistributedSampler it never repeats a sample to even out the ranks,
    so metrics summed over ranks count every image exactly once; and a block (a batch of a
    batch-averaged metric) stays whole on one rank.
    """

    def __init__(self, length: int, rank: int, world_size: int, block: int = 1):
        self.indices: Sequence[int] = [index for start in range(rank * block, length, world_size * block)
                                       for index in range(start, min(start + block, length))]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

