"""Epipolar prior for View-SA: penalise cross-camera patch pairs far from each other's epipolar line.

Given cameras per image - intrinsics [B, T, V, 3, 3] in **network-input pixels** (the H x W images fed to
the network; scale K if you resized) and extrinsics [B, T, V, 4, 4] or [B, T, V, 3, 4], world-to-camera
(camera-from-world), OpenCV axes (x right, y down, z forward) - View-SA of the prior's layers adds to
its logits, for a query patch i of camera a and a key patch j of camera b != a at the same instant:

    -epipolar_penalty   if dist(centre_j, epipolar line of centre_i in camera b) > epipolar_band * patch
    0                   otherwise, and for same-camera pairs and every pair involving a special token.

Pixel convention: the image spans [0, W] x [0, H] (principal point W/2, H/2 is the image centre, as
the camera head's intrinsics), so patch (r, c) has centre ((c + 0.5) * p, (r + 0.5) * p).
Fundamental matrix from a to b (x_a pixel -> line in b): F = K_b^-T [t]x R K_a^-1 with
R = R_b R_a^T, t = t_b - R t_a. A line with (l0, l1) ~ 0 (the query centre is the epipole) penalises
nothing. Degenerate baseline: camera centres closer than 1e-6 * max(1, |c_a|, |c_b|) leave F undefined;
the prior is skipped for that pair (no penalty) with one ``models.errors.NetworkWarning`` per forward
naming the pairs (``reconstruct`` hands it to its reporter once, see ``pipeline.predict``).

Defaults (``Page4DConfig``): epipolar_penalty = 4.0 logits (weight x e^-4 ~ 0.018: a strong but soft
prior that coarse or wrong cameras cannot turn into a hard block; the same magnitude as the lambda
clamp), epipolar_band = 2.0 patches (patch-centre quantisation alone moves a true match up to ~0.7
patch from the line of the query's centre; 2 patches leaves room for coarse poses).
epipolar_layers = None means the mid layers L_mid (the View-SA of section 3.1).

Memory: the bias is not low-rank. It is built for one instant and one query camera at a time: an
additive [N, V*N] mask in the compute dtype (full size, N = 1374, V = 4: 30.2 MB float32 / 15.1 MB
bf16), from one [P, P] float32 distance matrix per camera pair at a time (7.5 MB). Never
[V*N, V*N] (121 MB) and never [B, T, V*N, V*N]. Recomputed per layer and stream (no cache: a cache
would be T times the per-instant size). A backend without fused attention also materialises the
[H, N, V*N] logits of that chunk.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from models.attention_ops import run_block
from models.errors import NetworkWarning
from models.inputs import InputShapeError
from models.layers.attention import LowRankBias, biased_attention
from models.layers.block import Block

DEGENERATE_BASELINE = 1e-6
ROTATION_TOLERANCE = 1e-3


def check_cameras(intrinsics: Optional[torch.Tensor], extrinsics: Optional[torch.Tensor],
                  lead: tuple[int, int, int]) -> None:
    """Both or neither; intrinsics [B, T, V, 3, 3], extrinsics [B, T, V, 4, 4] or [B, T, V, 3, 4]."""
    if intrinsics is None and extrinsics is None:
        return
    if intrinsics is None or extrinsics is None:
        raise InputShapeError("intrinsics and extrinsics must be given together (or neither)")
    for name, tensor in (("intrinsics", intrinsics), ("extrinsics", extrinsics)):
        if not isinstance(tensor, torch.Tensor):
            raise InputShapeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tuple(intrinsics.shape) != (*lead, 3, 3):
        raise InputShapeError(f"intrinsics must have shape {(*lead, 3, 3)} [B, T, V, 3, 3], "
                              f"got {tuple(intrinsics.shape)}")
    if tuple(extrinsics.shape) not in ((*lead, 4, 4), (*lead, 3, 4)):
        raise InputShapeError(f"extrinsics must have shape {(*lead, 4, 4)} (or {(*lead, 3, 4)}), world-to-camera; "
                              f"got {tuple(extrinsics.shape)}")
    for name, tensor in (("intrinsics", intrinsics), ("extrinsics", extrinsics)):
        if not torch.isfinite(tensor.double()).all():
            raise InputShapeError(f"{name} contain NaN or infinite values")
    if (torch.linalg.det(intrinsics.double()).abs() < 1e-12).any():
        raise InputShapeError("intrinsics must be invertible (non-zero focal lengths)")
    R = extrinsics[..., :3, :3].double()
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    if ((R @ R.transpose(-1, -2) - eye).abs().amax() > ROTATION_TOLERANCE) or (torch.linalg.det(R) < 0).any():
        raise InputShapeError("extrinsics[..., :3, :3] must be rotations (rigid world-to-camera transforms)")


def skew(t: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [..., 3, 3] with skew(t) @ x = t x x."""
    zero = torch.zeros_like(t[..., 0])
    x, y, z = t.unbind(-1)
    return torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*t.shape, 3)


