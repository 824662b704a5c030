"""Pre-norm transformer block (VGGT "Block" / Pi3 "BlockRope" / DINOv2 block), its MLP and LayerScale.

x = x + ls1(attn(norm1(x)));  x = x + ls2(mlp(norm2(x))).  Tensor names match the checkpoints:
norm1, attn.{qkv, q_norm, k_norm, proj}, ls1.gamma, norm2, mlp.{fc1, fc2}, ls2.gamma.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from models.layers.attention import Attention, LowRankBias


class LayerScale(nn.Module):
    """x * gamma, per channel."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.init_value = float(init_value)
        self.gamma = nn.Parameter(torch.full((dim,), self.init_value))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int, out: Optional[int] = None, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """One transformer block. ``norm_eps`` / ``qk_norm_eps`` follow the source checkpoint's numerics.

    forward(x [B, L, C], positions, rotations, bias) -> [B, L, C]; see ``Attention``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
        qk_norm_eps: float = 1e-5,
        layerscale_init: Optional[float] = 0.01,
        rope: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, qk_norm_eps=qk_norm_eps, rope=rope)
        self.ls1 = LayerScale(dim, layerscale_init) if layerscale_init else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layerscale_init) if layerscale_init else nn.Identity()

    def set_eps(self, norm_eps: float, qk_norm_eps: float) -> None:
        """Adopt another source's LayerNorm numerics (weights loaded from Pi3 vs PAGE-4D)."""
        self.norm1.eps = self.norm2.eps = norm_eps
        for norm in (self.attn.q_norm, self.attn.k_norm):
            if isinstance(norm, nn.LayerNorm):
                norm.eps = qk_norm_eps

    @property
    def eps(self) -> tuple[float, float]:
        qk = self.attn.q_norm.eps if isinstance(self.attn.q_norm, nn.LayerNorm) else None
        return self.norm1.eps, qk

    def forward(
        self,
        x: torch.Tensor,
        positions: Optional[torch.Tensor] = None,
        rotations: tuple = (),
        bias: Optional[LowRankBias] = None,
    ) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), positions, rotations, bias))
        return x + self.ls2(self.mlp(self.norm2(x)))
