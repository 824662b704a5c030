"""Each term of the training objective against a small hand computation (page4d_cli/train/losses.py)."""

from __future__ import annotations

import math

import pytest
import torch

from page4d_cli.train.config import LossConfig
from page4d_cli.train.losses import (
    all_finite,
    camera_loss,
    compute_losses,
    filter_by_quantile,
    gradient_loss,
    mask_loss,
    normal_loss,
    regression_loss,
)


def test_camera_loss_weights_iterations_and_excludes_invalid_images():
    gt = torch.zeros(2, 9)
    # image 0 valid, image 1 excluded (its huge error must not count)
    first = torch.zeros(2, 9)
    first[0, :3] = 2.0  # T error 2 on each of 3 channels
    first[0, 3:7] = 1.0  # R error 1
    first[0, 7:] = 4.0  # FoV error 4
    first[1] = 1000.0
    last = torch.zeros(2, 9)
    last[0, :3] = 1.0
    last[1] = 1000.0
    valid = torch.tensor([True, False])
    out = camera_loss([first, last], gt, valid, LossConfig())
    # n = 2: iteration 0 weighs 0.6, iteration 1 weighs 1; then divided by n
    loss_t = (0.6 * 2.0 + 1.0 * 1.0) / 2
    loss_r = (0.6 * 1.0 + 0.0) / 2
    loss_fov = (0.6 * 4.0 + 0.0) / 2
    assert out["loss_T"].item() == pytest.approx(loss_t)
    assert out["loss_R"].item() == pytest.approx(loss_r)
    assert out["loss_FoV"].item() == pytest.approx(loss_fov)
    assert out["loss_camera"].item() == pytest.approx(loss_t + loss_r + 0.5 * loss_fov)


def test_camera_translation_clamped_at_100():
    pred = torch.zeros(1, 9)
    pred[0, :3] = torch.tensor([500.0, 1.0, 1.0])
    out = camera_loss([pred], torch.zeros(1, 9), torch.tensor([True]), LossConfig())
    assert out["loss_T"].item() == pytest.approx((100 + 1 + 1) / 3)


def test_quantile_filter_rules():
    small = torch.arange(1000, dtype=torch.float32) * 1000  # <= 1000 values: returned as they are (no clamp)
    assert torch.equal(filter_by_quantile(small, 0.98), small)
    values = torch.arange(2000, dtype=torch.float32) / 100  # 0 .. 19.99
    kept = filter_by_quantile(values, 0.98)
    # nearest rank k = round(0.98 * 1999) + 1 = 1960 -> threshold 19.59, strictly below it: 1959 values
    assert torch.equal(kept, values[:1959])
    outliers = values.clone()
    outliers[-10:] = 1e6
    assert filter_by_quantile(outliers, 0.98).max().item() < 100  # clamped to 100, then filtered out
    ties = torch.cat((torch.zeros(900), torch.full((600,), 5.0)))
    # threshold 5 keeps only 900 (<= 1000) values: everything is kept
    assert filter_by_quantile(ties, 0.98).numel() == 1500


def test_regression_loss_conf_and_reg_by_hand():
    pred = torch.zeros(1, 2, 2, 1)
    gt = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    conf = torch.tensor([1.0, 2.0, 0.5, 1e-9]).reshape(1, 2, 2)  # last one clamps to 1e-6
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    loss_conf, loss_reg, _ = regression_loss(pred, gt, valid, conf, 0.3, 0.06, 0.98, gradient_loss, 1)
    r = [1.0, 2.0, 3.0, 4.0]
    c = [1.0, 2.0, 0.5, 1e-6]
    expected = sum(0.3 * ri * ci - 0.06 * math.log(ci) for ri, ci in zip(r, c)) / 4
    assert loss_conf.item() == pytest.approx(expected, rel=1e-5)
    assert loss_reg.item() == pytest.approx(2.5)


def test_regression_ignores_invalid_ground_truth_values():
    pred = torch.zeros(1, 2, 2, 3)
    gt = torch.ones(1, 2, 2, 3)
    gt[0, 0, 0] = float("nan")
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    valid[0, 0, 0] = False
    loss_conf, loss_reg, loss_grad = regression_loss(pred, gt, valid, torch.ones(1, 2, 2), 1.0, 0.2, 0.98,
                                                     gradient_loss, 1)
    assert loss_reg.item() == pytest.approx(math.sqrt(3))
    assert math.isfinite(loss_grad.item()) and math.isfinite(loss_conf.item())


def test_gradient_loss_by_hand():
    diff = torch.tensor([[1.0, 2.0], [4.0, 8.0]]).reshape(1, 2, 2, 1)
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    # x: |2-1| + |8-4| = 5; y: |4-1| + |8-2| = 9; 4 valid values
    assert gradient_loss(diff, torch.zeros_like(diff), valid).item() == pytest.approx(14 / 4)
    valid[0, 0, 1] = False
    # only the pairs of valid pixels: x in row 1 (4), y in column 0 (3); 3 valid values
    assert gradient_loss(diff, torch.zeros_like(diff), valid).item() == pytest.approx(7 / 3)


