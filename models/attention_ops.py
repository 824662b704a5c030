"""Running a transformer ``Block`` with a custom attention pattern (sparse key sets, additive masks).

``Block.forward`` always attends densely over its whole sequence. Sparse Global-SA (``sparse_global``)
and the epipolar prior (``epipolar``) reuse a block's weights unchanged but choose, per query chunk,
which keys are seen and which logits are shifted. They do it with the three functions here:

- ``project_qkv(attn, h, positions)``: the block's q/k/v exactly as ``Attention.forward`` makes them
  (qkv projection, q/k norms, 2D RoPE), [B, H, L, D] each.
- ``attend(q, k, v, scale, bias, mask)``: softmax(scale * q k^T + bias + mask) v with one fused
  ``scaled_dot_product_attention`` call. ``bias`` is a ``LowRankBias`` carried as extra q/k channels
  (no Lq x Lk tensor for it); ``mask`` is an optional additive float or boolean ``attn_mask`` that the
  caller keeps small (one chunk of queries). ``v`` may have a different width than q/k (tests pass an
  identity matrix as values to read the attention weights back).
- ``run_block(block, x, positions, attention)``: norm1 -> q/k/v -> ``attention(q, k, v)`` -> proj ->
  LayerScale -> residual -> MLP half. With ``attention = attend`` it reproduces ``Block.forward``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from models.layers.attention import Attention, biased_attention
from models.layers.block import Block


def project_qkv(attn: Attention, h: torch.Tensor, positions: Optional[torch.Tensor]):
    """h [B, L, C] (already norm1'ed), positions [B|1, L, 2] or None -> q, k, v [B, H, L, D]."""
    return attn.project(h, positions)


# The fused, low-rank-biased attention of every block, with an optional small additive mask.
attend = biased_attention


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

    ``attention(q, k, v)`` gets [B, H, L, D] tensors and returns [B, H, L, D]. The block's
    ``attn.probe`` test hook, when set, is called as in ``Attention.forward`` (bias argument None:
    the pattern is the caller's).
    """
    q, k, v = project_qkv(block.attn, block.norm1(x), positions)
    if block.attn.probe is not None:
        block.attn.probe(q, k, None)
    return mlp_half(block, attention_half(block, x, attention(q, k, v)))
