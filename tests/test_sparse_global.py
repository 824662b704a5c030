"""Sparse Global-SA: construction, neutrality at init, attention patterns, memory bank, lambda_kpt."""

from __future__ import annotations

import pytest
import torch

from models.attention_ops import run_block
from models.config import ConfigError, Page4DConfig
from models.inputs import InputShapeError
from models.layers.attention import LowRankBias, biased_attention
from models.layers.block import Block
from models.layers.rope import RotaryPositionEmbedding2D, patch_positions
from models.sparse_global import SparseGlobalBlock, build_sparse_blocks, keypoint_bias, keypoints_to_patches
from models.sparse_strategies import TokenLayout, dilated_neighbours, select_anchors
from models.vggt import VGGT
from tests.probes import landmark_key_sets, memory_after_read, sparse_attention_weights

STRATEGIES = ("landmark", "dilated", "memory_bank")
PX = 56  # 4 x 4 patches: tiny and fast
TINY = dict(preset="tiny", img_size=PX, landmark_k=4, dilated_levels=[1, 2])


def tiny_model(strategy: str, **overrides) -> VGGT:
    torch.manual_seed(0)
    kwargs = dict(TINY, enable_sparse_global=True, sparse_global_layers=[1, 4], sparse_strategy=strategy)
    kwargs.update(overrides)
    return VGGT(**kwargs).eval()


def same_weights_without_sparse(model: VGGT) -> VGGT:
    plain = VGGT(config=model.config.replace(enable_sparse_global=False)).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected
    assert all("sparse_blocks." in k or k == "aggregator.lambda_kpt" for k in unexpected)
    return plain


def images(T=3, V=2, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, T, V, 3, PX, PX, generator=g)


def tensors(out: dict) -> dict:
    return {k: v for k, v in out.items() if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0}


def max_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def open_gates(model: VGGT, value: float = 0.5) -> None:
    with torch.no_grad():
        for _, _, block in model.aggregator.all_sparse_blocks():
            block.gate.fill_(value)


# ------------------------------------------------------------------ construction
def test_usage_example_constructs_at_full_size_on_meta():
    with torch.device("meta"):
        model = VGGT(img_size=518, patch_size=14, embed_dim=1024, enable_camera=True, enable_point=True,
                     enable_depth=True, enable_dual_stream=True, enable_sparse_global=True,
                     sparse_global_layers=[23, 24], sparse_strategy="landmark")
    names = dict(model.named_parameters())
    for stream in ("pose", "geo"):
        for k in (22, 23):
            assert names[f"aggregator.{stream}_sparse_blocks.{k}.block.attn.qkv.weight"].shape == (3072, 1024)
            assert names[f"aggregator.{stream}_sparse_blocks.{k}.gate"].shape == (1024,)
    assert names["aggregator.lambda_kpt"].shape == ()
    assert not any(n.startswith("aggregator.sparse_blocks.") for n in names)  # both layers are after the split


def test_usage_example_runs_forward_at_tiny_size():
    torch.manual_seed(0)
    model = VGGT(preset="tiny", img_size=126, patch_size=14, embed_dim=64, enable_camera=True, enable_point=True,
                 enable_depth=True, enable_dual_stream=True, enable_sparse_global=True,
                 sparse_global_layers=[3, 4], sparse_strategy="landmark").eval()
    assert model.config.landmark_k == 64  # the default, 64 <= 81 patches
    x = torch.rand(1, 2, 2, 3, 126, 126)
    with torch.no_grad():
        out = model(x)
    assert out["depth"].shape == (1, 2, 2, 126, 126, 1)
    assert out["world_points"].shape == (1, 2, 2, 126, 126, 3)
    assert out["pose_enc"].shape == (1, 2, 2, 9)
    # (intrinsic can be infinite for random weights: a zero field of view; not this module's concern)
    assert all(torch.isfinite(out[k]).all() for k in ("depth", "world_points", "pose_enc"))


