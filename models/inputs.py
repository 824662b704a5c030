"""Validation of the network's inputs, with messages that say what was expected and how to fix it."""

from __future__ import annotations

import torch

from models.errors import Page4DError


class InputShapeError(Page4DError, ValueError):
    """The images or masks handed to the network do not have the expected layout."""


def check_images(images: torch.Tensor, patch_size: int) -> None:
    """images must be [B, T, V, 3, H, W], H and W multiples of ``patch_size``, finite, float."""
    if not isinstance(images, torch.Tensor):
        raise InputShapeError(f"images must be a torch.Tensor [B, T, V, 3, H, W], got {type(images).__name__}")
    if images.dim() != 6:
        hint = " (for a VGGT-style [B, S, 3, H, W] batch of S cameras at one instant use images[:, None])" \
            if images.dim() == 5 else ""
        raise InputShapeError(f"images must have 6 dimensions [B, T, V, 3, H, W], got shape {tuple(images.shape)}{hint}")
    if images.shape[3] != 3:
        raise InputShapeError(f"images must have 3 (RGB) channels at dim 3, got {images.shape[3]} "
                              f"(shape {tuple(images.shape)}; expected [B, T, V, 3, H, W])")
    if min(images.shape[:3]) < 1:
        raise InputShapeError(f"images has an empty batch, time or camera axis: {tuple(images.shape)}")
    H, W = images.shape[-2:]
    if H % patch_size or W % patch_size or H < patch_size or W < patch_size:
        raise InputShapeError(
            f"image size {H}x{W} (HxW) must be a positive multiple of the patch size {patch_size}; "
            f"resize or crop, e.g. to {max(patch_size, H // patch_size * patch_size)}x"
            f"{max(patch_size, W // patch_size * patch_size)}"
        )
    if not images.is_floating_point():
        raise InputShapeError(f"images must be floating point RGB in [0, 1], got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise InputShapeError("images contain NaN or infinite values")


def check_ext_mask(mask: torch.Tensor, image_shape: torch.Size, grid: tuple[int, int]) -> None:
    """M_ext must be [B, T, V, H, W] (image resolution) or [B, T, V, h, w] (patch grid), finite."""
    B, T, V, _, H, W = image_shape
    allowed = [(B, T, V, H, W), (B, T, V, *grid)]
    if tuple(mask.shape) not in allowed:
        raise InputShapeError(f"ext_mask must have shape {allowed[0]} (image) or {allowed[1]} (patch grid), "
                              f"got {tuple(mask.shape)}")
    if not torch.isfinite(mask.float()).all():
        raise InputShapeError("ext_mask contains NaN or infinite values")
