"""torchrun + DistributedDataParallel plumbing: process group, device, agreement between ranks, launch.

Under torchrun (``RANK``/``WORLD_SIZE`` in the environment) the process group uses NCCL on CUDA and gloo
on CPU; otherwise the run is a single process without a group. ``page4d train --nproc N`` re-runs the
same command line through ``python -m torch.distributed.run`` (PyTorch's own launcher).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from models.errors import Page4DError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise Page4DError("--device cuda: no CUDA device is visible to PyTorch; use --device cpu or auto")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device_choice: str) -> DistContext:
    """Join the torchrun process group (if any) and pick this rank's device."""
    if not under_torchrun():
        return DistContext(0, 1, 0, resolve_device(device_choice))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_choice, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, device)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_ranks(ctx: DistContext, flag: bool) -> bool:
    """True when ``flag`` holds on every rank (one all-reduce)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def any_rank(ctx: DistContext, flag: bool) -> bool:
    return not all_ranks(ctx, not flag)


def mean_over_ranks(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """The average of each scalar over the ranks (for logging)."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(stacked)
    return {k: float(v) / ctx.world for k, v in zip(keys, stacked.tolist())}


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m page4d_cli.main ARGV``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "page4d_cli.main", *argv]


def strip_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``argv`` (a ``page4d`` command line without ``--nproc``) on ``nproc`` local processes via torchrun;
    returns the exit code (130 when interrupted)."""
    proc = subprocess.Popen(torchrun_command(nproc, argv))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # torchrun received the same Ctrl-C and stops its workers (they checkpoint first); wait for it.
        proc.wait()
        return 130
