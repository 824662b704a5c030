"""The dynamic-object mask: spatial mask head (M~), fusion with an external mask (M), logit biases.

- ``SpatialMaskHead`` reads the patch tokens of one layer (a detached copy) laid out as a (C, h, w) map
  per image and returns M~ in (-0.5, 0.5), one value per patch. Two checkpoint layouts:
  * ``official`` (PAGE-4D ``checkpoint_mask.pt``): every channel standardised over the grid (unbiased
    std clamped at 1e-6); depthwise 3x3 (head0.0), GELU, 1x1 C -> hidden (head0.2), GELU, 1x1 hidden
    -> 1 (head0.4); M~ = sigmoid(logit + channel-mean of the standardised map) - 0.5.
  * ``ckpt150`` (``checkpoint_150.pt``): no standardisation; depthwise 3x3 (head0.0), GELU, depthwise
    3x3 (head0.2), GELU, 1x1 C -> 1 (head0.4) gives the logit m; tau = softplus(tau_logit). That
    checkpoint's "suppress" probability is sigmoid(-m / tau); here M~ = 0.5 - suppress
    = sigmoid(m / tau) - 0.5, the same sign convention and range as the official head.
    alpha = softplus(alpha_logit) is reported (``trained_alpha``) but not used: our bias strength
    is the lambdas below.
- ``MaskFusion``: M = sigmoid(alpha * M~ + beta * M_ext), learnable scalars (1.0 at init), or with
  ``use_gating`` a per-image gate: a small MLP on image statistics of M~ and M_ext that outputs
  (alpha, beta), initialised to output exactly the scalar initial values.
- ``MaskBias``: the four lambdas (View-SA pose/geo, Time-SA pose/geo), initialised to 0 and clamped to
  [-c, c] when used, and the construction of the low-rank logit bias
  logits[q, k] += sign * lambda * M[k] (see ``models.layers.attention.LowRankBias``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.layers.attention import LowRankBias
from models.token_layout import AttentionKind, Stream


class SpatialMaskHead(nn.Module):
    """forward(patch_tokens [N, P, C], rows, cols) -> M~ [N, P] in (-0.5, 0.5)."""

    def __init__(self, dim: int, layout: str = "official", hidden: int = 256) -> None:
        super().__init__()
        self.layout = layout
        if layout == "official":
            self.head0 = nn.Sequential(
                nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU(),
                nn.Conv2d(dim, hidden, 1), nn.GELU(),
                nn.Conv2d(hidden, 1, 1),
            )
        elif layout == "ckpt150":
            self.head0 = nn.Sequential(
                nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU(),
                nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU(),
                nn.Conv2d(dim, 1, 1),
            )
            self.alpha_logit = nn.Parameter(torch.zeros(()))
            self.tau_logit = nn.Parameter(torch.zeros(()))
        else:
            raise ValueError(f"unknown mask head layout {layout!r}; use 'official' or 'ckpt150'")

    def reset_parameters(self) -> None:
        if self.layout == "ckpt150":
            nn.init.zeros_(self.alpha_logit)
            nn.init.zeros_(self.tau_logit)

    @property
    def trained_alpha(self) -> Optional[float]:
        return float(F.softplus(self.alpha_logit.detach())) if self.layout == "ckpt150" else None

    def forward(self, patch_tokens: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        n, p, c = patch_tokens.shape
        grid = patch_tokens.transpose(1, 2).reshape(n, c, rows, cols)
        if self.layout == "official":
            mean = grid.mean(dim=(2, 3), keepdim=True)
            std = grid.std(dim=(2, 3), keepdim=True, correction=1 if p > 1 else 0).clamp(min=1e-6)
            grid = (grid - mean) / std
            logit = self.head0(grid) + grid.mean(dim=1, keepdim=True)
            mask = torch.sigmoid(logit) - 0.5
        else:
            tau = F.softplus(self.tau_logit)
            mask = torch.sigmoid(self.head0(grid) / tau) - 0.5
        return mask.reshape(n, p)


class MaskFusion(nn.Module):
    """forward(m_tilde [B, T, V, P], m_ext [B, T, V, P] or None) -> (M [B, T, V, P], alpha, beta)."""

    def __init__(self, alpha_init: float = 1.0, beta_init: float = 1.0, use_gating: bool = False) -> None:
        super().__init__()
        self.use_gating = use_gating
        self.init_values = (float(alpha_init), float(beta_init))
        if use_gating:
            # Image statistics (mean/std of M~ and of M_ext) -> (alpha, beta). The last layer starts
            # at zero weight with bias = the initial scalars: exactly the scalar fusion at init.
            self.gate = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 2))
        else:
            self.alpha = nn.Parameter(torch.empty(()))
            self.beta = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.use_gating:
                self.gate[0].reset_parameters()
                nn.init.zeros_(self.gate[2].weight)
                self.gate[2].bias.copy_(torch.tensor(self.init_values))
            else:
                self.alpha.fill_(self.init_values[0])
                self.beta.fill_(self.init_values[1])

    def forward(self, m_tilde: torch.Tensor, m_ext: Optional[torch.Tensor]):
        if m_ext is None:
            m_ext = torch.zeros_like(m_tilde)
        if self.use_gating:
            stats = torch.stack((m_tilde.mean(-1), m_tilde.std(-1, correction=0),
                                 m_ext.mean(-1), m_ext.std(-1, correction=0)), dim=-1)
            alpha, beta = self.gate(stats.to(self.gate[0].weight.dtype)).unbind(-1)
            alpha, beta = alpha[..., None], beta[..., None]
        else:
            alpha, beta = self.alpha, self.beta
        return torch.sigmoid(alpha * m_tilde + beta * m_ext), alpha, beta


class MaskBias(nn.Module):
    """The learnable lambdas and the low-rank logit biases they define.

    Dual stream: pose stream logits[q, k] -= lambda_pose * M[k]; geometry stream += lambda_geo * M[k].
    Single stream (PAGE-4D's query-role bias): rows of camera/register queries get -lambda_pose * M[k],
    rows of patch queries +lambda_geo * M[k]. Time-SA uses lambda_pose_t / lambda_geo_t.
    """

    NAMES = ("lambda_pose", "lambda_geo", "lambda_pose_t", "lambda_geo_t")

    def __init__(self, clamp_value: float = 4.0) -> None:
        super().__init__()
        self.clamp_value = float(clamp_value)
        for name in self.NAMES:
            self.register_parameter(name, nn.Parameter(torch.zeros(())))

    def reset_parameters(self) -> None:
        for name in self.NAMES:
            nn.init.zeros_(getattr(self, name))

    def value(self, name: str) -> torch.Tensor:
        return getattr(self, name).clamp(-self.clamp_value, self.clamp_value)

    def values(self) -> dict[str, float]:
        """The lambdas in force (after the clamp)."""
        return {name: float(self.value(name).detach()) for name in self.NAMES}

    def bias(self, key_mask: torch.Tensor, stream: Stream, attention: AttentionKind, num_special: int,
             tokens_per_image: int) -> LowRankBias:
        """Bias for one attention call.

        key_mask: [Bs, L] the mask broadcast to the sequence's tokens (0 at special tokens).
        stream: "pose", "geo" or "shared" (single stream); attention: "time" or "view".
        """
        suffix = "_t" if attention == "time" else ""
        lam_pose = self.value("lambda_pose" + suffix)
        lam_geo = self.value("lambda_geo" + suffix)
        key = key_mask[:, None, :, None]  # [Bs, 1, L, 1]
        if stream == "pose":
            query = (-lam_pose).reshape(1, 1, 1, 1)
        elif stream == "geo":
            query = lam_geo.reshape(1, 1, 1, 1)
        else:
            is_special = torch.zeros(tokens_per_image, dtype=torch.bool, device=key_mask.device)
            is_special[:num_special] = True
            per_token = torch.where(is_special, -lam_pose, lam_geo)
            query = per_token.repeat(key_mask.shape[1] // tokens_per_image)[None, None, :, None]
        return LowRankBias(query.to(key.dtype), key)


def pool_to_patches(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """An image-resolution mask [..., H, W] -> fraction of each patch covered [..., (H/p)*(W/p)]."""
    lead = mask.shape[:-2]
    h, w = mask.shape[-2:]
    pooled = F.avg_pool2d(mask.reshape(-1, 1, h, w).float(), patch_size)
    return pooled.reshape(*lead, -1)
