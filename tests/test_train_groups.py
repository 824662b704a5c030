"""What trains (``--train new|page4d|all``, patterns), optimizer groups, schedule, and that every trained
tensor receives a gradient from the objective (page4d_cli/train/param_groups.py, optim.py)."""

from __future__ import annotations

import re

import pytest
import torch

from models.vggt import VGGT
from page4d_cli.train.config import LossConfig
from page4d_cli.train.optim import build_optimizer, warmup_cosine
from page4d_cli.train.param_groups import (
    apply_selection,
    build_groups,
    page4d_layers,
    select_trainable,
    selection_table,
)
from tests.train_fakes import FakeClipDataset


def test_page4d_layers_map_11_to_20_of_24_proportionally():
    assert page4d_layers(24) == list(range(11, 21))
    assert page4d_layers(8) == [4, 5, 6]
    assert page4d_layers(4) == [2, 3]


@pytest.fixture(scope="module")
def full_meta():
    with torch.device("meta"):
        return VGGT.from_preset("full", enable_sparse_global=True, sparse_global_layers=(23, 24),
                                sparse_strategy="memory_bank")


def _block_layers(names):
    layers = set()
    for name in names:
        m = re.match(r"aggregator\.(?:pose_|geo_)?(?:time|view)_blocks\.(\d+)\.", name)
        if m:
            layers.add(int(m.group(1)) + 1)
    return layers


def test_selection_new_page4d_all_on_the_full_network(full_meta):
    new = select_trainable(full_meta, "new")
    assert {"aggregator.mask_bias.lambda_pose", "aggregator.mask_bias.lambda_geo_t", "aggregator.mask_fusion.alpha",
            "aggregator.temporal_pos.0.freq", "aggregator.lambda_kpt", "aggregator.pose_sparse_blocks.22.gate",
            "aggregator.geo_sparse_blocks.23.memory_tokens"} <= set(new)
    assert not _block_layers(new)
    assert not any(n.startswith(("camera_head", "depth_head", "point_head", "aggregator.encoder")) for n in new)
    page4d = select_trainable(full_meta, "page4d")
    assert set(new) <= set(page4d)
    assert _block_layers(page4d) == set(range(11, 21))
    for container in ("time_blocks", "view_blocks", "pose_time_blocks", "geo_view_blocks"):
        assert any(n.startswith(f"aggregator.{container}.") for n in page4d), container
    assert "aggregator.spatial_mask_head.head0.0.weight" in page4d and "aggregator.camera_token" in page4d
    assert not any(n.startswith(("camera_head", "depth_head", "point_head", "aggregator.encoder")) for n in page4d)
    assert len(select_trainable(full_meta, "all")) == len(list(full_meta.parameters()))
    extra = select_trainable(full_meta, "new", ("camera_head.pose_branch.*",))
    branch = {n for n, _ in full_meta.named_parameters() if n.startswith("camera_head.pose_branch.")}
    assert set(extra) - set(new) == branch


def test_groups_lr_and_weight_decay_rules(full_meta):
    apply_selection(full_meta, select_trainable(full_meta, "page4d"))
    groups = {g.name: g for g in build_groups(full_meta, 0.01)}
    assert set(groups) == {"blocks", "blocks_no_decay", "new_no_decay"}  # new tensors never decay
    assert "aggregator.mask_bias.lambda_pose" in groups["new_no_decay"].names
    assert "aggregator.pose_sparse_blocks.22.gate" in groups["new_no_decay"].names
    assert "aggregator.geo_sparse_blocks.23.memory_tokens" in groups["new_no_decay"].names
    assert "aggregator.pose_time_blocks.10.attn.qkv.weight" in groups["blocks"].names
    assert "aggregator.time_blocks.14.attn.qkv.bias" in groups["blocks_no_decay"].names
    assert "aggregator.geo_view_blocks.11.norm1.weight" in groups["blocks_no_decay"].names
    # the transformer block copied into a sparse block trains like a block
    assert "aggregator.pose_sparse_blocks.22.block.attn.qkv.weight" in groups["blocks"].names
    assert groups["blocks_no_decay"].weight_decay == 0 and groups["blocks"].weight_decay == 0.01
    rows = {r["group"]: r for r in selection_table(full_meta, list(groups.values()))}
    assert rows["frozen"]["parameters"] + sum(g.numel for g in groups.values()) == sum(
        p.numel() for p in full_meta.parameters())
    assert rows["blocks"]["bytes"] == 4 * rows["blocks"]["parameters"]


def test_optimizer_has_state_only_for_trained_tensors():
    model = VGGT.from_preset("tiny")
    apply_selection(model, select_trainable(model, "new"))
    optimizer = build_optimizer(build_groups(model, 0.01), lr=1e-5, lr_new=1e-3)
    for p in model.parameters():
        p.grad = torch.ones_like(p) if p.requires_grad else None
    optimizer.step()
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in optimizer.state} == trained
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}


def test_warmup_then_cosine():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_every_trained_tensor_gets_a_gradient_and_frozen_ones_none():
    from page4d_cli.train.losses import compute_losses

    torch.manual_seed(0)
    model = VGGT.from_preset("tiny", enable_sparse_global=True, sparse_global_layers=(3, 4),
                             sparse_strategy="memory_bank", memory_tokens_num=4)
    trained = select_trainable(model, "page4d")
    apply_selection(model, trained)
    item = FakeClipDataset(length=1, frames=2, cameras=2, size=28)[0]
    batch = {k: v[None] for k, v in item.items()}
    # --mask-loss: the mask head's only other path to the objective is lambda * M, zero while lambda = 0
    terms = compute_losses(model(batch["images"]), batch, LossConfig(mask_weight=1.0))
    terms["objective"].backward()
    params = dict(model.named_parameters())
    no_grad = {n for n in trained if params[n].grad is None or not bool(params[n].grad.abs().sum() > 0)}
    # Zero by construction at the neutral start: lambda_kpt scales the external keypoint bias and beta the
    # external mask (neither is given in training); a sparse block's transformer and memory tokens sit
    # behind its gate (= 0), which itself receives a gradient and opens them after the first update.
    behind_gate = {n for n in trained if re.match(r"aggregator\.\w+sparse_blocks\.\d+\.(block\.|memory_tokens)", n)}
    assert behind_gate
    assert no_grad == {"aggregator.lambda_kpt", "aggregator.mask_fusion.beta"} | behind_gate
    for name in ("aggregator.mask_bias.lambda_pose", "aggregator.mask_bias.lambda_geo",
                 "aggregator.mask_bias.lambda_pose_t", "aggregator.mask_bias.lambda_geo_t",
                 "aggregator.temporal_pos.0.freq", "aggregator.pose_sparse_blocks.3.gate",
                 "aggregator.geo_sparse_blocks.2.gate", "aggregator.spatial_mask_head.head0.4.weight",
                 "aggregator.mask_fusion.alpha", "aggregator.pose_time_blocks.2.attn.qkv.weight"):
        assert name in trained and name not in no_grad
    assert all(p.grad is None for n, p in params.items() if n not in set(trained))
