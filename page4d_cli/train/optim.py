"""AdamW over the parameter groups, linear warm-up then cosine decay, per-module gradient clipping.

    optimizer = build_optimizer(groups, lr=1e-5, lr_new=1e-3)
    scheduler = build_scheduler(optimizer, steps=1000, warmup=50)     # one scheduler.step() per step
    norms = clip_per_module(model, max_norm=1.0)                       # {"aggregator": ..., ...}

Clipping is per module as PAGE-4D/VGGT do (aggregator, camera head, depth head, point head; each to
norm 1.0), so a large camera-head gradient does not shrink the aggregator's update.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from page4d_cli.train.param_groups import ParamGroup

CLIP_MODULES = ("aggregator", "camera_head", "depth_head", "point_head")


def build_optimizer(groups: list[ParamGroup], lr: float, lr_new: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW with one torch param group per ``ParamGroup`` (``group["name"]`` names it in the logs)."""
    torch_groups = [{"params": g.params, "lr": lr_new if g.lr_kind == "new" else lr,
                     "weight_decay": g.weight_decay, "name": g.name, "lr_kind": g.lr_kind} for g in groups]
    return torch.optim.AdamW(torch_groups, lr=lr, betas=betas)


def warmup_cosine(step: int, steps: int, warmup: int, min_factor: float = 0.0) -> float:
    """Learning-rate factor for 0-based ``step``: (step+1)/warmup during warm-up, then cosine to
    ``min_factor`` at the last step. The first step never has a zero learning rate."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, steps: int, warmup: int,
                    min_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps, warmup, min_factor))


def clip_per_module(model: nn.Module, max_norm: float) -> dict[str, float]:
    """Clip each module's trainable gradients to ``max_norm``; returns the pre-clip norms (inf/nan kept,
    so the caller can skip the step)."""
    norms = {}
    for name in CLIP_MODULES:
        module = getattr(model, name, None)
        if module is None:
            continue
        grads = [p for p in module.parameters() if p.requires_grad and p.grad is not None]
        if grads:
            norms[name] = float(torch.nn.utils.clip_grad_norm_(grads, max_norm, error_if_nonfinite=False))
    return norms


def total_norm(norms: dict[str, float]) -> float:
    """The global gradient norm from per-module norms."""
    return math.sqrt(sum(n * n for n in norms.values())) if norms else 0.0


def lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Learning rate per kind ("lr_blocks", "lr_new") now in force."""
    return {f"lr_{g['lr_kind']}": g["lr"] for g in optimizer.param_groups}
