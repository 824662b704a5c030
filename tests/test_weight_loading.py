"""Three-stage weight loading on synthetic checkpoints with the real key names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.loading import CheckpointError, inspect_load, load_model, open_checkpoint
from models.loading.plan import SizeMismatchError
from models.loading.synthetic import TINY, synthetic_tensor, write_synthetic
from tests.broken_checkpoints import truncated_copy, write_code_pickle
from tests.helpers import random_images

SEED_PI3, SEED_PAGE4D = 11, 22
PI3_SIZES = dict(TINY, depth=3)  # tiny: layers 1-3 come from Pi3 (pi3_layers=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    return {
        "pi3": write_synthetic(folder / "model.safetensors", "pi3", seed=SEED_PI3, **PI3_SIZES),
        "page4d": write_synthetic(folder / "checkpoint_mask.pt", "page4d", "torch", seed=SEED_PAGE4D,
                                  optimizer=True, **dict(TINY, track_head=True)),
        "page4d_st": write_synthetic(folder / "checkpoint_mask.safetensors", "page4d", seed=SEED_PAGE4D, **TINY),
        "ckpt150": write_synthetic(folder / "checkpoint_150.pt", "page4d_ckpt150", "torch", seed=SEED_PAGE4D, **TINY),
        "vggt": write_synthetic(folder / "vggt.pt", "vggt", "torch", seed=SEED_PAGE4D, **TINY),
        "folder": folder,
    }


def test_every_tensor_lands_where_the_plan_says(files):
    model, report = load_model(pi3=files["pi3"], page4d=files["page4d"], preset="tiny")
    params = dict(model.named_parameters())
    C = model.config.embed_dim

    readers = {SEED_PI3: open_checkpoint(files["pi3"]), SEED_PAGE4D: open_checkpoint(files["page4d"])}

    def same(ours, source, seed, transform=lambda t: t):
        expected = transform(readers[seed].get(source))
        # The file holds the generator's seeded values (an independent check of the reader too).
        assert torch.equal(readers[seed].get(source), synthetic_tensor(source, readers[seed].shape(source), seed))
        assert torch.equal(params[ours].detach(), expected), (ours, source)

    # Stage 1 (Pi3): encoder, layers 1-3 (decoder 2i / 2i+1), registers 1-4 in both slots.
    same("aggregator.encoder.blocks.1.mlp.fc2.weight", "encoder.blocks.1.mlp.fc2.weight", SEED_PI3)
    same("aggregator.encoder.pos_embed", "encoder.pos_embed", SEED_PI3)
    same("aggregator.time_blocks.0.attn.qkv.weight", "decoder.0.attn.qkv.weight", SEED_PI3)
    same("aggregator.view_blocks.0.ls1.gamma", "decoder.1.ls1.gamma", SEED_PI3)
    # Layers 2-3 are mid layers (dual stream): both streams copy Pi3's blocks of that layer.
    same("aggregator.pose_time_blocks.1.attn.proj.weight", "decoder.2.attn.proj.weight", SEED_PI3)
    same("aggregator.geo_view_blocks.2.attn.q_norm.bias", "decoder.5.attn.q_norm.bias", SEED_PI3)
    same("aggregator.register_token", "register_token", SEED_PI3, lambda r: r[:, :, 1:].expand(1, 2, 4, C))
    # Stage 2 (PAGE-4D): layer 4, camera token, mask head, heads.
    same("aggregator.time_blocks.3.mlp.fc1.weight", "aggregator.frame_blocks.3.mlp.fc1.weight", SEED_PAGE4D)
    same("aggregator.view_blocks.3.norm2.bias", "aggregator.global_blocks.3.norm2.bias", SEED_PAGE4D)
    same("aggregator.camera_token", "aggregator.camera_token", SEED_PAGE4D)
    same("aggregator.spatial_mask_head.head0.2.weight", "aggregator.spatial_mask_head.head0.2.weight", SEED_PAGE4D)
    same("camera_head.trunk.1.attn.qkv.weight", "camera_head.trunk.1.attn.qkv.weight", SEED_PAGE4D)
    same("depth_head.scratch.refinenet2.resConfUnit1.conv2.weight",
         "depth_head.scratch.refinenet2.resConfUnit1.conv2.weight", SEED_PAGE4D)
    same("point_head.projects.3.weight", "point_head.projects.3.weight", SEED_PAGE4D)

    # Provenance is complete and consistent.
    assert {r.name for r in report.records} == set(params)
    assert all(r.stage in (1, 2, 3) for r in report.records)
    counts = report.counts()
    assert sum(c["parameters"] for c in counts.values()) == sum(p.numel() for p in params.values())
    stage3 = {r.name for r in report.records if r.stage == 3}
    assert stage3 == {n for n in params if n.startswith(("aggregator.mask_bias", "aggregator.mask_fusion",
                                                           "aggregator.temporal_pos"))}
    assert all(r.reason for r in report.records if r.stage == 3)
    assert all(r.file and r.source for r in report.records if r.stage != 3)
    reg = report.record("aggregator.register_token")
    assert reg.stage == 1 and "slice Pi3 registers 1-4" in reg.adaptation[0]
    # Unused source tensors: Pi3's heads and buffers, PAGE-4D's track head, mask token, layers 1-3.
    unused_pi3, unused_page4d = set(report.unused["pi3"]), set(report.unused["page4d"])
    assert {"image_mean", "image_std", "point_head.proj.weight"} <= unused_pi3
    assert "aggregator.patch_embed.mask_token" in unused_page4d
    assert any(k.startswith("track_head.") for k in unused_page4d)
    assert "aggregator.frame_blocks.0.attn.qkv.weight" in unused_page4d
    assert "aggregator.frame_blocks.3.attn.qkv.weight" not in unused_page4d
    # Numerics follow the source: Pi3 blocks eps 1e-6, PAGE-4D blocks 1e-5.
    assert model.aggregator.time_blocks[0].eps == (1e-6, 1e-5)
    assert model.aggregator.time_blocks[3].eps == (1e-5, 1e-5)
    # Stage 3 is neutral.
    assert all(v == 0.0 for v in report_lambdas(model).values())


def report_lambdas(model):
    return model.aggregator.mask_bias.values()


def test_safetensors_and_torch_pickle_load_identically(files):
    a, _ = load_model(page4d=files["page4d"], preset="tiny")
    b, _ = load_model(page4d=files["page4d_st"], preset="tiny")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name


def test_missing_files_are_initialised_and_said_so(files):
    _, only_pi3 = load_model(pi3=files["pi3"], preset="tiny")
    heads = [r for r in only_pi3.records if r.group in ("camera head", "depth head", "point head", "mask head")]
    assert heads and all(r.stage == 3 and "no PAGE-4D file" in r.reason for r in heads)
    assert only_pi3.record("aggregator.camera_token").adaptation[-1] == "fallback: no PAGE-4D file"
    assert any("no page4d file" in note for note in only_pi3.notes)
    _, only_page4d = load_model(page4d=files["page4d"], preset="tiny")
    enc = only_page4d.record("aggregator.encoder.blocks.0.attn.qkv.weight")
    assert enc.stage == 2 and "fallback: no Pi3 file" in enc.adaptation
    _, nothing = load_model(preset="tiny")
    assert {r.stage for r in nothing.records} == {3}


def test_layout_variants(files):
    model, report = load_model(page4d=files["ckpt150"], preset="tiny")
    assert model.config.mask_head_layout == "ckpt150"  # follows the file
    assert report.record("aggregator.spatial_mask_head.alpha_logit").stage == 2
    # Pinned to the official layout: the whole mask head is initialised, with the reason recorded.
    _, pinned = load_model(page4d=files["ckpt150"], preset="tiny", mask_head_layout="official")
    mask = [r for r in pinned.records if r.group == "mask head"]
    assert all(r.stage == 3 for r in mask)
    assert any("layout variant" in r.reason for r in mask)
    # VGGT-1B: the PAGE-4D layout without a mask head.
    _, vggt = load_model(page4d=files["vggt"], preset="tiny")
    assert vggt.files["page4d"]["layout"] == "vggt"
    assert all(r.stage == 3 and "absent" in r.reason for r in vggt.records if r.group == "mask head")
    assert vggt.record("camera_head.trunk.0.attn.qkv.weight").stage == 2


@pytest.mark.slow
def test_dtype_on_request(files):
    model, report = load_model(pi3=files["pi3"], page4d=files["page4d_st"], preset="tiny", dtype="bfloat16")
    assert {p.dtype for p in model.aggregator.parameters()} == {torch.bfloat16}
    heads = [model.camera_head, model.depth_head, model.point_head]
    assert {p.dtype for head in heads for p in head.parameters()} == {torch.float32}  # heads stay float32
    assert "dtype float32 -> bfloat16" in report.record("aggregator.time_blocks.0.attn.qkv.weight").adaptation
    reference, _ = load_model(pi3=files["pi3"], page4d=files["page4d_st"], preset="tiny")
    a = dict(model.named_parameters())["aggregator.view_blocks.3.attn.qkv.weight"]
    b = dict(reference.named_parameters())["aggregator.view_blocks.3.attn.qkv.weight"].to(torch.bfloat16)
    assert torch.equal(a, b)
    images = random_images(1, 2, 2, 42, 56, seed=13)
    with torch.no_grad():
        low, full = model(images), reference(images)
    assert low["depth"].dtype == torch.float32
    assert torch.allclose(low["depth"], full["depth"], rtol=0.1, atol=0.05)  # bf16 aggregator, close


def test_bad_files_give_clear_errors(files, tmp_path):
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(pi3=truncated_copy(files["pi3"], tmp_path / "cut.safetensors"), preset="tiny")
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        load_model(page4d=truncated_copy(files["page4d"], tmp_path / "cut.pt"), preset="tiny")
    with pytest.raises(CheckpointError, match="execute code|refused"):
        load_model(page4d=write_code_pickle(tmp_path / "evil.pt"), preset="tiny")
    with pytest.raises(CheckpointError, match="--page4d"):
        load_model(pi3=files["page4d"], preset="tiny")
    pi3x = write_synthetic(tmp_path / "pi3x.safetensors", "pi3x", **PI3_SIZES)
    with pytest.raises(CheckpointError, match="Pi3X"):
        load_model(pi3=pi3x, preset="tiny")


def test_size_mismatch_is_an_error_or_a_recorded_fallback(tmp_path):
    bigger = write_synthetic(tmp_path / "b.safetensors", "page4d", **dict(TINY, embed_dim=128))
    with pytest.raises(SizeMismatchError, match="shape"):
        load_model(page4d=bigger, preset="tiny")
    _, report = load_model(page4d=bigger, preset="tiny", on_size_mismatch="init")
    record = report.record("aggregator.time_blocks.3.attn.qkv.weight")
    assert record.stage == 3 and "shape mismatch" in record.reason


def test_inspect_load_matches_load_without_reading_tensors(files, monkeypatch):
    _, loaded = load_model(pi3=files["pi3"], page4d=files["page4d"], preset="tiny")
    from models.loading.safetensors_reader import SafetensorsReader

    def refuse(self, key):
        raise AssertionError(f"inspect_load read tensor {key}")

    monkeypatch.setattr(SafetensorsReader, "get", refuse)
    monkeypatch.setattr(SafetensorsReader, "data_range", refuse)
    report = inspect_load(pi3=files["pi3"], page4d=files["page4d_st"], preset="tiny")
    planned = [(r.name, r.stage, r.source) for r in report.records]
    assert planned == [(r.name, r.stage, r.source) for r in loaded.records]


def test_full_size_plan_from_meta_checkpoints():
    """At full size (meta tensors, no data) every tensor of the model has its planned source."""
    from models.loading.loader import build_plan
    from models.loading.synthetic import synthetic_state_dict
    from models.loading.torch_reader import StateDictReader
    from models.vggt import VGGT

    readers = {"pi3": StateDictReader(synthetic_state_dict("pi3"), "model.safetensors"),
               "page4d": StateDictReader(synthetic_state_dict("page4d"), "checkpoint_mask.pt")}
    with torch.device("meta"):
        model = VGGT.from_preset("full")
    report = build_plan(model, readers, {"pi3": "pi3", "page4d": "page4d"}, torch.float32, "error")
    stage = {r.name: r.stage for r in report.records}
    assert stage["aggregator.time_blocks.17.attn.qkv.weight"] == 1  # layer 18 from Pi3 decoder.34
    assert report.record("aggregator.view_blocks.17.attn.qkv.weight").source == ["decoder.35.attn.qkv.weight"]
    assert stage["aggregator.time_blocks.18.attn.qkv.weight"] == 2  # layer 19 from PAGE-4D
    assert report.record("aggregator.pose_view_blocks.7.mlp.fc1.weight").source == ["decoder.15.mlp.fc1.weight"]
    new_parts = [r for r in report.records if r.stage == 3]
    assert sum(r.numel for r in new_parts) < 1000  # only lambdas, temporal frequencies, fusion scalars
    assert len(report.unused["pi3"]) > 0 and "track_head.tracker.fmap_norm.weight" in report.unused["page4d"]


def test_pi3_only_reproduces_a_plain_pi3_decoder_pass(files):
    """With only a Pi3 file, T = 1 and no mask, layers 1..3 equal a direct Pi3 decoder computation."""
    model, _ = load_model(pi3=files["pi3"], preset="tiny")
    with open_checkpoint(files["pi3"]) as reader:
        weights = {k: reader.get(k).clone() for k in reader.keys()}
    images = random_images(1, 1, 3, 42, 56, seed=9)
    with torch.no_grad():
        ours = model(images, return_all_layers=True)["aggregated"]
        patches = model.aggregator.encoder((images[0, 0] - model.aggregator.image_mean) / model.aggregator.image_std)
        reference = pi3_decoder_reference(weights, patches, rows=3, cols=4, layers=3, heads=4)
    for k, expected in enumerate(reference):
        got = ours["pose"].get(k, ours["shared"].get(k))[0, 0]
        assert (got - expected).abs().max() < 1e-4, f"layer {k + 1}"


def pi3_decoder_reference(w, patches, rows, cols, layers, heads):
    """Pi3's decoder written out from docs/design.md ("Attention numerics"): registers + patches, RoPE (100, +1),
    even blocks within each image, odd blocks across images; returns concat(frame, global) per layer."""
    n_img, P, C = patches.shape
    x = torch.cat((w["register_token"][0].expand(n_img, -1, -1), patches), dim=1)  # [V, 5+P, C]
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    pos = torch.cat((torch.zeros(5, 2), torch.stack((ys.flatten(), xs.flatten()), -1) + 1.0))  # [5+P, 2]

    def rope(t, p):  # t [B, H, L, D]; p [L, 2]
        d = t.shape[-1] // 2
        inv = 1.0 / 100.0 ** (torch.arange(0, d, 2).float() / d)
        out = []
        for half, coord in zip(t.chunk(2, -1), (p[:, 0], p[:, 1])):
            ang = coord[:, None] * inv
            ang = torch.cat((ang, ang), -1)
            a, b = half.chunk(2, -1)
            out.append(half * ang.cos() + torch.cat((-b, a), -1) * ang.sin())
        return torch.cat(out, -1)

    def block(i, t, p):
        pre = f"decoder.{i}."
        h = F.layer_norm(t, (C,), w[pre + "norm1.weight"], w[pre + "norm1.bias"], 1e-6)
        qkv = F.linear(h, w[pre + "attn.qkv.weight"], w[pre + "attn.qkv.bias"])
        B, L, _ = qkv.shape
        q, k, v = qkv.reshape(B, L, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q = F.layer_norm(q, (C // heads,), w[pre + "attn.q_norm.weight"], w[pre + "attn.q_norm.bias"], 1e-5)
        k = F.layer_norm(k, (C // heads,), w[pre + "attn.k_norm.weight"], w[pre + "attn.k_norm.bias"], 1e-5)
        q, k = rope(q, p), rope(k, p)
        att = torch.softmax(q @ k.transpose(-1, -2) / (C // heads) ** 0.5, -1) @ v
        t = t + w[pre + "ls1.gamma"] * F.linear(att.transpose(1, 2).reshape(B, L, C), w[pre + "attn.proj.weight"],
                                                w[pre + "attn.proj.bias"])
        h = F.layer_norm(t, (C,), w[pre + "norm2.weight"], w[pre + "norm2.bias"], 1e-6)
        h = F.linear(F.gelu(F.linear(h, w[pre + "mlp.fc1.weight"], w[pre + "mlp.fc1.bias"])),
                     w[pre + "mlp.fc2.weight"], w[pre + "mlp.fc2.bias"])
        return t + w[pre + "ls2.gamma"] * h

    outputs = []
    for layer in range(layers):
        frame = block(2 * layer, x, pos)  # each image alone
        glob = block(2 * layer + 1, frame.reshape(1, -1, C), pos.repeat(n_img, 1)).reshape(n_img, -1, C)
        outputs.append(torch.cat((frame, glob), -1))
        x = glob
    return outputs


@pytest.mark.slow
def test_sparse_blocks_copy_their_layer_and_start_neutral(files):
    kwargs = dict(enable_sparse_global=True, sparse_global_layers=(3, 4), sparse_strategy="landmark", landmark_k=4)
    model, report = load_model(pi3=files["pi3"], page4d=files["page4d"], preset="tiny", **kwargs)
    plain, _ = load_model(pi3=files["pi3"], page4d=files["page4d"], preset="tiny")
    agg = model.aggregator
    # Layer 3 (a mid layer of the dual stream, from Pi3) and layer 4 (after the mid layers, PAGE-4D).
    for k, stream in ((2, "geo"), (3, "geo"), (3, "pose")):
        sparse = agg.sparse_blocks_of(k, stream)
        view = agg.blocks_of("view", k, stream)
        for (name, a), (_, b) in zip(sparse.block.named_parameters(), view.named_parameters()):
            assert torch.equal(a, b), (k, stream, name)
        assert sparse.block.eps == view.eps  # numerics of the source copied as well
    assert agg.sparse_blocks_of(2, "geo").block.eps == (1e-6, 1e-5)  # Pi3's
    record = report.record("aggregator.geo_sparse_blocks.3.block.attn.qkv.weight")
    assert record.stage == 2 and record.source == ["aggregator.global_blocks.3.attn.qkv.weight"]
    assert "copy of the View-SA block of this layer" in record.adaptation
    assert report.record("aggregator.geo_sparse_blocks.3.gate").stage == 3
    images = random_images(1, 2, 2, 42, 56, seed=12)
    with torch.no_grad():
        a, b = model(images), plain(images)
    assert (a["depth"] - b["depth"]).abs().max() < 1e-6
