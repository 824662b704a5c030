"""Synthetic checkpoints reproduce the real layouts; layout detection, size inference, role checks."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from models.loading.checkpoint_grammar import size
from models.loading.checkpoint_io import open_checkpoint
from models.loading.checkpoint_reader import CheckpointError
from models.loading.layouts import describe_dims, detect_layout, expect_layout, infer_dims, size_mismatch
from models.loading.synthetic import (
    LAYOUTS,
    TINY,
    synthetic_specs,
    synthetic_state_dict,
    synthetic_tensor,
    write_checkpoint,
    write_synthetic,
)
from models.loading.torch_reader import StateDictReader
from tests.broken_checkpoints import write_unknown_layout
from tests.helpers import SHARED, needs_shared, reference_keys

REFERENCE = SHARED / "reference"
needs_fixtures = needs_shared("reference", "fixtures")

KEY_FILES = {  # tests/data/keys: copies of the real key lists, so these tests run everywhere
    "pi3": "pi3_model_safetensors",
    "page4d": "page4d_checkpoint_mask_pt",
    "page4d_ckpt150": "page4d_checkpoint_150_pt",
}


# ---- reproduction of the real layouts ---------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(KEY_FILES))
def test_full_size_on_meta_reproduces_the_keys_json(layout):
    ref = reference_keys(KEY_FILES[layout])
    sd = synthetic_state_dict(layout, device="meta")
    mine = [(name, list(t.shape)) for name, t in sd.items()]
    assert len(mine) == ref["count"]
    assert dict(mine) == ref["keys"]  # name for name, shape for shape
    assert mine == list(ref["keys"].items())  # and in the same order
    assert all(t.device.type == "meta" for t in sd.values())


def test_pi3_full_size_value_count_matches_the_published_total():
    assert sum(t.numel() for t in synthetic_state_dict("pi3").values()) == 958_696_738


def _fixture_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with safe_open(str(REFERENCE / "fixtures" / name / "weights.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


@needs_fixtures
def test_tiny_page4d_matches_the_vggt_fixture():
    cfg = json.loads((REFERENCE / "fixtures" / "vggt_layout_tiny" / "config.json").read_text())
    specs = synthetic_specs(
        "page4d",
        embed_dim=cfg["aggregator"]["embed_dim"], encoder_depth=cfg["encoder"]["depth"],
        depth=cfg["aggregator"]["depth"], num_heads=cfg["aggregator"]["num_heads"],
        camera_trunk_depth=cfg["camera_head"]["trunk_depth"], dpt_features=cfg["dpt_heads"]["features"],
        dpt_out_channels=tuple(cfg["dpt_heads"]["out_channels"]), mask_hidden=256, track_head=False,
    )
    assert dict(specs) == _fixture_shapes("vggt_layout_tiny")


@needs_fixtures
def test_tiny_pi3_matches_the_pi3_fixture():
    cfg = json.loads((REFERENCE / "fixtures" / "pi3_layout_tiny" / "config.json").read_text())
    specs = synthetic_specs(
        "pi3", embed_dim=cfg["decoder"]["embed_dim"], encoder_depth=cfg["encoder"]["depth"],
        depth=cfg["decoder"]["layers"], num_heads=cfg["decoder"]["num_heads"],
        pi3_heads=("point",), pi3_head_depth=1,
    )
    assert dict(specs) == _fixture_shapes("pi3_layout_tiny")


def test_sizes_change_the_shapes_they_should():
    a = dict(synthetic_specs("page4d", **TINY))
    b = dict(synthetic_specs("page4d", **{**TINY, "mask_hidden": 32, "depth": 3}))
    assert a["aggregator.spatial_mask_head.head0.2.weight"] == (256, 64, 1, 1)
    assert b["aggregator.spatial_mask_head.head0.2.weight"] == (32, 64, 1, 1)
    assert "aggregator.frame_blocks.3.norm1.weight" in a and "aggregator.frame_blocks.3.norm1.weight" not in b


def test_size_expressions_are_arithmetic_only():
    assert size("3*W+1", {"W": 4}) == 13 and size(7, {}) == 7
    with pytest.raises(ValueError, match="only names, ints"):
        size("__import__('os').getpid()", {})
    with pytest.raises(ValueError, match="not given"):
        size("Q*2", {})


# ---- values ---------------------------------------------------------------------------------


def test_values_are_seeded_small_and_per_name():
    a = synthetic_state_dict("vggt", device="cpu", **TINY)
    b = synthetic_state_dict("page4d", device="cpu", **TINY)
    c = synthetic_state_dict("vggt", device="cpu", seed=1, **TINY)
    w = "aggregator.frame_blocks.1.attn.qkv.weight"
    assert torch.equal(a[w], b[w])  # same name, same seed -> same values in any layout
    assert not torch.equal(a[w], c[w])
    assert not torch.equal(a[w], a["aggregator.frame_blocks.2.attn.qkv.weight"])
    assert 0.015 < a[w].std() < 0.025
    assert abs(a["aggregator.frame_blocks.1.norm1.weight"].mean() - 1) < 0.01
    assert torch.equal(a[w], synthetic_tensor(w, (192, 64)))
    assert synthetic_state_dict("pi3", device="cpu", dtype=torch.bfloat16, **TINY)[w.replace(
        "aggregator.frame_blocks.1", "decoder.1")].dtype == torch.bfloat16


def test_torch_writer_payload(tmp_path):
    sd = synthetic_state_dict("page4d", device="cpu", **TINY)
    write_checkpoint(sd, tmp_path / "m.pt", "torch")
    write_checkpoint(sd, tmp_path / "o.pt", "torch", optimizer=True)
    plain = torch.load(tmp_path / "m.pt", weights_only=True)
    with_opt = torch.load(tmp_path / "o.pt", weights_only=True)
    assert list(plain) == ["model"] and list(plain["model"]) == list(sd)
    assert {"model", "optimizer", "epoch"} <= set(with_opt)
    with pytest.raises(ValueError, match="format"):
        write_checkpoint(sd, tmp_path / "x", "npz")


# ---- layout detection -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_detect_every_layout_from_files(tmp_path, layout, fmt):
    path = write_synthetic(tmp_path / f"x.{'safetensors' if fmt == 'safetensors' else 'pt'}", layout, fmt, **TINY)
    assert detect_layout(path) == layout
    with open_checkpoint(path) as r:
        assert detect_layout(r) == layout


@pytest.mark.parametrize("layout", LAYOUTS)
def test_detect_every_layout_at_full_size(layout):
    assert detect_layout(StateDictReader(synthetic_state_dict(layout))) == layout


@needs_fixtures
@pytest.mark.parametrize("name, layout", [("vggt_layout_tiny", "page4d"), ("pi3_layout_tiny", "pi3")])
def test_detect_the_fixture_files(name, layout):
    assert detect_layout(REFERENCE / "fixtures" / name / "weights.safetensors") == layout


def test_unknown_layout_lists_example_keys(tmp_path):
    path = write_unknown_layout(tmp_path / "resnet.safetensors")
    with pytest.raises(CheckpointError) as exc:
        detect_layout(path)
    msg = str(exc.value)
    assert str(path) in msg and "backbone.conv1.weight" in msg and "aggregator.frame_blocks" in msg
    assert "\n" not in msg


def test_unrecognised_mask_head_is_an_error():
    sd = synthetic_state_dict("page4d", **TINY)
    sd["aggregator.spatial_mask_head.head0.2.weight"] = torch.empty(64, 1, 5, 5, device="meta")
    with pytest.raises(CheckpointError, match="unrecognised spatial mask head"):
        detect_layout(StateDictReader(sd))


def test_pi3_with_keys_pi3_lacks_is_another_family():
    sd = synthetic_state_dict("pi3", **TINY)
    sd["fancy_head.proj.weight"] = torch.empty(2, 2, device="meta")
    assert detect_layout(StateDictReader(sd)) == "pi3x"
    stripped = {k: v for k, v in synthetic_state_dict("pi3", **TINY).items() if not k.startswith("point_")}
    assert detect_layout(StateDictReader(stripped)) == "pi3"  # missing heads do not change the family


# ---- roles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout, role, ok", [
    ("pi3", "pi3", True), ("page4d", "page4d", True), ("page4d_ckpt150", "page4d", True),
    ("vggt", "page4d", True), ("pi3x", "pi3", False), ("page4d", "pi3", False),
    ("vggt", "pi3", False), ("pi3", "page4d", False), ("pi3x", "page4d", False),
])
def test_expect_layout(tmp_path, layout, role, ok):
    path = write_synthetic(tmp_path / "w.safetensors", layout, **TINY)
    if ok:
        assert expect_layout(path, role) == layout
        return
    with pytest.raises(CheckpointError) as exc:
        expect_layout(path, role)
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg
    expected = {
        ("pi3x", "pi3"): ["this is a Pi3X checkpoint", "page4d loads Pi3 (yyfz233/Pi3", "metric_token"],
        ("page4d", "pi3"): ["PAGE-4D", "not Pi3", "--page4d"],
        ("vggt", "pi3"): ["VGGT-1B", "--page4d"],
        ("pi3", "page4d"): ["Pi3 checkpoint, not PAGE-4D", "--pi3"],
        ("pi3x", "page4d"): ["Pi3X", "--page4d", "--pi3"],
    }[(layout, role)]
    for words in expected:
        assert words in msg, msg
    with pytest.raises(ValueError, match="role"):
        expect_layout(path, "dino")


# ---- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["pi3", "page4d", "page4d_ckpt150", "vggt"])
def test_infer_dims_recovers_the_generating_sizes(layout):
    sizes = dict(embed_dim=96, encoder_depth=3, depth=5, num_heads=6, encoder_registers=2, pos_embed_grid=5,
                 dpt_features=24, dpt_out_channels=(8, 16, 32, 32), mask_hidden=12, camera_trunk_depth=3,
                 track_head=False)
    dims = infer_dims(StateDictReader(synthetic_state_dict(layout, **sizes)))
    for key in ("embed_dim", "encoder_depth", "depth", "num_heads", "encoder_registers", "pos_embed_grid"):
        assert dims[key] == sizes[key], key
    assert dims["head_dim"] == 16 and dims["mlp_ratio"] == 4.0 and dims["special_tokens"] == 5
    if layout != "pi3":
        assert dims["dpt_features"] == 24 and dims["dpt_out_channels"] == (8, 16, 32, 32)
        assert dims["camera_dim"] == 192 and dims["camera_trunk_depth"] == 3
        assert dims.get("mask_hidden") == (12 if layout == "page4d" else None)
    else:
        assert dims["decoder_blocks"] == 10


def test_full_size_dims_and_mismatch_message():
    full = infer_dims(StateDictReader(synthetic_state_dict("page4d")))
    assert (full["size_label"], full["embed_dim"], full["depth"], full["num_heads"]) == ("ViT-L", 1024, 24, 16)
    assert infer_dims(StateDictReader(synthetic_state_dict("pi3")))["depth"] == 18
    base = infer_dims(StateDictReader(synthetic_state_dict("page4d", embed_dim=768, encoder_depth=12,
                                                           depth=12, num_heads=12)))
    assert describe_dims(base) == "ViT-B sized (embed 768, 12 encoder blocks, 12 layers, 12 heads)"
    msg = size_mismatch("ckpt.pt", base, full)
    assert msg.startswith("ckpt.pt: this file is ViT-B sized") and "your model is ViT-L sized" in msg
    assert size_mismatch("ckpt.pt", full, dict(full)) is None


def test_incomplete_file_names_the_missing_tensor():
    sd = synthetic_state_dict("page4d", **TINY)
    del sd["aggregator.patch_embed.pos_embed"]
    with pytest.raises(CheckpointError, match="incomplete .* no aggregator.patch_embed.pos_embed"):
        infer_dims(StateDictReader(sd))
