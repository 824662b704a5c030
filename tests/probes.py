"""Test-only views into the network: dense biases, attention weights, the q/k an attention call uses.

All of these allocate L x L tensors or recompute what the library does once: tiny inputs only.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch

import models.sparse_global as sparse_global_module
from models.epipolar import EpipolarPrior
from models.layers.attention import Attention, LowRankBias
from models.sparse_global import SparseGlobalBlock
from models.sparse_strategies import KeypointBias, TokenLayout


def dense(bias: LowRankBias) -> torch.Tensor:
    """The full [.., Lq, Lk] matrix of a low-rank bias."""
    return bias.query @ bias.key.transpose(-1, -2)


@contextlib.contextmanager
def probing(attn: Attention, callback: Callable[[torch.Tensor, torch.Tensor, Optional[LowRankBias]], None]):
    """Call ``callback(q, k, bias)`` with the final q, k (after norms and rotations) on every forward of ``attn``."""

    def forward(x, positions=None, rotations=(), bias=None):
        q, k, _ = attn.project(x, positions, rotations)
        callback(q, k, bias)
        return Attention.forward(attn, x, positions, rotations, bias)

    attn.forward = forward
    try:
        yield
    finally:
        del attn.forward


def epipolar_dense_bias(prior: EpipolarPrior, b: int, t: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[V*N, V*N] epipolar bias of one instant (all query cameras at once)."""
    N = prior.num_special + prior.patches
    zero = torch.zeros(N, prior.V * N, dtype=dtype, device=prior.centres.device)
    rows = [prior.row_bias(b, t, a, dtype) for a in range(prior.V)]
    return torch.cat([zero if r is None else r for r in rows], dim=0)


def landmark_key_sets(layout: TokenLayout, anchors: torch.Tensor) -> list[list[set[int]]]:
    """Reference key sets: [b][image] -> set of flat token indices its queries may see."""
    sets = []
    for b in range(anchors.shape[0]):
        anchor_tokens = [{i * layout.N + int(a) for a in anchors[b, i]} for i in range(layout.images)]
        per_image = []
        for i in range(layout.images):
            own = set(range(i * layout.N, (i + 1) * layout.N))
            per_image.append(own.union(*anchor_tokens))
        sets.append(per_image)
    return sets


@torch.no_grad()
def sparse_attention_weights(block: SparseGlobalBlock, x: torch.Tensor, positions: torch.Tensor,
                             keypoints: Optional[KeypointBias] = None,
                             keypoint_score: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """The attention weights a sparse block uses, read back by attending over identity values.

    landmark / dilated: {"tokens": [B, H, L, L]}; memory_bank: {"read": [B, H, M, L], "write": [B, H, L, M]}.
    """
    B, T, V, N, C = x.shape
    flat = x.reshape(B, T * V * N, C)
    pos = positions.repeat(1, T * V, 1)
    if block.strategy == "memory_bank":
        weights = _recording_attention(lambda: block._memory_bank(flat, pos, keypoints))
        return {"read": weights[0], "write": weights[1]}
    layout = TokenLayout(T, V, N, block.num_special)
    h = block.block.norm1(flat)
    q, k, _ = block.block.attn.project(h, pos)
    L = flat.shape[1]
    eye = torch.eye(L, dtype=flat.dtype, device=flat.device).expand(B, q.shape[1], L, L)
    return {"tokens": block._pattern(q, k, eye, h, layout, keypoints, keypoint_score)}


def memory_after_read(block: SparseGlobalBlock, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The updated memory [B, M, C] of a memory_bank block for clip tokens x [B, T, V, N, C]."""
    B, T, V, N, C = x.shape
    return block._memory_bank(x.reshape(B, -1, C), positions.repeat(1, T * V, 1), None)[1]


def _recording_attention(run: Callable[[], object]) -> list[torch.Tensor]:
    """Run ``run()`` with sparse_global's attention calls also attending over identity values (weights)."""
    original = sparse_global_module.biased_attention
    weights = []

    def recording(q, k, v, scale, bias=None, mask=None):
        eye = torch.eye(k.shape[2], dtype=k.dtype, device=k.device).expand(q.shape[0], q.shape[1], -1, -1)
        weights.append(original(q, k, eye, scale, bias, mask))
        return original(q, k, v, scale, bias, mask)

    sparse_global_module.biased_attention = recording
    try:
        run()
    finally:
        sparse_global_module.biased_attention = original
    return weights
