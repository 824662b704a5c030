"""Multi-head attention with q/k norm, RoPE and a low-rank additive logit bias.

The dynamic-mask biases of PAGE-4D are never a full L x L matrix: they are a sum of a few products
of a query factor and a key factor,

    logits[q, k] = scale * <q, k> + sum_r A[q, r] * Bk[k, r]

(a key-only bias is rank one with A = 1; the query-role bias of single-stream mode is rank one with
A = +-lambda; ALiBi over T instants is rank T with one-hot key factors). Such a bias is carried by
``rank`` extra channels appended to q and k (A / scale on q, Bk on k) and zero channels on v, then one
fused ``scaled_dot_product_attention`` call with the original scale. Memory stays O(L * (D + rank)):
no L x L tensor is ever allocated, and fused kernels (flash / memory-efficient) remain usable.

On CUDA the padded channels cost real work (FlashAttention rounds head size 64 + 1 up to its 96 kernel),
so a nonzero bias there goes through FlexAttention instead (``torch.nn.attention.flex_attention``,
compiled, with a ``score_mod`` that adds the low-rank bias per (query, key)); the padded channels stay
the fallback (CPU, a torch without FlexAttention, an extra additive ``mask``, or a compile failure).
A bias that is exactly zero is not passed at all (the aggregator decides that, ``models/neutral.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import NetworkWarning


@dataclass
class LowRankBias:
    """logits[b, h, q, k] += sum_r query[b, h, q, r] * key[b, h, k, r].

    query: [B or 1, H or 1, Lq, R]; key: [B or 1, H or 1, Lk, R]. Broadcast over batch and heads.
    """

    query: torch.Tensor
    key: torch.Tensor

    @property
    def rank(self) -> int:
        return self.query.shape[-1]

    @staticmethod
    def concat(biases: list["LowRankBias"]) -> Optional["LowRankBias"]:
        biases = [b for b in biases if b is not None]
        if not biases:
            return None
        if len(biases) == 1:
            return biases[0]
        # Common [B, H] and sequence lengths of all factors, so they can be stacked on the rank axis.
        lead_shape = torch.broadcast_shapes(*(t.shape[:2] for b in biases for t in (b.query, b.key)))
        q_len = max(b.query.shape[2] for b in biases)
        k_len = max(b.key.shape[2] for b in biases)
        query = torch.cat([b.query.expand(*lead_shape, q_len, b.rank) for b in biases], dim=-1)
        key = torch.cat([b.key.expand(*lead_shape, k_len, b.rank) for b in biases], dim=-1)
        return LowRankBias(query, key)


def biased_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    bias: Optional[LowRankBias] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """softmax(scale * q k^T + bias + mask) v with one fused kernel call.

    q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Ev] -> [B, H, Lq, Ev]. ``bias`` is carried as extra
    q/k channels (no Lq x Lk tensor), or by FlexAttention on CUDA; ``mask`` is an optional additive
    float or boolean ``attn_mask`` broadcastable to [B, H, Lq, Lk] that the caller keeps small (one
    chunk of queries). ``v`` may be narrower or wider than q/k (tests pass an identity matrix as values
    to read the weights back).
    """
    if bias is None or bias.rank == 0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if mask is None and _flex_applies(q, v, bias):
        out = _flex_on_cuda(q, k, v, scale, bias)
        if out is not None:
            return out
    return padded_biased_attention(q, k, v, scale, bias, mask)


def padded_biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias: LowRankBias,
                            mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The bias as ``rank`` extra q/k channels (zero-padded to a multiple of 8), one SDPA call."""
    lead = q.shape[:2]
    D, rank = q.shape[-1], bias.rank
    # Pad to a multiple of 8 channels so fused kernels accept the head size; v alike when it has q's width.
    padded = -(-(D + rank) // 8) * 8
    extra = padded - D - rank
    q_bias = (bias.query.to(q.dtype) / scale).expand(*lead, q.shape[2], rank)
    k_bias = bias.key.to(k.dtype).expand(*lead, k.shape[2], rank)
    q = torch.cat((q, q_bias, q.new_zeros(*lead, q.shape[2], extra)), dim=-1)
    k = torch.cat((k, k_bias, k.new_zeros(*lead, k.shape[2], extra)), dim=-1)
    width = v.shape[-1]
    if width == D:
        v = torch.cat((v, v.new_zeros(*v.shape[:-1], padded - D)), dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)[..., :width]


# ----------------------------------------------------------------------------- FlexAttention (CUDA)
try:  # torch >= 2.5
    from torch.nn.attention.flex_attention import flex_attention as _flex_attention
except ImportError:  # pragma: no cover - older torch: padded channels only
    _flex_attention = None

USE_FLEX_ON_CUDA = True  # benchmarks switch it off to measure the padded path on a GPU
_compiled_flex: Optional[Callable] = None
_flex_broken = False


def flex_available() -> bool:
    return _flex_attention is not None


def _flex_applies(q: torch.Tensor, v: torch.Tensor, bias: LowRankBias) -> bool:
    """CUDA inference only: gradients through tensors captured by a compiled ``score_mod`` are not relied
    on (training keeps the padded channels, whose gradients are tested)."""
    needs_grad = torch.is_grad_enabled() and (bias.query.requires_grad or bias.key.requires_grad)
    return (USE_FLEX_ON_CUDA and not _flex_broken and _flex_attention is not None and q.is_cuda
            and v.shape[-1] == q.shape[-1] and not needs_grad)


def flex_biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias: LowRankBias,
                          compiled: bool = True) -> torch.Tensor:
    """FlexAttention with ``score_mod`` adding sum_r bias.query[b, h, q, r] * bias.key[b, h, k, r].

    The factors stay [B|1, H|1, L|1, R] (broadcast views, float32): no Lq x Lk tensor when compiled.
    ``compiled=False`` runs FlexAttention's eager reference (it materialises the scores: tests only).
    """
    B, H, Lq, _ = q.shape
    Lk, rank = k.shape[2], bias.rank
    bias_q = bias.query.float().expand(B, H, Lq, rank)
    bias_k = bias.key.float().expand(B, H, Lk, rank)

    def score_mod(score, b, h, q_idx, kv_idx):
        for r in range(rank):
            score = score + bias_q[b, h, q_idx, r] * bias_k[b, h, kv_idx, r]
        return score

    global _compiled_flex
    if compiled and _compiled_flex is None:
        # dynamic=None: after the first shape change one shape-generic kernel is compiled, so windows of
        # other lengths do not recompile (nor fall back to the eager path, which materialises the scores).
        _compiled_flex = torch.compile(_flex_attention)
    function = _compiled_flex if compiled else _flex_attention
    return function(q, k, v, score_mod=score_mod, scale=scale)


