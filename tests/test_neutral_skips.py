"""Provably neutral work is skipped (models/neutral.py) and the results stay bitwise identical.

Each skip is compared with the full computation (the plan forced to "skip nothing"); after one
parameter moves, the skip is no longer taken and the result still equals the full computation.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

import models.layers.attention as attention_module
import models.temporal_encoding as temporal_module
from models.layers.attention import LowRankBias, flex_available, flex_biased_attention, padded_biased_attention
from models.neutral import NeutralPlan, single_stream_state, skips_disabled
from tests.helpers import perturb_, random_images, tiny_model

KEYS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")


def loaded_like(seed=0, **overrides):
    """A tiny model with trained-looking weights and the loader's neutral parameters: geometry blocks
    copied from the pose blocks, lambdas / temporal frequencies 0."""
    model = tiny_model(seed, **overrides)
    perturb_(model, std=0.05)
    agg = model.aggregator
    if agg.dual:
        agg.geo_time_blocks.load_state_dict(agg.pose_time_blocks.state_dict())
        agg.geo_view_blocks.load_state_dict(agg.pose_view_blocks.state_dict())
    return model


def run(model, images, **kwargs):
    with torch.no_grad():
        return model(images, **kwargs)


def assert_bitwise(a, b):
    for key in KEYS:
        assert torch.equal(a[key], b[key]), key


@contextlib.contextmanager
def counting(module, name):
    """Count the calls of ``module.name`` (a function looked up at call time)."""
    original = getattr(module, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    setattr(module, name, wrapper)
    try:
        yield calls
    finally:
        setattr(module, name, original)


def geo_block_calls(model):
    calls = []
    handles = [block.register_forward_hook(lambda *_: calls.append(1))
               for container in (model.aggregator.geo_time_blocks, model.aggregator.geo_view_blocks)
               for block in container.values()]
    return calls, handles


@pytest.mark.slow
def test_identical_streams_run_once_bitwise_equal_to_both_and_to_single_stream():
    model = loaded_like()
    images, ext = random_images(1, 3, 2, 42, 56, seed=3), torch.rand(1, 3, 2, 3, 4)
    calls, handles = geo_block_calls(model)
    skipped = run(model, images, ext_mask=ext)
    assert model.aggregator.last_plan.streams_identical and not calls  # the geometry blocks never ran
    assert model.aggregator.neutral_report()["streams identical"] == "yes"  # what run.json records
    with skips_disabled(model):
        full = run(model, images, ext_mask=ext)
    assert calls  # ... and they do run in the full computation
    for handle in handles:
        handle.remove()
    assert_bitwise(skipped, full)
    # Pure single stream with the same weights: the same numbers, bit for bit.
    single = tiny_model(enable_dual_stream=False)
    single.load_state_dict(single_stream_state(model, single.state_dict()), strict=True)
    assert_bitwise(skipped, run(single, images, ext_mask=ext))


@pytest.mark.parametrize("change", ["geo block", "lambda", "eps"])
@pytest.mark.slow
def test_streams_differing_in_anything_both_run_and_match_the_full_computation(change):
    model = loaded_like()
    agg = model.aggregator
    with torch.no_grad():
        if change == "geo block":
            agg.geo_view_blocks[agg.mid[-1]].mlp.fc2.bias.add_(0.01)
        elif change == "lambda":
            agg.mask_bias.lambda_geo.fill_(0.5)
    if change == "eps":
        agg.geo_time_blocks[agg.mid[0]].set_eps(1e-3, 1e-5)
    images, ext = random_images(1, 2, 2, 42, 56, seed=4), torch.rand(1, 2, 2, 3, 4)
    calls, handles = geo_block_calls(model)
    skipped = run(model, images, ext_mask=ext)
    assert not agg.last_plan.streams_identical and calls
    assert agg.neutral_report()["streams identical"] == "no"
    with skips_disabled(model):
        full = run(model, images, ext_mask=ext)
    for handle in handles:
        handle.remove()
    assert_bitwise(skipped, full)


def test_zero_lambda_biases_add_no_channel_and_bitwise_equal_results():
    model = loaded_like(enable_dual_stream=False)
    images, ext = random_images(1, 2, 2, 42, 56, seed=5), torch.rand(1, 2, 2, 3, 4)
    with counting(attention_module, "padded_biased_attention") as padded:
        skipped = run(model, images, ext_mask=ext)
    assert not padded and model.aggregator.last_plan.mask_bias_is_zero("shared", "view")
    with skips_disabled(model), counting(attention_module, "padded_biased_attention") as padded:
        full = run(model, images, ext_mask=ext)
    assert padded  # the full computation carries zero channels
    assert_bitwise(skipped, full)
    # One lambda moves: its bias is applied again, equal to the full computation, and it changes the output.
    with torch.no_grad():
        model.aggregator.mask_bias.lambda_geo_t.fill_(0.7)
    with counting(attention_module, "padded_biased_attention") as padded:
        moved = run(model, images, ext_mask=ext)
    assert padded and not model.aggregator.last_plan.mask_bias_is_zero("shared", "time")
    assert model.aggregator.last_plan.mask_bias_is_zero("shared", "view")
    with skips_disabled(model):
        assert_bitwise(moved, run(model, images, ext_mask=ext))
    assert not torch.equal(moved["depth"], skipped["depth"])


@pytest.mark.parametrize("kind, parameter, function",
                         [("rope", "freq", "temporal_rotation"), ("alibi", "slope", "LowRankBias")])
@pytest.mark.slow
def test_identity_temporal_encodings_are_not_applied(kind, parameter, function):
    model = loaded_like(temporal_encoding=kind)
    agg = model.aggregator
    images = random_images(1, 3, 2, 42, 56, seed=6)
    with counting(temporal_module, function) as applied:
        skipped = run(model, images)
    assert not applied and agg.last_plan.identity_temporal == frozenset(range(model.config.depth))
    with skips_disabled(model), counting(temporal_module, function) as applied:
        full = run(model, images)
    assert applied
    assert_bitwise(skipped, full)
    with torch.no_grad():
        getattr(agg.temporal_pos[1], parameter)[0] = 0.3  # one head of one layer moves
    moved = run(model, images)
    assert agg.last_plan.identity_temporal == frozenset(range(model.config.depth)) - {1}
    with skips_disabled(model):
        assert_bitwise(moved, run(model, images))
    assert not torch.equal(moved["depth"], skipped["depth"])


@pytest.mark.slow
def test_nothing_is_skipped_where_autograd_needs_the_parameter():
    model = loaded_like()
    images, ext = random_images(1, 2, 2, 42, 56, seed=7), torch.rand(1, 2, 2, 3, 4)
    out = model(images, ext_mask=ext)  # grad mode on, parameters require grad
    plan = model.aggregator.last_plan
    assert plan == NeutralPlan()
    (out["depth"].mean() + out["pose_enc"].mean()).backward()
    bias = model.aggregator.mask_bias
    for name in bias.NAMES:  # at 0 the lambdas still receive a gradient: training can move them
        assert getattr(bias, name).grad is not None and getattr(bias, name).grad.abs() > 0, name
    assert model.aggregator.temporal_pos[0].freq.grad is not None
    assert model.aggregator.geo_view_blocks[model.aggregator.mid[0]].attn.qkv.weight.grad.abs().sum() > 0


def test_the_decision_is_cached_and_refreshed_when_a_parameter_changes():
    model = loaded_like()
    agg = model.aggregator
    images = random_images(1, 1, 2, 28, 28)
    run(model, images)
    run(model, images)
    assert agg._neutral.recomputed == 1  # one comparison for two forwards
    with torch.no_grad():
        agg.mask_bias.lambda_pose.fill_(0.25)  # in place: the version counter moves
    run(model, images)
    assert agg._neutral.recomputed == 2 and "lambda_pose" not in agg.last_plan.zero_lambdas
    state = model.state_dict()
    state["aggregator.mask_bias.lambda_pose"] = torch.tensor(0.0)
    model.load_state_dict(state)
    run(model, images)
    assert agg._neutral.recomputed == 3 and agg.last_plan.streams_identical
    with skips_disabled(model):  # the full computation, without comparing tensors again ...
        run(model, images)
    assert agg.last_plan == NeutralPlan() and agg._neutral.recomputed == 3
    run(model, images)  # ... and the cached decision afterwards
    assert agg._neutral.recomputed == 3 and agg.last_plan.streams_identical


def test_rope_tables_are_cached_per_positions_dtype_and_device():
    model = loaded_like()
    rope = model.aggregator.rope
    images = random_images(1, 2, 2, 28, 42)
    run(model, images)
    entries = dict(rope._tables)
    first = run(model, images)
    assert dict(rope._tables).keys() == entries.keys()  # the second forward reused every table
    positions = model.aggregator._positions((2, 3), 2, 2, torch.device("cpu"))[1]
    assert rope.tables(positions, 16, torch.float32, "cpu") is rope.tables(positions, 16, torch.float32, "cpu")
    assert rope.tables(positions, 16, torch.float64, "cpu")[0].dtype == torch.float64
    rope._tables.clear()  # recomputed tables give the same numbers
    assert_bitwise(first, run(model, images))


@pytest.mark.skipif(not flex_available(), reason="this torch has no FlexAttention")
@pytest.mark.parametrize("rank", [1, 3])
def test_flex_attention_matches_the_padded_channels(rank):
    generator = torch.Generator().manual_seed(rank)
    B, H, L, D = 2, 3, 40, 16
    q, k, v = (torch.randn(B, H, L, D, generator=generator) for _ in range(3))
    bias = LowRankBias(torch.randn(1, H, L, rank, generator=generator), torch.rand(B, 1, L, rank, generator=generator))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention on CPU warns that it is unfused
        flex = flex_biased_attention(q, k, v, D**-0.5, bias, compiled=False)
    padded = padded_biased_attention(q, k, v, D**-0.5, bias)
    assert (flex - padded).abs().max() < 1e-5
    assert (flex - padded_biased_attention(q, k, v, D**-0.5, LowRankBias(bias.query, -bias.key))).abs().max() > 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flex_attention_on_cuda_matches_the_padded_channels():
    q, k, v = (torch.randn(1, 4, 300, 64, device="cuda") for _ in range(3))
    bias = LowRankBias(torch.full((1, 1, 1, 1), 0.5, device="cuda"), torch.rand(1, 1, 300, 1, device="cuda"))
    got = attention_module.biased_attention(q, k, v, 0.125, bias)
    assert not attention_module._flex_broken
    assert (got - padded_biased_attention(q, k, v, 0.125, bias)).abs().max() < 1e-4


def test_epipolar_prior_makes_no_host_synchronisation_per_instant_and_camera():
    from torch.utils._python_dispatch import TorchDispatchMode

    from models.epipolar import EpipolarPrior, epipolar_view_block

    class SyncCounter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.syncs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default):
                self.syncs += 1
            return func(*args, **(kwargs or {}))

    model = loaded_like()
    B, T, V, rows, cols = 1, 3, 3, 2, 3
    angles = torch.linspace(0, 0.6, V)
    extrinsics = torch.eye(4).repeat(B, T, V, 1, 1)
    extrinsics[..., 0, 3] = torch.arange(V).float()
    extrinsics[..., 0, 0] = extrinsics[..., 2, 2] = torch.cos(angles)
    extrinsics[..., 0, 2], extrinsics[..., 2, 0] = torch.sin(angles), -torch.sin(angles)
    intrinsics = torch.tensor([[20.0, 0, 21], [0, 20.0, 14], [0, 0, 1]]).repeat(B, T, V, 1, 1)
    prior = EpipolarPrior(intrinsics, extrinsics, (rows, cols), 14, 5, 2.0, 4.0)
    block = model.aggregator.view_blocks[0]
    seq = torch.randn(B * T, V * (5 + rows * cols), model.config.embed_dim)
    positions = model.aggregator._positions((rows, cols), T, V, torch.device("cpu"))[2]
    with torch.no_grad(), SyncCounter() as counter:
        epipolar_view_block(block, seq, positions, None, prior)
    assert counter.syncs == 0
    with SyncCounter() as counter:
        bool(prior.valid[0, 0, 0, 1])  # the counter sees a synchronisation (the check can fail)
    assert counter.syncs >= 1
