"""One process or many: torchrun's environment, the process group, the device, and averages over ranks.

`torchrun --nproc_per_node=N` sets RANK, LOCAL_RANK and WORLD_SIZE; with more than one process the group
starts (gloo on CPU, NCCL on GPU). Rank 0 is the main process: it alone writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import GlassError


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; start the process group when there is more than one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank, local, world)


def barrier(d: Dist) -> None:
    if d.enabled:
        torch.distributed.barrier()


def shutdown_distributed(d: Dist) -> None:
    """Close the process group before exit: a gloo group left open can abort the process as it ends."""
    if d.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def pick_device(name: str, d: Dist) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GlassError("config key device is cuda, but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise GlassError("config key device is mps, but MPS is not available")
    if name == "cuda" and d.enabled:
        name = f"cuda:{d.local_rank}"
    if name.startswith("cuda"):
        torch.cuda.set_device(torch.device(name))
    return name


def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of x over all processes (x itself with one process)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def gather_json(obj, d: Dist, device: str = "cpu") -> list:
    """Every rank's JSON-able obj, in rank order, on every rank: sent as UTF-8 bytes in tensors (no pickle)."""
    if not d.enabled:
        return [obj]
    import json

    import torch.distributed as dist

    data = json.dumps(obj).encode("utf-8")
    size = torch.tensor([len(data)], device=device)
    sizes = [torch.zeros_like(size) for _ in range(d.world_size)]
    dist.all_gather(sizes, size)
    padded = torch.zeros(int(max(sizes).item()), dtype=torch.uint8, device=device)
    padded[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    parts = [torch.zeros_like(padded) for _ in range(d.world_size)]
    dist.all_gather(parts, padded)
    return [json.loads(bytes(p[: int(n.item())].cpu().tolist()).decode("utf-8")) for p, n in zip(parts, sizes)]
