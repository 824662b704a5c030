"""Faithfulness to the pretrained models: reproduce the reference fixtures within 1e-4 (float32).

The fixtures (shared/reference/fixtures) are tiny models in the exact tensor layouts of the real Pi3
and PAGE-4D checkpoints, with what the public reference code computes from them. They are loaded
through ``load_model``, the same code path as a real checkpoint.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from models.loading import load_model
from tests.helpers import shared_path

TOLERANCE = 1e-4


def fixture(name: str):
    folder = shared_path("reference", "fixtures", name)
    config = json.loads((folder / "config.json").read_text())
    return folder, config, load_file(folder / "inputs.safetensors"), load_file(folder / "outputs.safetensors")


def vggt_layout_overrides(config: dict, dual: bool) -> dict:
    enc, agg, cam, dpt = config["encoder"], config["aggregator"], config["camera_head"], config["dpt_heads"]
    return dict(
        embed_dim=agg["embed_dim"], depth=agg["depth"], num_heads=agg["num_heads"], mlp_ratio=agg["mlp_ratio"],
        rope_freq=agg["rope_freq"], num_register_tokens=agg["num_register_tokens"],
        encoder={"depth": enc["depth"], "num_heads": enc["num_heads"], "pos_embed_grid": enc["pos_embed_grid"]},
        camera_head={"trunk_depth": cam["trunk_depth"], "num_heads": cam["num_heads"], "iterations": cam["iterations"]},
        dpt={"features": dpt["features"], "out_channels": tuple(dpt["out_channels"]),
             "layers": tuple(k + 1 for k in dpt["intermediate_layer_idx"])},  # fixture: 0-based; ours: 1-based
        pi3_layers=0,  # every layer comes from this (PAGE-4D layout) file
        enable_dual_stream=dual,
    )


@pytest.mark.parametrize("dual", [False, True])
def test_vggt_layout_fixture_is_reproduced(dual):
    folder, config, inputs, expected = fixture("vggt_layout_tiny")
    model, report = load_model(page4d=folder / "weights.safetensors", preset="tiny",
                               **vggt_layout_overrides(config, dual))
    assert report.files["page4d"]["layout"] == "page4d"
    images = inputs["images"][:, None]  # S = 3 images read as T = 1 instant, V = 3 cameras
    with torch.no_grad():
        out = model(images, return_all_layers=True)
    for k in range(config["aggregator"]["depth"]):
        got = out["aggregated"]["pose"].get(k, out["aggregated"]["shared"].get(k)) if dual else out["aggregated"]["shared"][k]
        assert (got[:, 0] - expected[f"aggregated.{k}"]).abs().max() < TOLERANCE, f"layer {k + 1}"
    for i in range(4):
        assert (out["pose_enc_list"][i][:, 0] - expected[f"pose_enc.{i}"]).abs().max() < TOLERANCE, f"iteration {i}"
    for key in ("depth", "depth_conf", "world_points", "world_points_conf"):
        assert (out[key][:, 0] - expected[key]).abs().max() < TOLERANCE, key
    # The spatial mask head on the fixture's own token tensor.
    tokens = expected["spatial_mask_input"][0]
    h, w = (s // 14 for s in config["image_hw"])
    mask = model.aggregator.spatial_mask_head(tokens[:, 5:], h, w)
    assert (mask - expected["spatial_mask"][0]).abs().max() < TOLERANCE


def test_pi3_layout_fixture_is_reproduced():
    folder, config, inputs, expected = fixture("pi3_layout_tiny")
    dec, enc = config["decoder"], config["encoder"]
    model, report = load_model(
        pi3=folder / "weights.safetensors", preset="tiny", embed_dim=dec["embed_dim"], depth=dec["layers"],
        num_heads=dec["num_heads"], pi3_layers=dec["layers"], mid_layers=(2, 3),
        encoder={"depth": enc["depth"], "num_heads": enc["num_heads"]}, dpt={"layers": (1, 2, 3, 3)})
    assert report.files["pi3"]["layout"] == "pi3"
    with torch.no_grad():
        patch_tokens = model.aggregator.encoder((inputs["images"][0] - model.aggregator.image_mean)
                                                / model.aggregator.image_std)
        out = model(inputs["images"][:, None], return_all_layers=True)
    assert (patch_tokens - expected["encoder_patch_tokens"][0]).abs().max() < TOLERANCE
    C = dec["embed_dim"]
    for k in range(dec["layers"]):
        layer = out["aggregated"]["pose"].get(k, out["aggregated"]["shared"].get(k))[:, 0]
        assert (layer[..., :C] - expected[f"decoder_block.{2 * k}"]).abs().max() < TOLERANCE, f"frame {k}"
        assert (layer[..., C:] - expected[f"decoder_block.{2 * k + 1}"]).abs().max() < TOLERANCE, f"global {k}"
    assert (layer - expected["decoder_final"]).abs().max() < TOLERANCE


def test_fixture_comparison_can_fail():
    """Loading the fixture with the wrong numerics (Pi3's eps on PAGE-4D blocks) is caught."""
    folder, config, inputs, expected = fixture("vggt_layout_tiny")
    model, _ = load_model(page4d=folder / "weights.safetensors", preset="tiny",
                          **vggt_layout_overrides(config, dual=False))
    for _, _, block in model.aggregator.all_blocks():
        block.set_eps(1e-1, 1e-1)
    with torch.no_grad():
        out = model(inputs["images"][:, None])
    assert (out["depth"][:, 0] - expected["depth"]).abs().max() > TOLERANCE
