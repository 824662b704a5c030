"""Test helpers for the training tests: a small in-memory dataset with the GTClipDataset item contract.

Items (T instants, V cameras, S x S pixels): a textured plane seen by V cameras that translate over
time; depth, world points (camera-0-at-t=0 world), cameras, pose encodings and masks are consistent.
Deterministic per (seed, index); no files.
"""

from __future__ import annotations

import torch

from models.heads.pose_encoding import extrinsic_intrinsic_to_encoding


class FakeClipDataset(torch.utils.data.Dataset):
    def __init__(self, length: int = 4, frames: int = 2, cameras: int = 2, size: int = 56, seed: int = 0,
                 nan_index: int | None = None, error: str | None = None) -> None:
        self.length, self.frames, self.cameras, self.size, self.seed = length, frames, cameras, size, seed
        self.nan_index = nan_index  # this item's depth GT is NaN at valid pixels (a corrupt sample)
        self.error = error  # every item raises a Page4DError with this message (a bad clip found late)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if self.error:
            from models.errors import Page4DError

            raise Page4DError(self.error)
        g = torch.Generator().manual_seed(self.seed * 1000 + index)
        T, V, S = self.frames, self.cameras, self.size
        focal = S * 0.9
        K = torch.tensor([[focal, 0, S / 2], [0, focal, S / 2], [0, 0, 1.0]])
        # cameras: small translations along x over time and cameras, identity rotation (plane z = d)
        E = torch.zeros(T, V, 3, 4)
        E[..., :3, :3] = torch.eye(3)
        shift = torch.arange(T)[:, None] * 0.05 + torch.arange(V)[None, :] * 0.1
        E[..., 0, 3] = -shift
        E[..., 2, 3] = 0.1 * torch.rand(1, generator=g)
        d = 2.0 + torch.rand(1, generator=g)
        ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
        depth = torch.full((T, V, S, S), 0.0)
        depth[:] = d - E[..., 2, 3][..., None, None]
        cam_pts = torch.stack(((xs - S / 2) / focal * depth, (ys - S / 2) / focal * depth, depth), dim=-1)
        world = cam_pts - E[..., :3, 3][:, :, None, None, :]  # R = I: world = cam - t
        valid = torch.ones(T, V, S, S, dtype=torch.bool)
        valid[..., :4, :] = False  # a strip without GT
        depth = torch.where(valid, depth, torch.zeros(()))
        if self.nan_index == index:
            depth = torch.full_like(depth, float("nan"))
        images = torch.rand(T, V, 3, S, S, generator=g) * 0.2
        images += 0.5 + 0.3 * torch.sin(world[..., 0] * 6).unsqueeze(2)
        masks = torch.zeros(T, V, S, S)
        masks[..., S // 2:, : S // 2] = 1.0
        intr = K.expand(T, V, 3, 3).clone()
        return {
            "images": images.clamp(0, 1),
            "depth": depth, "depth_valid": valid,
            "world_points": world, "point_valid": valid.clone(),
            "extrinsics": E, "intrinsics": intr,
            "pose_enc": extrinsic_intrinsic_to_encoding(E, intr, (S, S)).float(),
            "masks": masks, "has_mask": torch.tensor(True),
        }


def tiny_network(**overrides):
    """The tiny preset with one head-layer set that runs fast on 56 x 56 images."""
    from models.config import Page4DConfig

    return Page4DConfig.preset("tiny", **overrides)


def tiny_config(tmp_path, **changes):
    from page4d_cli.train.config import TrainConfig

    base = dict(out=str(tmp_path / "run"), preset="tiny", steps=3, batch=1, frames=2, cameras=2, size=56,
                workers=0, progress=False, save_every=1000, warmup=0)
    base.update(changes)
    return TrainConfig(**base)

