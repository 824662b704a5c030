"""The world frame of every output: the reference camera at the first sampled instant.

Two steps between the network (or the stitching of windows) and the writers:

1. ``to_input_order``: the network needs the reference camera at index 0 (its camera token marks
   the world frame), so ``read_clip`` puts ``--ref-camera`` first. The outputs keep the INPUT order
   (natural name order of the cameras), so ``cam00..`` do not renumber when ``--ref-camera`` changes;
   ``ClipBatch.reference`` then says where the reference camera went.
2. ``rebase_on_reference``: the network's pose of the reference image is only close to the identity
   (an untrained network, or windows stitched with a similarity, leave it anywhere). Every pose and
   point is moved by that camera's pose so it becomes the exact identity::

       E_ref = extrinsic[0, ref]                 camera-from-world of the reference at t = 0
       E'    = E . E_ref^-1                      every camera-from-world
       X'    = E_ref . X                         every world point (the point head's)
       depth' = depth                            (a rigid change of frame keeps camera-frame lengths)

   so cameras.json, the TUM trajectories, the COLMAP model and the point clouds (all derived from
   E' and X') agree on it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from page4d_cli.pipeline import geometry
from page4d_cli.pipeline.sources import natural_key
from page4d_cli.pipeline.types import ClipBatch, Prediction

_PER_CAMERA_FIELDS = ("extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf",
                      "dynamic_mask")


def input_order(batch: ClipBatch) -> list[int]:
    """Indices of ``batch.cameras`` in the input's order (natural order of the camera names)."""
    return sorted(range(len(batch.cameras)), key=lambda v: natural_key(batch.cameras[v].name))


def to_input_order(batch: ClipBatch, pred: Prediction) -> tuple[ClipBatch, Prediction]:
    """Batch and prediction with their camera axis (axis 1 of every ``[T, V, ...]`` array) in input order."""
    order = input_order(batch)
    if order == list(range(len(order))):
        return batch, pred
    batch = replace(
        batch,
        cameras=[batch.cameras[v] for v in order],
        transforms=[batch.transforms[v] for v in order],
        images=batch.images[:, order],
        frame_indices=batch.frame_indices[:, order],
        timestamps=batch.timestamps[:, order],
        ext_masks=None if batch.ext_masks is None else batch.ext_masks[:, order],
        reference=order.index(batch.reference),
    )
    moved = {name: getattr(pred, name)[:, order] for name in _PER_CAMERA_FIELDS if getattr(pred, name) is not None}
    return batch, replace(pred, **moved)


def rebase_on_reference(pred: Prediction, reference: int) -> Prediction:
    """The prediction in the frame of camera ``reference`` at t = 0 (its camera-from-world exactly I)."""
    reference_pose = pred.extrinsic[0, reference].astype(np.float64)
    to_reference = geometry.invert_rigid(reference_pose)
    extrinsic = (pred.extrinsic.astype(np.float64) @ to_reference).astype(pred.extrinsic.dtype)
    extrinsic[..., 3, :] = (0.0, 0.0, 0.0, 1.0)
    extrinsic[0, reference] = np.eye(4, dtype=extrinsic.dtype)
    world_points = pred.world_points
    if world_points is not None:
        moved = world_points.astype(np.float64) @ reference_pose[:3, :3].T + reference_pose[:3, 3]
        world_points = moved.astype(pred.world_points.dtype)
    return replace(pred, extrinsic=extrinsic, world_points=world_points)
