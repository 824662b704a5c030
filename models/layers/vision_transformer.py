"""DINOv2 ViT encoder with registers (ViT-L/14 + 4 registers at full size).

Token sequence inside: cls + pos[0], then the registers (no position), then patches + pos[1:].
The output used downstream is the final-norm patch tokens only. No RoPE and no q/k norm here.
Tensor names follow the checkpoints: cls_token, pos_embed, register_tokens, patch_embed.proj,
blocks.N.*, norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import EncoderConfig
from models.layers.block import Block


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: [N, 3, H, W] -> [N, (H/p)*(W/p), C] in raster order."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoEncoder(nn.Module):
    """forward(images [N, 3, H, W], ImageNet-normalised) -> patch tokens [N, (H/p)*(W/p), C]."""

    def __init__(self, cfg: EncoderConfig, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid = cfg.pos_embed_grid
        self.num_register_tokens = cfg.num_register_tokens
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, cfg.num_heads, cfg.mlp_ratio, qk_norm=False, norm_eps=cfg.norm_eps,
                  layerscale_init=cfg.layerscale_init)
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=cfg.norm_eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise this module's own tensors (children have their own reset_parameters)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def position_table(self, rows: int, cols: int) -> torch.Tensor:
        """Absolute position embedding for a rows x cols grid: [1, 1 + rows*cols, C].

        The stored 37 x 37 table is resized with bicubic interpolation, antialias on, straight to
        (rows, cols), in float32; cls keeps its entry. A 37 x 37 grid uses the table as stored.
        """
        if rows == self.grid and cols == self.grid:
            return self.pos_embed
        table = self.pos_embed.float()
        cls_pos, patch_pos = table[:, :1], table[:, 1:]
        dim = table.shape[-1]
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(rows, cols), mode="bicubic", antialias=True)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
        return torch.cat((cls_pos, patch_pos), dim=1).to(self.pos_embed.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        rows, cols = h // self.patch_size, w // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(n, -1, -1), x), dim=1)
        x = x + self.position_table(rows, cols).to(x.dtype)
        x = torch.cat((x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens:]

