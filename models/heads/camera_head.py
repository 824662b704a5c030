"""VGGT camera head (tensor names: ``camera_head.*`` of the VGGT / PAGE-4D checkpoints).

Input: the camera token (index 0) of the last layer's 2C-channel output, one per image; all images of
the clip attend to each other in the trunk. ``iterations`` refinement steps, each:

    cond   = embed_pose(previous encoding, detached; ``empty_pose_tokens`` the first time)
    shift, scale, gate = poseLN_modulation(cond)            (SiLU + Linear(2C, 6C))
    x      = gate * (LN_no_affine(tokens) * (1 + scale) + shift) + tokens
    x      = trunk_norm(trunk(x))                           (plain blocks, LayerScale, no RoPE)
    enc   += pose_branch(x)                                 (MLP 2C -> C -> 9)

``tokens`` is the normalised camera token each time (the trunk's output is not carried over). The
returned encodings are activated: translation and quaternion linear, field of view ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from models.config import CameraHeadConfig
from models.layers.block import Block, Mlp

POSE_ENCODING_DIM = 9


class CameraHead(nn.Module):
    """forward(camera_tokens [B, S, 2C]) -> list of ``iterations`` encodings [B, S, 9] (float32)."""

    def __init__(self, dim_in: int, cfg: CameraHeadConfig) -> None:
        super().__init__()
        self.iterations = cfg.iterations
        self.trunk = nn.Sequential(*[
            Block(dim_in, cfg.num_heads, cfg.mlp_ratio, qk_norm=False, norm_eps=1e-5, layerscale_init=0.01)
            for _ in range(cfg.trunk_depth)
        ])
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.empty_pose_tokens)

    def forward(self, camera_tokens: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.token_norm(camera_tokens)
        B, S, _ = tokens.shape
        encoding = None
        encodings = []
        for _ in range(self.iterations):
            if encoding is None:
                cond = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                cond = self.embed_pose(encoding.detach())
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            encoding = delta if encoding is None else encoding + delta
            encodings.append(activate_pose(encoding))
        return encodings


def activate_pose(encoding: torch.Tensor) -> torch.Tensor:
    """Translation and quaternion linear, field of view ReLU (VGGT's defaults)."""
    return torch.cat((encoding[..., :7], torch.relu(encoding[..., 7:])), dim=-1)