@pytest.mark.parametrize("changes, message", [
    (dict(sparse_strategy="random"), "sparse_strategy"),
    (dict(sparse_global_layers=[0, 4]), "1-based"),
    (dict(sparse_global_layers=[5]), "1-based"),
    (dict(sparse_global_layers=[]), "sparse_global_layers"),
    (dict(sparse_global_layers=[4, 4]), "duplicates"),
    (dict(landmark_k=17), "landmark_k"),  # 56 px -> 16 patches
    (dict(landmark_k=0), "landmark_k"),
    (dict(sparse_strategy="dilated", dilated_levels=[1, 0]), "dilated_levels"),
    (dict(sparse_strategy="dilated", dilated_levels=[-2]), "dilated_levels"),
    (dict(sparse_strategy="dilated", dilated_levels=[]), "dilated_levels"),
    (dict(sparse_strategy="memory_bank", memory_tokens_num=0), "memory_tokens_num"),
])
def test_construction_errors(changes, message):
    kwargs = dict(TINY, enable_sparse_global=True, sparse_global_layers=[4])
    kwargs.update(changes)
    with pytest.raises(ConfigError, match=message):
        VGGT(**kwargs)


def test_sparse_fields_not_checked_when_disabled():
    VGGT(preset="tiny", img_size=28, landmark_k=64)  # 4 patches, sparse off: landmark_k unused


def test_landmark_k_checked_against_actual_image_size():
    model = tiny_model("landmark", img_size=112, landmark_k=20)  # 64 patches at img_size, 16 at 56 px
    with pytest.raises(ConfigError, match="landmark_k"):
        model(images())


def test_keypoint_heatmap_is_max_pooled_to_patches():
    heat = torch.zeros(1, 1, 2, PX, PX)
    heat[0, 0, 1, 20, 44] = 0.8  # one pixel in patch (row 1, col 3) of camera 1
    pooled = keypoints_to_patches(heat, (1, 1, 2, 3, PX, PX), (4, 4), 14)
    expected = torch.zeros(1, 1, 2, 16)
    expected[0, 0, 1, 1 * 4 + 3] = 0.8
    assert torch.equal(pooled, expected)
    grid = torch.rand(1, 1, 2, 4, 4)
    assert torch.equal(keypoints_to_patches(grid, (1, 1, 2, 3, PX, PX), (4, 4), 14), grid.reshape(1, 1, 2, 16))


def test_bad_keypoint_heatmap_shape():
    with pytest.raises(InputShapeError, match="ext_keypoints"):
        tiny_model("landmark")(images(), ext_keypoints=torch.rand(1, 3, 2, 5, 5))


# ------------------------------------------------------------------ neutrality, gate, recorded output
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.slow
def test_outputs_unchanged_at_init_and_changed_when_gate_opens(strategy):
    model = tiny_model(strategy)
    plain = same_weights_without_sparse(model)
    x = images()
    heat = torch.rand(1, 3, 2, PX, PX)
    with torch.no_grad():
        on = tensors(model(x, ext_keypoints=heat))
        off = tensors(plain(x))
        assert on.keys() == off.keys()
        assert max_diff(on, off) <= 1e-6
        with torch.no_grad():
            model.aggregator.lambda_kpt.fill_(1.0)  # still neutral: behind the closed gate
        assert max_diff(tensors(model(x, ext_keypoints=heat)), off) <= 1e-6
        open_gates(model)
        opened = tensors(model(x, ext_keypoints=heat))
    assert opened["depth"].shape == off["depth"].shape
    assert max_diff(opened, off) > 1e-4


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.slow
def test_recorded_output_includes_sparse_block(strategy):
    model = tiny_model(strategy, sparse_global_layers=[4])
    x = images()
    with torch.no_grad():
        before = model(x, return_all_layers=True)["aggregated"]
        open_gates(model)
        after = model(x, return_all_layers=True)["aggregated"]
    C = model.config.embed_dim
    for stream in ("pose", "geo"):
        for k in (1, 2):
            assert torch.equal(before[stream][k], after[stream][k])  # earlier layers untouched
        assert torch.equal(before[stream][3][..., :C], after[stream][3][..., :C])  # Time-SA half
        assert (before[stream][3][..., C:] - after[stream][3][..., C:]).abs().max() > 1e-4  # View-SA half


