"""Test-only helper: a ground-truth clip written as a ``reconstruct`` output through the real export path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from page4d_cli.data import read_gt_clip
from page4d_cli.pipeline.export import PointFilter
from page4d_cli.pipeline.preprocess import intrinsics_to_network
from page4d_cli.pipeline.read_clip import read_clip
from page4d_cli.pipeline.types import Prediction
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction


def export_gt_as_prediction(clip: Path, out: Path, frames: int, size: int) -> Path:
    """Read ``clip`` like ``reconstruct`` (``frames`` instants, network width ``size`` = the clip's own width so
    no resampling), take the GT at the sampled frames as the "prediction" and export it to ``out``."""
    gt = read_gt_clip(clip)
    batch = read_clip(clip, frames=frames, size=size)
    num_t, num_v = batch.frame_indices.shape
    index = batch.frame_indices
    names = [camera.name for camera in batch.cameras]

    def stack(fn):
        return np.stack([[fn(names[v], gt.frame_of_source(names[v], index[t, v])) for v in range(num_v)]
                         for t in range(num_t)])

    K_net = np.stack([[intrinsics_to_network(gt.K(names[v], gt.frame_of_source(names[v], index[t, v])),
                                             batch.transforms[v]) for v in range(num_v)] for t in range(num_t)])
    depth = stack(gt.depth)
    pred = Prediction(extrinsic=stack(gt.cam_from_world), intrinsic=K_net, depth=depth,
                      depth_conf=np.ones_like(depth),
                      dynamic_mask=stack(gt.mask).astype(np.float32) if gt.has_masks else None)
    export_reconstruction(out, pred, batch, ExportOptions(point_filter=PointFilter(conf_percentile=0.0)))
    return out
