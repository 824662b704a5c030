"""``model.to(dtype)`` then forward: every part computes in its weights' dtype (no "mixed dtype" crash)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import perturb_, random_images, tiny_model


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_forward_after_model_to_dtype(dtype):
    model = tiny_model()
    perturb_(model, std=0.05)
    images, ext = random_images(1, 2, 2, 28, 42), torch.rand(1, 2, 2, 2, 3)
    with torch.no_grad():
        reference = model(images, ext_mask=ext)
        model.to(dtype)
        out = model(images, ext_mask=ext)
    for key in ("depth", "world_points", "pose_enc", "extrinsic"):
        assert out[key].dtype == dtype and torch.isfinite(out[key]).all(), key
    tolerance = 1e-4 if dtype == torch.float64 else 0.1
    for key in ("depth", "pose_enc"):
        scale = reference[key].abs().max()
        assert (out[key].float() - reference[key]).abs().max() <= tolerance * scale, key