def test_sparse_before_split_acts_on_shared_stream_only_once():
    model = tiny_model("dilated", sparse_global_layers=[1, 2])  # mid layers 2, 3: layer 1 shared
    assert {(s, k) for s, k, _ in model.aggregator.all_sparse_blocks()} == {("shared", 0), ("pose", 1), ("geo", 1)}
    names = [n for n, _ in model.named_parameters() if "sparse_blocks" in n]
    assert {n.split(".")[1] for n in names} == {"sparse_blocks", "pose_sparse_blocks", "geo_sparse_blocks"}


def test_blocks_copy_their_source_view_block_and_sync_recopies():
    model = tiny_model("landmark", sparse_global_layers=[1, 2, 4])
    agg = model.aggregator
    for stream, k, sparse in agg.all_sparse_blocks():
        source = agg.blocks_of("view", k, stream)
        for name, p in source.named_parameters():
            assert torch.equal(dict(sparse.block.named_parameters())[name], p), (stream, k, name)
        assert sparse.block.eps == source.eps
    with torch.no_grad():
        agg.geo_view_blocks[1].attn.qkv.weight.add_(1.0)
        agg.sparse_blocks_of(1, "geo").gate.fill_(0.25)
    agg.geo_view_blocks[1].set_eps(1e-6, 1e-6)
    agg.sync_sparse_blocks()
    geo, pose = agg.sparse_blocks_of(1, "geo"), agg.sparse_blocks_of(1, "pose")
    assert torch.equal(geo.block.attn.qkv.weight, agg.geo_view_blocks[1].attn.qkv.weight)
    assert torch.equal(pose.block.attn.qkv.weight, agg.pose_view_blocks[1].attn.qkv.weight)
    assert not torch.equal(geo.block.attn.qkv.weight, pose.block.attn.qkv.weight)
    assert geo.block.eps == (1e-6, 1e-6) and pose.block.eps == agg.pose_view_blocks[1].eps
    assert torch.all(geo.gate == 0.25)  # gates are trained state: not reset by the sync


# ------------------------------------------------------------------ attention patterns (block level)
def make_block(strategy: str, C=32, heads=2, S=2, landmark_k=3, levels=(1, 2), memory=4) -> SparseGlobalBlock:
    torch.manual_seed(3)
    cfg = Page4DConfig.preset("tiny", embed_dim=C, num_heads=heads, mlp_ratio=2.0, layerscale_init=0.5,
                              num_register_tokens=S - 1, encoder={"num_register_tokens": S - 1, "num_heads": heads},
                              camera_head={"num_heads": heads}, pi3_layers=0, sparse_strategy=strategy,
                              landmark_k=landmark_k, dilated_levels=levels, memory_tokens_num=memory)
    block = SparseGlobalBlock(cfg, 0)
    with torch.no_grad():
        block.gate.fill_(1.0)
    return block.eval()


def clip(T=4, V=2, N=8, C=32, seed=0) -> torch.Tensor:
    return torch.randn(1, T, V, N, C, generator=torch.Generator().manual_seed(seed))


def no_positions(N: int) -> torch.Tensor:
    return torch.zeros(1, N, 2, dtype=torch.long)


