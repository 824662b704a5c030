"""Tests for faults that were planted in the pipeline and that no earlier test caught (issue 11 §4)."""

from __future__ import annotations

import numpy as np

from page4d_cli.pipeline import predict


def test_focal_repair_uses_the_median_of_unequal_valid_focals():
    """Valid focals 10, 20, 90 (fx) and 11, 21, 91 (fy): the median is 20 / 21, the mean would be 40 / 41."""
    T, V, H, W = 1, 4, 14, 28
    K = np.tile(np.array([[0.0, 0, 14], [0, 0.0, 7], [0, 0, 1]], np.float32), (T, V, 1, 1))
    for v, (fx, fy) in enumerate([(10.0, 11.0), (20.0, 21.0), (90.0, 91.0)]):
        K[0, v, 0, 0], K[0, v, 1, 1] = fx, fy
    K[0, 3, 0, 0] = np.inf  # the degenerate image (an infinite focal: FoV 0)
    pred = predict.Prediction(np.tile(np.eye(4, dtype=np.float32), (T, V, 1, 1)), K,
                              np.ones((T, V, H, W), np.float32), np.ones((T, V, H, W), np.float32))
    fixed, count = predict.repair_intrinsics(pred)
    assert count == 1
    assert (fixed.intrinsic[0, 3, 0, 0], fixed.intrinsic[0, 3, 1, 1]) == (20.0, 21.0)
    np.testing.assert_array_equal(fixed.intrinsic[0, :3], K[0, :3])  # valid ones untouched
