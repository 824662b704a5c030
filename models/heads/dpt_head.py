"""VGGT DPT head (depth and point heads; tensor names ``depth_head.*`` / ``point_head.*``).

Inputs: four aggregator layer outputs [B, S, N, 2C] (patch tokens only are used), a shared
LayerNorm(2C), reshaped to (2C, h, w). Per level: 1x1 projection, UV position embedding x 0.1, resize
(ConvTranspose 4x4/4, ConvTranspose 2x2/2, identity, Conv 3x3/2). Fusion from coarse to fine with
residual conv units (ReLU applied in place to the input, so the skip adds relu(x)), bilinear
(align_corners=True) upsampling; output_conv1, resize to the image, UV embedding again,
output_conv2 (3x3 -> 32, ReLU, 1x1 -> C_out).

Depth head (C_out = 2): depth = exp(ch0), confidence = 1 + exp(ch1).
Point head (C_out = 4): points = sign(y) * (exp(|y|) - 1) on ch0..2, confidence = 1 + exp(ch3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.config import DPTHeadConfig


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x is rectified IN PLACE (as VGGT's ``ReLU(inplace=True)``: the skip adds relu(x)); callers pass
        maps they no longer need. Both ReLUs in place: no extra full-size map."""
        x = torch.relu_(x)
        return self.conv2(torch.relu_(self.conv1(x))) + x


class FusionBlock(nn.Module):
    """out = out_conv(upsample(resConfUnit2(coarse + resConfUnit1(skip))))."""

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        x = coarse if skip is None else coarse + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Scratch(nn.Module):
    def __init__(self, features: int, out_channels: tuple[int, ...], output_dim: int) -> None:
        super().__init__()
        for i, channels in enumerate(out_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
        self.refinenet1 = FusionBlock(features)
        self.refinenet2 = FusionBlock(features)
        self.refinenet3 = FusionBlock(features)
        self.refinenet4 = FusionBlock(features, has_skip=False)
        self.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1)
        )


class DPTHead(nn.Module):
    """forward(layers: 4 x [B, S, N, 2C], image_hw, patch_start) -> (values [B, S, H, W, C_out-1],
    confidence [B, S, H, W]), run in chunks of ``frames_chunk`` images."""

    def __init__(self, dim_in: int, output_dim: int, activation: str, cfg: DPTHeadConfig,
                 patch_size: int = 14) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.activation = activation
        self.frames_chunk = cfg.frames_chunk
        oc = cfg.out_channels
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], 4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], 3, stride=2, padding=1),
        ])
        self.scratch = Scratch(cfg.features, oc, output_dim)

    def forward(self, layers: list[torch.Tensor], image_hw: tuple[int, int], patch_start: int):
        B, S = layers[0].shape[:2]
        values, confidences = [], []
        for start in range(0, S, self.frames_chunk):
            chunk = [x[:, start:start + self.frames_chunk, patch_start:] for x in layers]
            v, c = self._forward_images(chunk, image_hw)
            values.append(v)
            confidences.append(c)
        return torch.cat(values, dim=1), torch.cat(confidences, dim=1)

    def _forward_images(self, layers: list[torch.Tensor], image_hw: tuple[int, int]):
        B, S = layers[0].shape[:2]
        H, W = image_hw
        rows, cols = H // self.patch_size, W // self.patch_size
        s = self.scratch
        # Memory: every intermediate map is dropped as soon as it is consumed (each level's resized map
        # after its layer*_rn conv, each fused level after its refinenet, the full-resolution map after
        # output_conv2's first conv), and the ReLUs and UV additions act in place where VGGT's do.
        fused = []  # layer1_rn .. layer4_rn outputs
        for level, x in enumerate(layers):
            x = self.norm(x.reshape(B * S, rows * cols, -1))
            x = x.transpose(1, 2).reshape(B * S, -1, rows, cols)
            x = add_uv_embedding(self.projects[level](x), W / H, inplace=True)
            fused.append(getattr(s, f"layer{level + 1}_rn")(self.resize_layers[level](x)))
        del x
        out = s.refinenet4(fused.pop(3), size=fused[2].shape[2:])
        out = s.refinenet3(out, fused.pop(2), size=fused[1].shape[2:])
        out = s.refinenet2(out, fused.pop(1), size=fused[0].shape[2:])
        out = s.refinenet1(out, fused.pop(0))
        out = s.output_conv1(out)
        out = F.interpolate(out, size=(rows * self.patch_size, cols * self.patch_size), mode="bilinear",
                            align_corners=True)
        out = add_uv_embedding(out, W / H, inplace=True)
        conv_a, _, conv_b = s.output_conv2  # the ReLU is applied in place below
        out = conv_a(out)  # the features/2-channel full-resolution map is freed here
        out = conv_b(torch.relu_(out))
        out = out.permute(0, 2, 3, 1)  # [B*S, H, W, C_out]
        values, conf = out[..., :-1], out[..., -1]
        if self.activation == "exp":
            values = torch.exp(values)
        else:  # "inv_log": sign(y) * (exp(|y|) - 1)
            values = torch.sign(values) * torch.expm1(values.abs())
        conf = 1 + torch.exp(conf)
        return values.reshape(B, S, *values.shape[1:]), conf.reshape(B, S, *conf.shape[1:])


def uv_grid(width: int, height: int, aspect: float, device=None) -> torch.Tensor:
    """Centred UV grid [height, width, 2] spanning +-aspect/diag (u) and +-1/diag (v), pixel centres."""
    diag = math.sqrt(aspect**2 + 1.0)
    span_x, span_y = aspect / diag, 1.0 / diag
    xs = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, device=device)
    ys = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, device=device)
    vv, uu = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((uu, vv), dim=-1)


def sincos_embedding(dim: int, positions: torch.Tensor, omega_0: float = 100.0) -> torch.Tensor:
    """[M] positions -> [M, dim] = (sin, cos) of positions / omega_0^(2i/dim), computed in float64."""
    omega = torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2.0)
    omega = 1.0 / omega_0**omega
    angles = positions.reshape(-1).double()[:, None] * omega[None]
    return torch.cat((angles.sin(), angles.cos()), dim=1).float()


def add_uv_embedding(x: torch.Tensor, aspect: float, ratio: float = 0.1, inplace: bool = False) -> torch.Tensor:
    """x [N, C, h, w] + ratio * UV sin/cos embedding (first C/2 channels encode u, the rest v).

    ``inplace`` adds into x (a map the caller no longer needs: no second map of x's size)."""
    n, c, h, w = x.shape
    grid = uv_grid(w, h, aspect, device=x.device).reshape(-1, 2)
    emb = torch.cat((sincos_embedding(c // 2, grid[:, 0]), sincos_embedding(c // 2, grid[:, 1])), dim=-1)
    emb = emb.reshape(h, w, c).permute(2, 0, 1)[None]
    emb = (ratio * emb).to(x.dtype)
    return x.add_(emb) if inplace else x + emb