def dense_reference(block: SparseGlobalBlock, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Plain softmax attention weights [B, H, L, L] restricted to ``allowed`` [L, L] (bool)."""
    B, T, V, N, C = x.shape
    q, k, _ = block.block.attn.project(block.block.norm1(x.reshape(B, -1, C)))
    logits = (q @ k.transpose(-1, -2)) * block.block.attn.scale
    return logits.masked_fill(~allowed, float("-inf")).softmax(-1)


def test_select_anchors_specials_first_then_top_scores_and_keypoint_ties():
    saliency = torch.tensor([[[0.1, 0.9, 0.5, 0.7, 0.2]]])
    assert select_anchors(saliency, 2, 3).tolist() == [[[0, 1, 2, 4, 6]]]  # patches 1 and 3 (+3 specials)
    keypoints = torch.tensor([[[1.0, 0.0, 0.0, 0.0, 1.0]]])
    # keypoint patches 0 and 4 first (0 before 4 by saliency), then the best saliency among the rest
    assert select_anchors(saliency, 3, 3, keypoints).tolist() == [[[0, 1, 2, 7, 3, 4]]]
    with pytest.raises(ValueError):
        select_anchors(saliency, 6, 3)


def test_default_landmark_score_is_distance_from_the_image_mean():
    block = make_block("landmark")
    T, V, N, C = 4, 2, 10, 32
    h = torch.randn(2, T * V * N, C, generator=torch.Generator().manual_seed(5))
    anchors = block.anchors(h, TokenLayout(T, V, N, 2), None)
    patches = h.reshape(2, T * V, N, C)[:, :, 2:]
    distance = (patches - patches.mean(dim=2, keepdim=True)).norm(dim=-1)
    expected = distance.topk(3, dim=-1).indices + 2
    assert torch.equal(anchors[..., :2], torch.tensor([0, 1]).expand(2, T * V, 2))
    assert torch.equal(anchors[..., 2:].sort(-1).values, expected.sort(-1).values)


def test_run_block_with_plain_attention_reproduces_block_forward():
    torch.manual_seed(0)
    block = Block(32, 2, 2.0, qk_norm=True, layerscale_init=0.5, rope=RotaryPositionEmbedding2D(100.0)).eval()
    x = torch.randn(3, 21, 32)
    positions = patch_positions(1, 4, 4, 5)
    bias = LowRankBias(torch.randn(1, 1, 21, 2), torch.randn(3, 1, 21, 2))
    expected = block(x, positions, (), bias)
    got = run_block(block, x, positions, lambda q, k, v: biased_attention(q, k, v, block.attn.scale, bias))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_landmark_attention_reaches_only_anchors_and_own_image():
    block = make_block("landmark")
    x = clip()
    T, V, N = x.shape[1:4]
    layout = TokenLayout(T, V, N, 2)
    weights = sparse_attention_weights(block, x, no_positions(N))["tokens"]  # [1, H, L, L]
    anchors = block.anchors(block.block.norm1(x.reshape(1, -1, x.shape[-1])), layout, None)
    allowed = torch.zeros(layout.tokens, layout.tokens, dtype=torch.bool)
    for image, keys in enumerate(landmark_key_sets(layout, anchors)[0]):
        allowed[image * N:(image + 1) * N, sorted(keys)] = True
    assert allowed.sum(-1).tolist() == [N + (T * V - 1) * (2 + 3)] * layout.tokens
    assert torch.all(weights[..., ~allowed] == 0)
    assert torch.all(weights[..., allowed] > 0)
    # Same weights as dense attention restricted to that key set: every key counted exactly once.
    torch.testing.assert_close(weights, dense_reference(block, x, allowed), atol=1e-6, rtol=1e-5)


def test_landmark_anchors_follow_the_keypoint_heatmap():
    block = make_block("landmark")
    x = clip()
    T, V, N = x.shape[1:4]
    P = N - 2
    heat = torch.zeros(1, T * V, P)
    chosen = torch.stack([torch.randperm(P, generator=torch.Generator().manual_seed(i))[:3] for i in range(T * V)])
    heat.scatter_(2, chosen[None], 1.0)
    anchors = block.anchors(block.block.norm1(x.reshape(1, -1, x.shape[-1])), TokenLayout(T, V, N, 2), heat)
    for image in range(T * V):
        assert set(anchors[0, image].tolist()) == {0, 1} | {int(p) + 2 for p in chosen[image]}


def test_landmark_with_all_patches_as_anchors_is_dense_global_attention():
    block = make_block("landmark", landmark_k=6)  # N = 8 = 2 specials + 6 patches
    x = clip()
    B, T, V, N, C = x.shape
    dense = block.block(x.reshape(B, -1, C))  # the same weights attending over all L tokens
    torch.testing.assert_close(block(x, no_positions(N)), dense.reshape(x.shape), atol=1e-5, rtol=1e-5)


def test_dilated_neighbours_match_definition():
    levels = (1, 2, 4)
    assert dilated_neighbours(0, 10, levels) == [0, 1, 2, 4]
    assert dilated_neighbours(5, 10, levels) == [1, 3, 4, 5, 6, 7, 9]
    assert dilated_neighbours(9, 10, levels) == [5, 7, 8, 9]
    assert dilated_neighbours(0, 1, levels) == [0]
    for T in (1, 3, 8, 17):
        for t in range(T):
            assert dilated_neighbours(t, T, levels) == [s for s in range(T) if s == t or abs(s - t) in levels]


def test_dilated_attention_pattern_is_the_neighbour_instants_across_cameras():
    block = make_block("dilated", levels=(1, 3))
    x = clip(T=6)
    T, V, N = x.shape[1:4]
    weights = sparse_attention_weights(block, x, no_positions(N))["tokens"]
    instant = torch.arange(T).repeat_interleave(V * N)
    gap = (instant[:, None] - instant[None]).abs()
    allowed = (gap == 0) | (gap == 1) | (gap == 3)
    assert torch.all(weights[..., ~allowed] == 0)
    assert torch.all(weights[..., allowed] > 0)
    torch.testing.assert_close(weights, dense_reference(block, x, allowed), atol=1e-6, rtol=1e-5)


def test_dilated_covering_every_offset_is_dense_global_attention():
    block = make_block("dilated", levels=(1, 2, 3))
    x = clip(T=4)
    B, T, V, N, C = x.shape
    flat = x.reshape(B, -1, C)
    torch.testing.assert_close(block(x, no_positions(N)), block.block(flat).reshape(x.shape),
                               atol=1e-5, rtol=1e-5)


def test_memory_bank_reads_all_tokens_and_writes_back():
    block = make_block("memory_bank")
    x, other = clip(seed=0), clip(seed=1)
    N = x.shape[3]
    weights = sparse_attention_weights(block, x, no_positions(N))
    L = x.shape[1] * x.shape[2] * N
    assert weights["read"].shape == (1, 2, 4, L) and weights["write"].shape == (1, 2, L, 4)
    assert torch.all(weights["read"] > 0)  # every memory slot reads every token
    torch.testing.assert_close(weights["read"].sum(-1), torch.ones(1, 2, 4))
    memory = memory_after_read(block, x, no_positions(N))
    assert (memory - memory_after_read(block, other, no_positions(N))).abs().max() > 1e-3  # read
    out = block(x, no_positions(N))
    with torch.no_grad():
        block.memory_tokens.add_(torch.randn_like(block.memory_tokens))
    assert (block(x, no_positions(N)) - out).abs().max() > 1e-3  # written into the tokens
    with torch.no_grad():
        block.gate.zero_()
    assert torch.equal(block(x, no_positions(N)), x)


# ------------------------------------------------------------------ lambda_kpt
@pytest.mark.parametrize("strategy", ["landmark", "dilated", "memory_bank"])
def test_lambda_kpt_raises_geometry_attention_on_keypoints_pose_untouched(strategy):
    cfg = Page4DConfig.preset("tiny", enable_sparse_global=True, sparse_global_layers=[4], sparse_strategy=strategy,
                              landmark_k=4, img_size=PX)
    blocks = build_sparse_blocks(cfg, split_layer=1, rope=None)
    lam = torch.zeros(())
    x = clip(T=3, V=2, N=cfg.num_special_tokens + 16, C=cfg.embed_dim)
    B, T, V, N, C = x.shape
    keypoints = torch.zeros(B, T, V, 16)
    keypoints[..., [0, 5, 10]] = 1.0
    key_is_kpt = torch.cat((torch.zeros(B, T, V, 5), keypoints), -1).reshape(-1).bool()
    positions = patch_positions(1, 4, 4, 5)
    score = keypoints.reshape(B, T * V, -1)

    def weights(stream):
        block = blocks[f"{stream}_sparse_blocks"][3]
        w = sparse_attention_weights(block, x, positions, keypoint_bias(lam, stream, keypoints, 5), score)
        return w["read"] if strategy == "memory_bank" else w["tokens"]

    base = {s: weights(s) for s in ("pose", "geo")}
    lam = torch.tensor(2.0)
    biased = {s: weights(s) for s in ("pose", "geo")}
    assert torch.equal(base["pose"], biased["pose"])
    mass_before = base["geo"][..., key_is_kpt].sum(-1)
    mass_after = biased["geo"][..., key_is_kpt].sum(-1)
    assert torch.all(mass_after > mass_before + 1e-4)


def test_lambda_kpt_in_shared_stream_only_biases_patch_queries():
    cfg = Page4DConfig.preset("tiny", enable_sparse_global=True, sparse_global_layers=[1], sparse_strategy="dilated",
                              img_size=PX, landmark_k=4)
    block = build_sparse_blocks(cfg, split_layer=1, rope=None)["sparse_blocks"][0]
    x = clip(T=2, V=2, N=21, C=cfg.embed_dim)
    keypoints = torch.zeros(1, 2, 2, 16)
    keypoints[..., 3] = 1.0
    positions = patch_positions(1, 4, 4, 5)
    before = sparse_attention_weights(block, x, positions, keypoint_bias(torch.tensor(0.0), "shared", keypoints, 5))
    after = sparse_attention_weights(block, x, positions, keypoint_bias(torch.tensor(1.5), "shared", keypoints, 5))
    is_special = (torch.arange(21) < 5).repeat(4)
    assert torch.equal(before["tokens"][:, :, is_special], after["tokens"][:, :, is_special])
    assert (before["tokens"][:, :, ~is_special] - after["tokens"][:, :, ~is_special]).abs().max() > 1e-4


def test_lambda_kpt_has_no_effect_with_memory_bank_in_the_shared_stream_by_design():
    cfg = Page4DConfig.preset("tiny", enable_sparse_global=True, sparse_global_layers=[1],
                              sparse_strategy="memory_bank", img_size=PX, landmark_k=4)
    blocks = build_sparse_blocks(cfg, split_layer=0, rope=None)  # layer 1 after the split: pose / geo
    shared = build_sparse_blocks(cfg, split_layer=None, rope=None)["sparse_blocks"][0]
    shared.load_state_dict(blocks["geo_sparse_blocks"][0].state_dict())
    x = clip(T=2, V=2, N=21, C=cfg.embed_dim)
    keypoints = torch.zeros(1, 2, 2, 16)
    keypoints[..., 3] = 1.0
    positions = patch_positions(1, 4, 4, 5)
    out = {}
    with torch.no_grad():
        for name, block in (("shared", shared), ("geo", blocks["geo_sparse_blocks"][0])):
            block.gate.fill_(1.0)
            out[name] = [block(x, positions, keypoint_bias(torch.tensor(lam), name, keypoints, 5))
                         for lam in (0.0, 1.5)]
    assert torch.equal(out["shared"][0], out["shared"][1])  # shared stream: no query is a patch query
    assert (out["geo"][0] - out["geo"][1]).abs().max() > 1e-5  # geometry stream: the memory read is biased


@pytest.mark.slow
def test_lambda_kpt_end_to_end_pose_stream_unchanged():
    model = tiny_model("landmark", sparse_global_layers=[3])
    open_gates(model)
    x, heat = images(), torch.rand(1, 3, 2, PX, PX)
    with torch.no_grad():
        base = model(x, return_all_layers=True, ext_keypoints=heat)["aggregated"]
        model.aggregator.lambda_kpt.fill_(2.0)
        moved = model(x, return_all_layers=True, ext_keypoints=heat)["aggregated"]
    assert torch.equal(base["pose"][3], moved["pose"][3])
    assert (base["geo"][3] - moved["geo"][3]).abs().max() > 1e-5