def _flex_on_cuda(q, k, v, scale, bias) -> Optional[torch.Tensor]:
    """FlexAttention, or None (and never again this process) if it cannot compile here."""
    global _flex_broken
    try:
        return flex_biased_attention(q, k, v, scale, bias)
    except Exception as error:  # noqa: BLE001 - any compile/runtime failure falls back to the padded path
        _flex_broken = True
        first_line = (str(error).strip().splitlines() or [""])[0]  # compile errors run to pages
        warnings.warn(f"FlexAttention unavailable ({type(error).__name__}: {first_line}); "
                      f"using padded bias channels instead", NetworkWarning, stacklevel=3)
        return None


class Attention(nn.Module):
    """qkv projection, optional q/k LayerNorm, RoPE, biased fused attention, output projection.

    forward(x [B, L, C], positions [B|1, L, 2] or None, rotations: callables applied to q and k after
    the 2D RoPE (e.g. the temporal rotation), bias: LowRankBias or None) -> [B, L, C]
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        qk_norm_eps: float = 1e-5,
        rope: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        # Shared, parameter-free module; kept out of the state dict by not being a child when None.
        self.rope = rope

    def forward(
        self,
        x: torch.Tensor,
        positions: Optional[torch.Tensor] = None,
        rotations: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (),
        bias: Optional[LowRankBias] = None,
    ) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.project(x, positions, rotations)
        out = biased_attention(q, k, v, self.scale, bias)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))

    def project(self, x: torch.Tensor, positions: Optional[torch.Tensor] = None,
                rotations: tuple = ()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, L, C] -> q, k, v [B, H, L, D]: qkv projection, q/k norms, 2D RoPE, extra rotations."""
        B, L, C = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and positions is not None:
            q, k = self.rope(q, positions), self.rope(k, positions)
        for rotate in rotations:
            q, k = rotate(q), rotate(k)
        return q, k, v
