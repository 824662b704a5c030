"""Running a transformer ``Block`` with a custom attention pattern (sparse key sets, additive masks).

``Block.forward`` always attends densely over its whole sequence. Sparse Global-SA (``sparse_global``)
and the epipolar prior (``epipolar``) reuse a block's weights unchanged but choose, per query chunk,
which keys are seen and which logits are shifted. They use ``Attention.project`` (the block's q/k/v,
[B, H, L, D]), ``biased_attention`` (one fused call with a low-rank bias and an optional small additive
mask, ``models/layers/attention.py``) and the helpers here:

- ``attention_half(block, x, o)`` / ``mlp_half(block, x)``: the two residual halves of ``Block.forward``.
- ``run_block(block, x, positions, attention)``: norm1 -> q/k/v -> ``attention(q, k, v)`` -> proj ->
  LayerScale -> residual -> MLP half. With plain ``biased_attention`` it reproduces ``Block.forward``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from models.layers.block import Block


def merge_heads(o: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H*D]."""
    B, H, L, D = o.shape
    return o.transpose(1, 2).reshape(B, L, H * D)


def attention_half(block: Block, x: torch.Tensor, attention_out: torch.Tensor) -> torch.Tensor:
    """x + ls1(proj(o)) for o [B, H, L, D] computed by some attention pattern on norm1(x)."""
    return x + block.ls1(block.attn.proj(merge_heads(attention_out)))


def mlp_half(block: Block, x: torch.Tensor) -> torch.Tensor:
    """x + ls2(mlp(norm2(x)))."""
    return x + block.ls2(block.mlp(block.norm2(x)))


def run_block(
    block: Block,
    x: torch.Tensor,
    positions: Optional[torch.Tensor],
    attention: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``Block.forward`` with the attention pattern replaced: x [B, L, C] -> [B, L, C].

    ``attention(q, k, v)`` gets [B, H, L, D] tensors and returns [B, H, L, D].
    """
    q, k, v = block.attn.project(block.norm1(x), positions)
    return mlp_half(block, attention_half(block, x, attention(q, k, v)))
