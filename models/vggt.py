"""The PAGE-4D network: aggregator + camera, depth and point heads.

Construction as in the design document's usage example::

    model = VGGT(img_size=518, patch_size=14, embed_dim=1024, enable_camera=True, enable_point=True,
                 enable_depth=True, enable_dual_stream=True, enable_sparse_global=True,
                 sparse_global_layers=[23, 24], sparse_strategy="landmark")

Keyword arguments override a named preset (``preset="full"`` by default; any ``Page4DConfig`` field
is accepted), or pass ``config=Page4DConfig(...)``. ``VGGT.from_preset("tiny")`` builds the small CPU
configurations of the same code.

forward(images [B, T, V, 3, H, W] in [0, 1], ext_mask=None) returns a dict, per (t, v):

    pose_enc [B, T, V, 9], pose_enc_list (one per refinement iteration),
    extrinsic [B, T, V, 3, 4] (camera-from-world, OpenCV; world = camera of (t=0, v=0)),
    intrinsic [B, T, V, 3, 3] (network pixels),
    depth [B, T, V, H, W, 1], depth_conf [B, T, V, H, W],
    world_points [B, T, V, H, W, 3], world_points_conf [B, T, V, H, W],
    mask_tilde / mask [B, T, V, h, w] (patch grid), mask_image [B, T, V, H, W] (nearest upsampling),
    lambdas {name: value in force}, mask_alpha, mask_beta.

``ext_mask``: an external dynamic mask M_ext, [B, T, V, H, W] at image resolution (pooled to the patch
grid as the fraction of each patch that is dynamic) or [B, T, V, h, w] already on the patch grid.

Keyword-only (docs/design.md, "Sparse Global-SA"): ``ext_keypoints`` K_ext_seq, a keypoint heatmap
(values in [0, 1] expected), [B, T, V, H, W] (max-pooled to patches) or [B, T, V, h, w]: Sparse
Global-SA's landmark score and the lambda_kpt bias. ``intrinsics`` [B, T, V, 3, 3] (network-input
pixels) and ``extrinsics`` [B, T, V, 4, 4] or [B, T, V, 3, 4] (world-to-camera, OpenCV): the epipolar
prior's cameras (used only with ``enable_epipolar_prior``). After loading weights call
``model.aggregator.sync_sparse_blocks()``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch
from torch import nn

from models.aggregator import Aggregator
from models.config import Page4DConfig
from models.dynamic_mask import pool_to_patches
from models.epipolar import check_cameras
from models.heads.camera_head import CameraHead
from models.heads.dpt_head import DPTHead
from models.heads.pose_encoding import encoding_to_extrinsic_intrinsic
from models.inputs import check_ext_mask, check_images
from models.sparse_global import keypoints_to_patches


class VGGT(nn.Module):
    def __init__(self, *, config: Optional[Page4DConfig] = None, preset: str = "full", **overrides) -> None:
        super().__init__()
        if config is None:
            config = Page4DConfig.preset(preset, **overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = config
        dim_in = 2 * config.embed_dim
        self.aggregator = Aggregator(config)
        self.camera_head = CameraHead(dim_in, config.camera_head) if config.enable_camera else None
        self.depth_head = DPTHead(dim_in, 2, "exp", config.dpt, config.patch_size) if config.enable_depth else None
        self.point_head = DPTHead(dim_in, 4, "inv_log", config.dpt, config.patch_size) if config.enable_point else None

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VGGT":
        return cls(config=Page4DConfig.preset(name, **overrides))

    def head_layers(self) -> list[int]:
        """0-based aggregator layers the enabled heads read."""
        needed = set()
        if self.camera_head is not None:
            needed.add(self.config.depth - 1)
        if self.depth_head is not None or self.point_head is not None:
            needed.update(self.config.dpt_indices)
        return sorted(needed)

    def forward(self, images: torch.Tensor, ext_mask: Optional[torch.Tensor] = None,
                return_all_layers: bool = False, *, ext_keypoints: Optional[torch.Tensor] = None,
                intrinsics: Optional[torch.Tensor] = None, extrinsics: Optional[torch.Tensor] = None) -> dict:
        cfg = self.config
        check_images(images, cfg.patch_size)
        B, T, V, _, H, W = images.shape
        rows, cols = H // cfg.patch_size, W // cfg.patch_size
        if ext_mask is not None:
            check_ext_mask(ext_mask, images.shape, (rows, cols))
            if ext_mask.shape[-2:] == (H, W) and (H, W) != (rows, cols):
                ext_mask = pool_to_patches(ext_mask, cfg.patch_size)
            else:
                ext_mask = ext_mask.reshape(B, T, V, rows * cols)
        if ext_keypoints is not None:
            ext_keypoints = keypoints_to_patches(ext_keypoints, images.shape, (rows, cols), cfg.patch_size)
            ext_keypoints = ext_keypoints.to(images.dtype)
        check_cameras(intrinsics, extrinsics, (B, T, V))
        record = None if return_all_layers else self.head_layers()
        agg = self.aggregator(images, ext_mask.to(images.dtype) if ext_mask is not None else None, record,
                              ext_keypoints=ext_keypoints, intrinsics=intrinsics, extrinsics=extrinsics)
        out: dict = {"images": images}
        if return_all_layers:
            out["aggregated"] = agg.layers

        # Heads outside any autocast region, in their weights' dtype: float32 as loaded (as the reference
        # implementation), or whatever ``model.to(dtype)`` made them.
        device_type = images.device.type
        autocast_types = ("cuda", "cpu", "mps")
        no_autocast = torch.autocast(device_type, enabled=False) if device_type in autocast_types else nullcontext()
        with no_autocast:
            if self.camera_head is not None:
                last = agg.pose(cfg.depth - 1)[:, :, :, 0].to(_dtype(self.camera_head)).reshape(B, T * V, -1)
                encodings = [e.reshape(B, T, V, -1) for e in self.camera_head(last)]
                out["pose_enc_list"] = encodings
                out["pose_enc"] = encodings[-1]
                out["extrinsic"], out["intrinsic"] = encoding_to_extrinsic_intrinsic(encodings[-1], (H, W))
            dpt_inputs = None
            if self.depth_head is not None or self.point_head is not None:
                dpt_dtype = _dtype(self.depth_head if self.depth_head is not None else self.point_head)
                dpt_inputs = [agg.geo(k).to(dpt_dtype).reshape(B, T * V, *agg.geo(k).shape[3:])
                              for k in cfg.dpt_indices]
            if self.depth_head is not None:
                depth, conf = self.depth_head(dpt_inputs, (H, W), agg.patch_start)
                out["depth"] = depth.reshape(B, T, V, H, W, 1)
                out["depth_conf"] = conf.reshape(B, T, V, H, W)
            if self.point_head is not None:
                points, conf = self.point_head(dpt_inputs, (H, W), agg.patch_start)
                out["world_points"] = points.reshape(B, T, V, H, W, 3)
                out["world_points_conf"] = conf.reshape(B, T, V, H, W)

        if agg.mask is not None:
            out["mask_tilde"] = agg.mask_tilde.float().reshape(B, T, V, rows, cols)
            out["mask"] = agg.mask.float().reshape(B, T, V, rows, cols)
            out["mask_image"] = out["mask"].repeat_interleave(cfg.patch_size, -2).repeat_interleave(cfg.patch_size, -1)
            out["mask_alpha"], out["mask_beta"] = agg.mask_alpha, agg.mask_beta
        out["lambdas"] = self.aggregator.mask_bias.values()
        return out


def _dtype(module: nn.Module) -> torch.dtype:
    """The dtype a head computes in: its weights'."""
    return next(module.parameters()).dtype


Page4DModel = VGGT