def test_normal_loss_zero_for_equal_maps_and_two_for_mirrored():
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    plane = torch.stack((xs, ys, 0.1 * xs + 0.2 * ys), dim=-1)[None]  # [1, 4, 4, 3]
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    assert normal_loss(plane, plane, valid).item() == pytest.approx(0.0, abs=1e-6)
    mirrored = plane * torch.tensor([-1.0, 1.0, 1.0])  # reverses every cross product's orientation in x
    normals_flip = normal_loss(mirrored, plane, valid).item()
    assert 1.0 < normals_flip <= 2.0


def test_mask_loss_bce_against_patch_fractions():
    gt = torch.zeros(1, 28, 28)
    gt[0, :14, :14] = 1.0  # top-left patch fully dynamic
    gt[0, :14, 14:21] = 1.0  # half of the top-right patch
    fused = torch.tensor([[0.8, 0.5], [0.1, 0.2]])[None]
    targets = [1.0, 0.5, 0.0, 0.0]
    probs = [0.8, 0.5, 0.1, 0.2]
    expected = -sum(t * math.log(p) + (1 - t) * math.log(1 - p) for t, p in zip(targets, probs)) / 4
    assert mask_loss(fused, gt, 14).item() == pytest.approx(expected, rel=1e-5)


def _fake_outputs_and_batch(B=2, T=1, V=2, S=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "pose_enc_list": [torch.randn(B, T, V, 9, generator=g) for _ in range(4)],
        "depth": torch.rand(B, T, V, S, S, 1, generator=g) + 0.5,
        "depth_conf": torch.rand(B, T, V, S, S, generator=g) + 1,
        "world_points": torch.randn(B, T, V, S, S, 3, generator=g),
        "world_points_conf": torch.rand(B, T, V, S, S, generator=g) + 1,
        "mask": torch.rand(B, T, V, S // 14, S // 14, generator=g) * 0.9 + 0.05,
    }
    batch = {
        "images": torch.rand(B, T, V, 3, S, S, generator=g),
        "pose_enc": torch.randn(B, T, V, 9, generator=g),
        "depth": torch.rand(B, T, V, S, S, generator=g) + 0.5,
        "depth_valid": torch.ones(B, T, V, S, S, dtype=torch.bool),
        "world_points": torch.randn(B, T, V, S, S, 3, generator=g),
        "point_valid": torch.ones(B, T, V, S, S, dtype=torch.bool),
        "masks": (torch.rand(B, T, V, S, S, generator=g) > 0.5).float(),
        "has_mask": torch.ones(B, dtype=torch.bool),
    }
    return outputs, batch


def test_objective_composition_and_per_clip_mean():
    outputs, batch = _fake_outputs_and_batch()
    cfg = LossConfig(mask_weight=0.5)
    terms = compute_losses(outputs, batch, cfg)
    depth = terms["loss_conf_depth"] + terms["loss_reg_depth"] + terms["loss_grad_depth"]
    point = terms["loss_conf_point"] + terms["loss_reg_point"] + terms["loss_grad_point"]
    expected = 5 * terms["loss_camera"] + depth + point + 0.5 * terms["loss_mask"]
    assert terms["objective"].item() == pytest.approx(expected.item(), rel=1e-6)
    # the batch objective is the mean of the per-clip objectives (what makes DDP batch 1 x 2 == batch 2)
    singles = [compute_losses({k: ([p[b:b + 1] for p in v] if isinstance(v, list) else v[b:b + 1])
                               for k, v in outputs.items()}, {k: v[b:b + 1] for k, v in batch.items()}, cfg)
               for b in range(2)]
    assert terms["objective"].item() == pytest.approx((singles[0]["objective"] + singles[1]["objective"]).item() / 2,
                                                      rel=1e-6)


def test_images_with_at_most_100_valid_pixels_get_no_camera_loss():
    outputs, batch = _fake_outputs_and_batch(B=1)
    batch["point_valid"][0, 0, 1] = False
    flat = batch["point_valid"][0, 0, 1].view(-1)  # a view: writes land in the batch
    flat[:100] = True  # exactly 100 valid pixels: excluded
    before = compute_losses(outputs, batch, LossConfig())["loss_camera"]
    for p in outputs["pose_enc_list"]:
        p[0, 0, 1] += 50.0
    assert compute_losses(outputs, batch, LossConfig())["loss_camera"].item() == pytest.approx(before.item())
    flat[100] = True  # 101: counted again
    assert compute_losses(outputs, batch, LossConfig())["loss_camera"].item() > before.item() + 1


def test_non_finite_prediction_is_reported():
    outputs, batch = _fake_outputs_and_batch(B=1)
    assert all_finite(compute_losses(outputs, batch, LossConfig()))
    outputs["depth"][0, 0, 0, 3, 3] = float("inf")  # the recipe's clamps at 100 absorb an infinite depth ...
    assert all_finite(compute_losses(outputs, batch, LossConfig()))
    outputs["pose_enc_list"][-1][0, 0, 0, 0] = float("nan")  # ... not a NaN camera
    assert not all_finite(compute_losses(outputs, batch, LossConfig()))
