"""Output shapes, input validation, configuration errors and the full-size build of the network."""

from __future__ import annotations

import time

import pytest
import torch

from models import ConfigError, Page4DConfig
from models.inputs import InputShapeError
from models.vggt import VGGT
from tests.helpers import random_images, tiny_model


@pytest.mark.parametrize("T,V", [(1, 1), (1, 3), (2, 1), (3, 2)])
@pytest.mark.parametrize("dual", [True, False])
def test_output_shapes(T, V, dual):
    model = tiny_model(enable_dual_stream=dual)
    B, H, W = 1, 70, 98  # odd sizes: 5 x 7 patches
    with torch.no_grad():
        out = model(random_images(B, T, V, H, W))
    assert out["pose_enc"].shape == (B, T, V, 9)
    assert len(out["pose_enc_list"]) == model.config.camera_head.iterations
    assert out["extrinsic"].shape == (B, T, V, 3, 4)
    assert out["intrinsic"].shape == (B, T, V, 3, 3)
    assert out["depth"].shape == (B, T, V, H, W, 1)
    assert out["depth_conf"].shape == (B, T, V, H, W)
    assert out["world_points"].shape == (B, T, V, H, W, 3)
    assert out["world_points_conf"].shape == (B, T, V, H, W)
    assert out["mask"].shape == (B, T, V, 5, 7)
    assert out["mask_tilde"].shape == (B, T, V, 5, 7)
    assert out["mask_image"].shape == (B, T, V, H, W)
    assert set(out["lambdas"]) == {"lambda_pose", "lambda_geo", "lambda_pose_t", "lambda_geo_t"}
    assert (out["depth"] > 0).all() and (out["depth_conf"] >= 1).all()
    for key in ("pose_enc", "depth", "world_points", "mask"):
        assert torch.isfinite(out[key]).all(), key
    # Principal point at the image centre in network pixels.
    assert torch.allclose(out["intrinsic"][..., 0, 2], torch.tensor(W / 2))
    assert torch.allclose(out["intrinsic"][..., 1, 2], torch.tensor(H / 2))


def test_batch_of_two_clips_matches_single_runs():
    model = tiny_model()
    images = random_images(2, 2, 2, 42, 56, seed=3)
    with torch.no_grad():
        both = model(images)
        first = model(images[:1])
    assert torch.allclose(both["depth"][:1], first["depth"], atol=1e-5)
    assert torch.allclose(both["pose_enc"][:1], first["pose_enc"], atol=1e-5)


def test_heads_can_be_disabled():
    model = tiny_model(enable_camera=False, enable_point=False)
    with torch.no_grad():
        out = model(random_images(1, 1, 2, 28, 28))
    assert "depth" in out and "extrinsic" not in out and "world_points" not in out
    assert model.camera_head is None and model.point_head is None


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(1, 2, 3, 28, 28), "6 dimensions"),
        (torch.rand(1, 1, 2, 4, 28, 28), r"3 \(RGB\) channels"),
        (torch.rand(1, 1, 2, 3, 30, 28), "multiple of the patch size"),
        (torch.full((1, 1, 1, 3, 28, 28), float("nan")), "NaN"),
        (torch.zeros(1, 1, 1, 3, 28, 28, dtype=torch.uint8), "floating point"),
    ],
)
def test_bad_inputs_give_clear_errors(images, message):
    model = tiny_model()
    with pytest.raises(InputShapeError, match=message):
        model(images)