def fundamental_matrices(intrinsics: torch.Tensor, extrinsics: torch.Tensor):
    """K [B, T, V, 3, 3], world-to-camera [B, T, V, 3|4, 4] -> F [B, T, V, V, 3, 3], valid [B, T, V, V].

    F[..., a, b, :, :] maps a pixel of camera a to its epipolar line in camera b (float64).
    valid is False on the diagonal and for degenerate baselines.
    """
    K = intrinsics.double()
    R = extrinsics[..., :3, :3].double()
    t = extrinsics[..., :3, 3].double()
    V = K.shape[2]
    R_a, R_b = R[:, :, :, None], R[:, :, None, :]
    t_a, t_b = t[:, :, :, None], t[:, :, None, :]
    R_ab = R_b @ R_a.transpose(-1, -2)  # [B, T, V, V, 3, 3]
    t_ab = t_b - (R_ab @ t_a[..., None])[..., 0]
    K_inv = torch.linalg.inv(K)
    F = K_inv[:, :, None, :].transpose(-1, -2) @ skew(t_ab) @ R_ab @ K_inv[:, :, :, None]
    centres = -(R.transpose(-1, -2) @ t[..., None])[..., 0]  # [B, T, V, 3]
    gap = (centres[:, :, :, None] - centres[:, :, None, :]).norm(dim=-1)
    size = torch.maximum(centres.norm(dim=-1)[:, :, :, None], centres.norm(dim=-1)[:, :, None, :]).clamp(min=1.0)
    valid = gap > DEGENERATE_BASELINE * size
    valid &= ~torch.eye(V, dtype=torch.bool, device=K.device)
    return F, valid


