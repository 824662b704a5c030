"""Tests for faults that were planted in the pipeline and that no earlier test caught."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from page4d_cli.pipeline import predict
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction
from tests.test_pipeline_export import crop_transform, make_scene, pad_transform


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


@pytest.mark.parametrize("colmap_format", ["text", "bin"])
def test_writer_progress_counts_every_file_it_writes(tmp_path, colmap_format):
    """export_reconstruction reports (done, total) after each file: one step at a time, ending at the
    total, and the total is the number of files that are on disk afterwards (all output kinds)."""
    pred, batch, _ = make_scene(transforms=[crop_transform(), pad_transform()])
    pred = replace(pred, dynamic_mask=np.zeros_like(pred.depth))
    options = ExportOptions(confidence_format="npy", colmap_instant=1, colmap_format=colmap_format)
    calls = []
    export_reconstruction(tmp_path, pred, batch, options, progress=lambda done, total: calls.append((done, total)))
    on_disk = sum(len(names) for _, _, names in os.walk(tmp_path))
    totals = {total for _, total in calls}
    assert totals == {on_disk}, (totals, on_disk)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls) and calls[0][0] == 0
    assert calls[-1] == (on_disk, on_disk)
    steps = np.diff([done for done, _ in calls])
    assert steps.min() >= 1 and steps.max() <= 4  # per file (the COLMAP model's 4 files come together)
