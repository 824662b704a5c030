"""Epipolar prior: geometry on synthetic cameras, mask structure, View-SA path, inputs, fallbacks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models.epipolar import EpipolarPrior, check_cameras, epipolar_view_block
from models.errors import NetworkWarning
from models.inputs import InputShapeError
from models.layers.attention import LowRankBias
from models.layers.block import Block
from models.vggt import VGGT
from page4d_cli.data.synth_scene import look_at
from tests.probes import dense as dense_low_rank
from tests.probes import epipolar_dense_bias

PATCH = 14
PX = 112  # 8 x 8 patches
GRID = (PX // PATCH, PX // PATCH)
S = 5
Y_DOWN = (0.0, -1.0, 0.0)  # this rig's world has y down, like the cameras' (OpenCV) axes


def rig(angles_deg=(0.0, 25.0, -40.0), distance=5.0, focal=80.0, T=1):
    """Cameras on a circle around the origin, all looking at it: K [1, T, V, 3, 3], E [1, T, V, 4, 4]."""
    K = torch.tensor([[focal, 0, PX / 2], [0, focal, PX / 2], [0, 0, 1]], dtype=torch.float64)
    extr = []
    for i, a in enumerate(angles_deg):
        a = math.radians(a)
        centre = np.array([distance * math.sin(a), 0.3 * i, -distance * math.cos(a)])
        extr.append(torch.from_numpy(look_at(centre, np.zeros(3), up=Y_DOWN)))
    E = torch.stack(extr)[None, None].expand(1, T, -1, -1, -1)
    return K.expand(1, T, len(angles_deg), 3, 3), E


def project(K, E, X):
    """Pixels [M, 2] and depths [M] of world points X [M, 3]."""
    cam = X @ E[:3, :3].T + E[:3, 3]
    pix = cam @ K.T
    return pix[:, :2] / pix[:, 2:], cam[:, 2]


def backproject(K, E, pixel, depth):
    """World point seen at ``pixel`` [2] at camera depth ``depth``."""
    ray = torch.linalg.solve(K, torch.tensor([pixel[0], pixel[1], 1.0], dtype=torch.float64))
    cam = ray * depth
    return E[:3, :3].T @ (cam - E[:3, 3])


def patch_centre(index: int) -> tuple[float, float]:
    r, c = divmod(index, GRID[1])
    return ((c + 0.5) * PATCH, (r + 0.5) * PATCH)


def patch_of(pixel) -> int:
    return int(pixel[1] // PATCH) * GRID[1] + int(pixel[0] // PATCH)


def make_prior(K, E, band=2.0, penalty=4.0) -> EpipolarPrior:
    return EpipolarPrior(K, E, GRID, PATCH, S, band, penalty)


# ------------------------------------------------------------------ geometry
def test_true_correspondences_lie_inside_the_band():
    K, E = rig()
    prior = make_prior(K, E)
    g = torch.Generator().manual_seed(0)
    checked = 0
    for a in range(3):
        for b in range(3):
            if a == b:
                continue
            far = prior.far(0, 0, a, b)
            for i in range(GRID[0] * GRID[1]):
                for depth in 3.0 + 4.0 * torch.rand(3, generator=g, dtype=torch.float64):
                    X = backproject(K[0, 0, a], E[0, 0, a], patch_centre(i), float(depth))
                    pix, z = project(K[0, 0, b], E[0, 0, b], X[None])
                    u, v = pix[0].tolist()
                    if z[0] <= 0 or not (0 <= u < PX and 0 <= v < PX):
                        continue  # not seen by camera b
                    assert not far[i, patch_of((u, v))], (a, b, i, u, v)
                    checked += 1
    assert checked > 100


def test_penalised_pairs_are_exactly_those_far_from_the_independent_epipolar_line():
    K, E = rig()
    band = 1.0
    prior = make_prior(K, E, band=band)
    a, b = 0, 1
    far = prior.far(0, 0, a, b)
    key_centres = torch.tensor([patch_centre(j) for j in range(64)], dtype=torch.float64)
    decided = 0
    for i in range(64):
        # The line through the images in b of two points on i's viewing ray (no fundamental matrix).
        p1, _ = project(K[0, 0, b], E[0, 0, b], backproject(K[0, 0, a], E[0, 0, a], patch_centre(i), 2.0)[None])
        p2, _ = project(K[0, 0, b], E[0, 0, b], backproject(K[0, 0, a], E[0, 0, a], patch_centre(i), 9.0)[None])
        direction = (p2 - p1)[0]
        offset = key_centres - p1
        dist = (direction[0] * offset[:, 1] - direction[1] * offset[:, 0]).abs() / direction.norm()
        clear = (dist - band * PATCH).abs() > 1e-3
        assert torch.equal(far[i][clear], (dist > band * PATCH)[clear])
        decided += int(clear.sum())
    assert far.any() and (~far).any() and decided > 60 * 64


def test_bias_structure_specials_and_same_camera_untouched():
    K, E = rig()
    prior = make_prior(K, E, penalty=3.0)
    dense = epipolar_dense_bias(prior, 0, 0)
    N, V = S + 64, 3
    assert dense.shape == (V * N, V * N)
    assert set(dense.unique().tolist()) == {0.0, -3.0}
    blocks = dense.reshape(V, N, V, N)
    for a in range(V):
        assert torch.all(blocks[a, :, a] == 0)  # same camera
    assert torch.all(blocks[:, :S] == 0) and torch.all(blocks[:, :, :, :S] == 0)  # special tokens
    for a in range(V):
        for b in range(V):
            if a != b:
                assert torch.equal(blocks[a, S:, b, S:] != 0, prior.far(0, 0, a, b))


# ------------------------------------------------------------------ the View-SA path
def view_block(C=32, heads=2) -> Block:
    torch.manual_seed(0)
    return Block(C, heads, 2.0, qk_norm=True, layerscale_init=0.5).eval()


def test_view_block_with_prior_matches_dense_reference_and_never_builds_vn_by_vn():
    K, E = rig(T=2)
    prior = make_prior(K, E, band=1.0, penalty=4.0)
    block = view_block()
    V, N = 3, S + 64
    seq = torch.randn(2, V * N, 32, generator=torch.Generator().manual_seed(1))
    mask_bias = LowRankBias(torch.full((1, 1, V * N, 1), -0.7), torch.rand(2, 1, V * N, 1))

    class Shapes(TorchDispatchMode):
        seen: list = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.seen.append(tuple(t.shape))
            return out

    with torch.no_grad(), Shapes() as mode:
        out = epipolar_view_block(block, seq, None, mask_bias, prior)
    assert not any(len(s) >= 2 and s[-1] == V * N and s[-2] == V * N for s in mode.seen)

    # Reference: dense logits + mask bias + the full [VN, VN] prior of each instant.
    with torch.no_grad():
        q, k, v = block.attn.project(block.norm1(seq))
        logits = (q @ k.transpose(-1, -2)) * block.attn.scale + dense_low_rank(mask_bias)
        logits = logits + torch.stack([epipolar_dense_bias(prior, 0, t) for t in range(2)])[:, None]
        o = (logits.softmax(-1) @ v).transpose(1, 2).reshape(seq.shape)
        x = seq + block.ls1(block.attn.proj(o))
        expected = x + block.ls2(block.mlp(block.norm2(x)))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        zero = epipolar_view_block(block, seq, None, mask_bias, make_prior(K, E, penalty=0.0))
        plain = block(seq, None, (), mask_bias)
    torch.testing.assert_close(zero, plain, atol=1e-6, rtol=1e-5)
    assert (out - plain).abs().max() > 1e-4


# ------------------------------------------------------------------ end to end
def model(**overrides) -> VGGT:
    torch.manual_seed(0)
    return VGGT(preset="tiny", img_size=PX, **overrides).eval()


def clip_and_cameras(T=2):
    K, E = rig(T=T)
    x = torch.rand(1, T, 3, 3, PX, PX, generator=torch.Generator().manual_seed(2))
    return x, K.float().contiguous(), E.float().contiguous()


def run(m, x, **kw):
    with torch.no_grad():
        out = m(x, return_all_layers=True, **kw)
    return out["aggregated"], out["depth"]


@pytest.mark.slow
def test_prior_off_or_cameras_absent_leaves_outputs_unchanged():
    x, K, E = clip_and_cameras()
    off_layers, off_depth = run(model(), x)
    _, with_cams = run(model(), x, intrinsics=K, extrinsics=E)
    assert torch.equal(off_depth, with_cams)
    _, on_no_cams = run(model(enable_epipolar_prior=True), x)
    assert torch.equal(off_depth, on_no_cams)
    _, zero_penalty = run(model(enable_epipolar_prior=True, epipolar_penalty=0.0), x, intrinsics=K, extrinsics=E)
    torch.testing.assert_close(zero_penalty, off_depth, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_prior_acts_in_its_view_sa_layers_only():
    x, K, E = clip_and_cameras()
    off, _ = run(model(), x)
    on, _ = run(model(enable_epipolar_prior=True, epipolar_layers=[3], epipolar_band=1.0), x,
                intrinsics=K, extrinsics=E)
    C = 64
    for stream in ("pose", "geo"):
        assert torch.equal(off["shared"][0], on["shared"][0])
        assert torch.equal(off[stream][1], on[stream][1])
        assert torch.equal(off[stream][2][..., :C], on[stream][2][..., :C])  # Time-SA half of layer 3
        assert (off[stream][2][..., C:] - on[stream][2][..., C:]).abs().max() > 1e-5  # its View-SA half


def test_default_layers_are_the_mid_layers():
    m = model(enable_epipolar_prior=True)
    assert m.aggregator.epipolar_layers == {k - 1 for k in m.config.mid_layers}


@pytest.mark.parametrize("change, message", [
    (lambda K, E: (K, None), "together"),
    (lambda K, E: (K[..., :2, :], E), "intrinsics must have shape"),
    (lambda K, E: (K, E[:, :, :2]), "extrinsics must have shape"),
    (lambda K, E: (K, E[..., :2, :]), "extrinsics must have shape"),
    (lambda K, E: (K.clone().index_fill_(-1, torch.tensor([0]), float("nan")), E), "NaN"),
    (lambda K, E: (K, E.clone().index_fill_(-1, torch.tensor([3]), float("inf"))), "NaN"),
    (lambda K, E: (torch.zeros_like(K), E), "invertible"),
    (lambda K, E: (K, E * 2.0), "rotations"),
])
def test_bad_camera_input_is_a_clear_error(change, message):
    x, K, E = clip_and_cameras()
    K_bad, E_bad = change(K, E)
    with pytest.raises(InputShapeError, match=message):
        model(enable_epipolar_prior=True)(x, intrinsics=K_bad, extrinsics=E_bad)


@pytest.mark.slow
def test_three_by_four_extrinsics_accepted():
    x, K, E = clip_and_cameras()
    check_cameras(K, E[..., :3, :], (1, 2, 3))
    _, four = run(model(enable_epipolar_prior=True), x, intrinsics=K, extrinsics=E)
    _, three = run(model(enable_epipolar_prior=True), x, intrinsics=K, extrinsics=E[..., :3, :])
    assert torch.equal(four, three)


def test_degenerate_baseline_warns_and_skips_that_pair():
    K, E = rig()
    E = E.clone()
    # Camera 2 rotates about camera 0's centre: same centre, different orientation -> no baseline.
    R = torch.linalg.matrix_exp(torch.tensor([[0, -0.3, 0], [0.3, 0, 0], [0, 0, 0]], dtype=torch.float64))
    E[0, 0, 2, :3, :3] = R @ E[0, 0, 0, :3, :3]
    E[0, 0, 2, :3, 3] = R @ E[0, 0, 0, :3, 3]
    with pytest.warns(NetworkWarning, match="share a camera centre"):
        prior = make_prior(K, E, band=0.5)
    assert not prior.far(0, 0, 0, 2).any() and not prior.far(0, 0, 2, 0).any()
    assert prior.far(0, 0, 0, 1).any() and prior.far(0, 0, 2, 1).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_prior(*rig())  # a proper rig: no warning