def test_bad_external_mask_shape():
    model = tiny_model()
    with pytest.raises(InputShapeError, match="ext_mask must have shape"):
        model(random_images(1, 1, 2, 28, 28), ext_mask=torch.zeros(1, 1, 2, 27, 28))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mid_layers": (2, 4)}, "contiguous"),
        ({"mid_layers": (0, 1)}, "1-based"),
        ({"mid_layers": (4, 5)}, "1-based"),
        ({"dpt": {"layers": (1, 2, 3, 9)}}, "dpt.layers"),
        ({"sparse_global_layers": (25,)}, "sparse_global_layers"),
        ({"embed_dim": 66}, "divisible"),
        ({"mask_head_layout": "other"}, "mask_head_layout"),
        ({"temporal_encoding": "sinusoid"}, "temporal_encoding"),
        ({"mask_source_layer": 3}, "before the first mid layer"),
        ({"pi3_layers": 7}, "pi3_layers"),
    ],
)
def test_config_errors_at_construction(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Page4DConfig.preset("tiny", **overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        Page4DConfig.preset("huge")


def test_config_round_trips_through_dict():
    cfg = Page4DConfig.preset("small", mid_layers=[2, 3])
    assert Page4DConfig.from_dict(cfg.to_dict()) == cfg


def test_full_model_builds_on_meta_quickly():
    start = time.perf_counter()
    with torch.device("meta"):
        model = VGGT(img_size=518, patch_size=14, embed_dim=1024, enable_camera=True, enable_point=True,
                     enable_depth=True, enable_dual_stream=True)
    elapsed = time.perf_counter() - start
    count = sum(p.numel() for p in model.parameters())
    print(f"full dual-stream model: {count:,} parameters, built on meta in {elapsed:.2f}s")
    cfg = model.config
    assert (cfg.embed_dim, cfg.depth, cfg.encoder.depth) == (1024, 24, 24)
    names = dict(model.named_parameters())
    # Stable, documented tensor names (README "Tensor names").
    for name, shape in {
        "aggregator.encoder.pos_embed": (1, 1370, 1024),
        "aggregator.encoder.blocks.23.mlp.fc1.weight": (4096, 1024),
        "aggregator.camera_token": (1, 2, 1, 1024),
        "aggregator.register_token": (1, 2, 4, 1024),
        "aggregator.time_blocks.0.attn.q_norm.weight": (64,),
        "aggregator.view_blocks.23.attn.qkv.weight": (3072, 1024),
        "aggregator.pose_time_blocks.7.attn.qkv.weight": (3072, 1024),
        "aggregator.geo_view_blocks.11.ls2.gamma": (1024,),
        "aggregator.spatial_mask_head.head0.2.weight": (256, 1024, 1, 1),
        "aggregator.mask_bias.lambda_pose": (),
        "aggregator.temporal_pos.5.freq": (16,),
        "camera_head.trunk.3.attn.qkv.weight": (6144, 2048),
        "depth_head.scratch.output_conv2.2.weight": (2, 32, 1, 1),
        "point_head.projects.3.weight": (1024, 2048, 1, 1),
    }.items():
        assert tuple(names[name].shape) == shape, name
    # Dual stream: the mid layers (8-12 = indices 7-11) live in the stream containers only.
    assert "aggregator.time_blocks.7.norm1.weight" not in names
    assert "aggregator.time_blocks.12.norm1.weight" in names
    assert 1.2e9 < count < 1.4e9


def test_layer_numbering_is_one_based():
    model = tiny_model(mid_layers=(2, 3), enable_dual_stream=True)
    assert model.aggregator.pose_time_blocks.layers() == [1, 2]
    assert model.aggregator.time_blocks.layers() == [0, 3]
    # pi3_layers=3 in tiny: layers 1-3 use Pi3 numerics (eps 1e-6), layer 4 VGGT's (1e-5).
    assert model.aggregator.time_blocks[0].eps == (1e-6, 1e-5)
    assert model.aggregator.time_blocks[3].eps == (1e-5, 1e-5)


def test_every_module_owning_parameters_can_reset_them():
    """A meta-device build is filled by reset_parameters(): no module may own tensors it cannot initialise."""
    with torch.device("meta"):
        model = VGGT(preset="tiny", enable_sparse_global=True, sparse_global_layers=[3, 4],
                     sparse_strategy="memory_bank", use_gating=True)
    missing = [f"{name or 'model'} ({type(module).__name__})" for name, module in model.named_modules()
               if any(True for _ in module.parameters(recurse=False)) and not hasattr(module, "reset_parameters")]
    assert not missing
