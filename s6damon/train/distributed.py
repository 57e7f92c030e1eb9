"""Single-process or ``torchrun`` (DDP) execution, decided by the environment.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised with gloo on CPU
(nccl on CUDA), the model is wrapped in DDP, every rank keeps its share of each global
batch, and only rank 0 writes files. Without ``torchrun`` everything degrades to plain
single-process code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a (possibly 1-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu`` / ``cuda`` / ``auto`` (cuda when available) → a torch device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("model.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(device: str = "cpu") -> DistEnv:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and initialise the process group if needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistEnv(rank, world, local, dev)


def wrap(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    """Wrap in DDP when distributed (unused parameters allowed: frozen encoder, layerdrop)."""
    model.to(env.device)
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def mean(value: float, env: DistEnv) -> float:
    """Average a Python number over ranks."""
    if not env.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def gather(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj`` (on every rank)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
