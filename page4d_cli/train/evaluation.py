"""Held-out evaluation during training (``--eval-data DIR --eval-every K``) with ``page4d eval``'s metrics.

For every clip of DIR: one deterministic sample (the first ``frames`` instants at stride 1, ALL cameras
of the clip, preprocessed exactly as the training samples), one forward pass, the predictions mapped back
to each camera's original pixels (``pipeline.preprocess``, as ``reconstruct`` writes them) and scored by
``page4d_cli.eval.evaluate_prediction`` (Sim(3)-aligned cameras, median-aligned depth, points, mask IoU).
Returns the mean of each headline metric over the clips (``EvalResult.summary`` keys), ``clips`` and
``failed`` (clips whose prediction could not be scored, e.g. non-finite poses; training continues).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from models.errors import Page4DError
from page4d_cli.train.config import TrainConfig


def eval_clips(eval_data: str):
    from page4d_cli.data import list_clips, read_gt_clip

    return [read_gt_clip(path) for path in list_clips(eval_data)]


def predict_clip(model, clip, cfg: TrainConfig, device: torch.device):
    """``PredictedClip`` of the network on one held-out clip (original resolution)."""
    from page4d_cli.eval import PredictedClip
    from page4d_cli.pipeline.preprocess import intrinsics_to_original, make_transform, network_map_to_original
    from page4d_cli.train.dataset import SampleSpec, load_sample

    spec = SampleSpec(frames=min(cfg.frames, clip.num_frames), cameras=len(clip.camera_names), size=cfg.size,
                      stride_range=(1, 1))
    frames = np.arange(spec.frames, dtype=np.int64)
    cameras = np.arange(spec.cameras, dtype=np.int64)
    item = load_sample(clip, frames, cameras, spec)
    out = model(item["images"][None].to(device))
    T, V, _, H, W = item["images"].shape
    extrinsic = out["extrinsic"][0].float().cpu().numpy().astype(np.float64)
    cam_from_world = np.tile(np.eye(4), (T, V, 1, 1))
    cam_from_world[..., :3, :] = extrinsic
    K_net = out["intrinsic"][0].float().cpu().numpy()
    depth = out["depth"][0, ..., 0].float().cpu().numpy()
    mask = out["mask_image"][0].float().cpu().numpy() if "mask_image" in out else None
    depth_orig, mask_orig = [[None] * V for _ in range(T)], [[None] * V for _ in range(T)]
    K_orig = np.empty((T, V, 3, 3))
    for v in range(V):
        tf = make_transform(clip.image_size(v), (W, H), spec.mode)
        for t in range(T):
            depth_orig[t][v] = np.nan_to_num(network_map_to_original(depth[t, v], tf, fill=0.0), nan=0.0)
            if mask is not None:
                mask_orig[t][v] = network_map_to_original(mask[t, v], tf, fill=0.0)
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite K is handled below
                K_orig[t, v] = intrinsics_to_original(K_net[t, v], tf)
    if not np.isfinite(K_orig).all():
        K_orig = None  # an untrained camera head can predict a zero field of view: no point metrics then
    return PredictedClip(camera_names=list(clip.camera_names), gt_frames=np.repeat(frames[:, None], V, axis=1),
                         camera_from_world=cam_from_world, K=K_orig, depth=depth_orig,
                         dynamic_mask=mask_orig if mask is not None else None,
                         source=f"{clip.root} (page4d train evaluation)")


def evaluate_model(model, cfg: TrainConfig, ctx, progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Mean held-out metrics of ``model`` over the clips of ``cfg.eval_data`` (rank 0, no grad).

    progress(done, total): clips evaluated so far (0 before the first).
    """
    from page4d_cli.eval import EvalOptions, evaluate_prediction

    sums: dict[str, list[float]] = {}
    clips = eval_clips(cfg.eval_data)
    failed = 0
    if progress is not None:
        progress(0, len(clips))
    for index, clip in enumerate(clips, 1):
        try:
            result = evaluate_prediction(predict_clip(model, clip, cfg, ctx.device), clip,
                                         EvalOptions(max_points=5000))
        except (Page4DError, ValueError, np.linalg.LinAlgError):
            failed += 1  # e.g. non-finite predicted poses early in training: counted, training goes on
            result = None
        for key, value in (result.summary().items() if result is not None else ()):
            if value is not None and np.isfinite(value):
                sums.setdefault(key, []).append(float(value))
        if progress is not None:
            progress(index, len(clips))
    return {"clips": len(clips), "failed": failed, **{key: float(np.mean(values)) for key, values in sums.items()}}