class EpipolarPrior:
    """The prior for one forward pass: fundamental matrices once, masks per instant and query camera."""

    def __init__(self, intrinsics: torch.Tensor, extrinsics: torch.Tensor, grid: tuple[int, int], patch_size: int,
                 num_special: int, band: float, penalty: float) -> None:
        self.B, self.T, self.V = intrinsics.shape[:3]
        self.num_special = num_special
        self.band_px = float(band) * patch_size
        self.penalty = float(penalty)
        self.F, self.valid = fundamental_matrices(intrinsics, extrinsics)
        # One host copy of the validity flags (one synchronisation per forward): the per-(instant,
        # camera) decisions below read Python booleans, never ``bool(tensor)``.
        self.valid_host: list = self.valid.cpu().tolist()  # [B][T][V][V]
        pairs = [[b, t, a, c] for b in range(self.B) for t in range(self.T) for a in range(self.V)
                 for c in range(self.V) if a != c and not self.valid_host[b][t][a][c]]
        if pairs:
            shown = ", ".join(f"(b={b}, t={t}, cams {a}-{c})" for b, t, a, c in pairs[:4] if a < c)
            warnings.warn(f"epipolar prior: {len(pairs) // 2} camera pair(s) share a camera centre (no baseline, "
                          f"fundamental matrix undefined); prior skipped for them: {shown}", NetworkWarning,
                          stacklevel=3)
        rows, cols = grid
        r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                              indexing="ij")
        centres = torch.stack(((c + 0.5) * patch_size, (r + 0.5) * patch_size, torch.ones_like(r)), dim=-1)
        self.centres = centres.reshape(-1, 3).to(intrinsics.device)  # [P, 3] homogeneous pixels, raster order
        self.patches = rows * cols

    def distances(self, b: int, t: int, a: int, c: int) -> torch.Tensor:
        """[P, P] pixel distance of key patch centres in camera c from the line of each query centre of a."""
        lines = self.centres @ self.F[b, t, a, c].transpose(0, 1)  # [P, 3]
        norm = lines[:, :2].norm(dim=-1, keepdim=True)
        at_epipole = norm <= 1e-9 * norm.amax()  # query centre at the epipole: no line, no penalty
        lines = torch.where(at_epipole, torch.zeros_like(lines), lines / norm.clamp(min=1e-300))
        return (lines.float() @ self.centres.float().transpose(0, 1)).abs()

    def far(self, b: int, t: int, a: int, c: int) -> torch.Tensor:
        """[P, P] bool: True where the pair (query patch of a, key patch of c) is penalised."""
        if not self.valid_host[b][t][a][c]:
            return torch.zeros(self.patches, self.patches, dtype=torch.bool, device=self.centres.device)
        return self.distances(b, t, a, c) > self.band_px

    def row_bias(self, b: int, t: int, a: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """Additive bias [N, V*N] for the N queries of camera a at (b, t); None when it is all zero."""
        if not any(self.valid_host[b][t][a]):
            return None
        S, P, V = self.num_special, self.patches, self.V
        N = S + P
        bias = torch.zeros(N, V, N, dtype=dtype, device=self.centres.device)
        for c in range(V):
            if c != a and self.valid_host[b][t][a][c]:
                bias[S:, c, S:].masked_fill_(self.far(b, t, a, c), -self.penalty)
        return bias.reshape(N, V * N)


def _slice_bias(bias: Optional[LowRankBias], seq: int, rows: slice) -> Optional[LowRankBias]:
    """The factors of sequence ``seq`` and query ``rows`` (size-1 leading dims broadcast)."""
    if bias is None:
        return None
    q, k = bias.query, bias.key
    qs = seq if q.shape[0] > 1 else 0
    ks = seq if k.shape[0] > 1 else 0
    q = q[qs:qs + 1]
    return LowRankBias(q[:, :, rows] if q.shape[2] > 1 else q, k[ks:ks + 1])


def epipolar_view_block(block: Block, seq: torch.Tensor, positions: torch.Tensor, bias: Optional[LowRankBias],
                        prior: EpipolarPrior) -> torch.Tensor:
    """View-SA ``block`` on seq [B*T, V*N, C] with the prior added to its logits -> [B*T, V*N, C].

    positions [1, V*N, 2]; bias: the layer's low-rank (mask) bias, kept as extra q/k channels.
    """
    T, V = prior.T, prior.V
    N = seq.shape[1] // V
    scale = block.attn.scale

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sequences = []
        for s in range(q.shape[0]):
            b, t = divmod(s, T)
            cams = []
            for a in range(V):
                rows = slice(a * N, (a + 1) * N)
                mask = prior.row_bias(b, t, a, q.dtype)
                mask = mask[None, None] if mask is not None else None
                cams.append(biased_attention(q[s:s + 1, :, rows], k[s:s + 1], v[s:s + 1], scale,
                                   _slice_bias(bias, s, rows), mask))
            sequences.append(torch.cat(cams, dim=2))
        return torch.cat(sequences, dim=0)

    return run_block(block, seq, positions, attention)
