"""Activation checkpointing per aggregator block (``--checkpointing``).

Each transformer block of the aggregator (every layer's Time-SA and View-SA block, both streams, and the
Sparse Global-SA blocks) keeps only its input during the forward pass and recomputes its activations in
the backward pass (``torch.utils.checkpoint``, non-reentrant: works with DDP, autocast and blocks whose
arguments are closures such as the temporal rotation). Parameter names are unchanged: the block's
``forward`` is wrapped on the instance, the module tree is not.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _checkpointed(forward):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)  # inference: nothing to save
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    run.__page4d_checkpointed__ = True
    return run


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Wrap every aggregator block of ``model``; returns how many blocks were wrapped."""
    aggregator = model.aggregator
    blocks = [block for _, _, block in aggregator.all_blocks()]
    blocks += [sparse for _, _, sparse in aggregator.all_sparse_blocks()]
    for block in blocks:
        if not getattr(block.forward, "__page4d_checkpointed__", False):
            block.forward = _checkpointed(block.forward)
    return len(blocks)
