"""``NetworkPredictor``: the model dict -> numpy ``Prediction``, progress hooks, external masks, repairs."""

from __future__ import annotations

import numpy as np
import torch

from page4d_cli.pipeline import predict
from page4d_cli.pipeline.device import select_device
from page4d_cli.pipeline.read_clip import read_clip
from tests.helpers import CAMS, tiny_model


def test_prediction_from_output_converts_layouts():
    T, V, H, W = 2, 3, 14, 28
    out = {
        "extrinsic": torch.rand(1, T, V, 3, 4), "intrinsic": torch.rand(1, T, V, 3, 3),
        "depth": torch.rand(1, T, V, H, W, 1), "depth_conf": torch.rand(1, T, V, H, W) + 1,
        "world_points": torch.rand(1, T, V, H, W, 3), "world_points_conf": torch.rand(1, T, V, H, W),
        "mask_image": torch.rand(1, T, V, H, W), "lambdas": {},
    }
    pred = predict.prediction_from_output(out)
    assert pred.extrinsic.shape == (T, V, 4, 4)
    assert np.array_equal(pred.extrinsic[..., :3, :], out["extrinsic"][0].numpy())
    assert (pred.extrinsic[..., 3, :] == [0, 0, 0, 1]).all()
    assert pred.depth.shape == (T, V, H, W) and np.array_equal(pred.depth, out["depth"][0, ..., 0].numpy())
    assert np.array_equal(pred.dynamic_mask, out["mask_image"][0].numpy())
    del out["mask_image"], out["world_points"]
    pred = predict.prediction_from_output(out)
    assert pred.dynamic_mask is None and pred.world_points is None


def test_repair_intrinsics_replaces_only_degenerate_focals():
    T, V, H, W = 2, 2, 14, 28
    K = np.tile(np.array([[30.0, 0, 14], [0, 31.0, 7], [0, 0, 1]], np.float32), (T, V, 1, 1))
    K[1, 0, 0, 0] = np.inf
    K[0, 1, 1, 1] = 0.0
    pred = predict.Prediction(np.tile(np.eye(4, dtype=np.float32), (T, V, 1, 1)), K,
                              np.ones((T, V, H, W), np.float32), np.ones((T, V, H, W), np.float32))
    fixed, count = predict.repair_intrinsics(pred)
    assert count == 2
    assert np.allclose(fixed.intrinsic[..., 0, 0], 30.0) and np.allclose(fixed.intrinsic[..., 1, 1], 31.0)
    assert np.isinf(pred.intrinsic[1, 0, 0, 0])  # the input is not modified


def test_network_progress_reports_each_stage_in_order():
    batch = read_clip(CAMS, frames=2, size=42)
    predictor = predict.NetworkPredictor(tiny_model(), select_device("cpu"))
    calls = []
    pred = predictor(batch, progress=lambda done, total, detail: calls.append((done, total, detail)))
    total = predictor.units_per_pass
    assert total == 1 + 4 + 3  # encode, 4 aggregator layers, camera/depth/point heads
    assert [c[0] for c in calls] == list(range(total + 1)) and all(c[1] == total for c in calls)
    assert calls[0][2] == "encode" and calls[1][2] == "aggregate layer 1/4" and calls[-2][2] == "point head"
    assert pred.depth.shape == (2, 4, 28, 42)


def test_external_masks_reach_the_network():
    """The fused dynamic mask depends on the clip's external masks (they are passed as ext_mask)."""
    batch = read_clip(CAMS, frames=1, size=42)
    predictor = predict.NetworkPredictor(tiny_model(), select_device("cpu"))
    T, V, _, H, W = batch.images.shape
    batch.ext_masks = np.zeros((T, V, H, W), np.float32)
    static = predictor(batch).dynamic_mask
    batch.ext_masks = np.ones((T, V, H, W), np.float32)
    dynamic = predictor(batch).dynamic_mask
    assert (dynamic > static + 1e-3).all()
