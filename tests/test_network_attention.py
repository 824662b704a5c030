"""Attention mechanics: the low-rank biased attention, the T = 1 reduction, mask biases and streams."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models.aggregator import LayerInputs
from models.layers.attention import LowRankBias, biased_attention
from models.layers.rope import patch_positions
from models.token_layout import to_time_sequences, to_view_sequences
from tests.helpers import perturb_, random_images, tiny_model
from tests.probes import dense, probing


def naive_attention(q, k, v, scale, bias_dense):
    logits = scale * q @ k.transpose(-1, -2) + bias_dense
    return torch.softmax(logits, dim=-1) @ v


def test_biased_attention_matches_naive_float64_reference():
    g = torch.Generator().manual_seed(0)
    B, H, L, D, R = 2, 3, 50, 16, 4
    q, k, v = (torch.randn(B, H, L, D, generator=g, dtype=torch.float64) for _ in range(3))
    bias = LowRankBias(torch.randn(B, H, L, R, generator=g, dtype=torch.float64),
                       torch.randn(1, 1, L, R, generator=g, dtype=torch.float64))
    scale = D**-0.5
    expected = naive_attention(q, k, v, scale, dense(bias))
    got = biased_attention(q, k, v, scale, bias)
    assert (got - expected).abs().max() < 1e-10
    # And without a bias it is plain attention.
    assert (biased_attention(q, k, v, scale) - naive_attention(q, k, v, scale, 0.0)).abs().max() < 1e-10


class StorageRecorder(TorchDispatchMode):
    """Records (shape, bytes of storage) of every tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.outputs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in result if isinstance(result, (tuple, list)) else [result]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.outputs.append((tuple(t.shape), t.untyped_storage().nbytes(), t.element_size()))
        return result


def allocated_square(outputs, length):
    """Outputs that really hold (not just view) a [..., length, length] matrix."""
    return [o for o in outputs if len(o[0]) >= 2 and o[0][-1] == o[0][-2] == length and o[1] >= length * length * o[2]]


def test_biased_attention_never_allocates_an_L_by_L_matrix():
    L = 384
    q, k, v = (torch.randn(1, 2, L, 16) for _ in range(3))
    bias = LowRankBias(torch.randn(1, 1, L, 1), torch.randn(1, 1, L, 1))
    with StorageRecorder() as rec:
        biased_attention(q, k, v, 0.25, bias)
    assert rec.outputs, "the recorder saw no ops"
    assert max(nbytes for _, nbytes, _ in rec.outputs) < L * L * 4 / 2
    # The recorder does catch a dense bias (the check can fail).
    with StorageRecorder() as rec:
        naive_attention(q, k, v, 0.25, dense(bias))
    assert allocated_square(rec.outputs, L)


def test_network_with_active_mask_biases_allocates_no_square_attention_matrix():
    model = tiny_model(enable_dual_stream=False)
    set_lambdas(model, 1.0, 1.0, 1.0, 1.0)
    T, V, H, W = 3, 2, 70, 98
    N = 5 + 35
    with torch.no_grad(), StorageRecorder() as rec:
        model.aggregator(random_images(1, T, V, H, W), torch.rand(1, T, V, 35))
    for length in (T * N, V * N, N):
        assert not allocated_square(rec.outputs, length), length


def sync_streams(model):
    """Give the geometry stream the pose stream's mid-layer weights (as the loader does)."""
    agg = model.aggregator
    agg.geo_time_blocks.load_state_dict(agg.pose_time_blocks.state_dict())
    agg.geo_view_blocks.load_state_dict(agg.pose_view_blocks.state_dict())


def set_lambdas(model, pose, geo, pose_t, geo_t):
    bias = model.aggregator.mask_bias
    with torch.no_grad():
        for name, value in zip(bias.NAMES, (pose, geo, pose_t, geo_t)):
            getattr(bias, name).fill_(value)


def test_time_sa_with_one_instant_is_attention_within_each_image():
    model = tiny_model()
    perturb_(model, std=0.05)
    agg = model.aggregator
    V, rows, cols = 3, 5, 7
    with torch.no_grad():
        tokens = agg.encode(random_images(1, 1, V, rows * 14, cols * 14))
        positions = patch_positions(1, rows, cols, 5)
        time_index = torch.zeros(tokens.shape[3], dtype=torch.long)
        state = LayerInputs(agg.neutral_plan(), positions, positions.repeat(1, V, 1), time_index)
        for k in range(model.config.depth):
            got = agg._time_sa(k, "pose" if k in agg.mid else "shared", tokens, state)
            block = agg.blocks_of("time", k, "pose" if k in agg.mid else "shared")
            for v in range(V):
                expected = block(tokens[:, 0, v], positions)
                assert torch.allclose(got[:, 0, v], expected, atol=1e-6), (k, v)


@pytest.mark.slow
def test_lambda_zero_means_the_mask_changes_nothing():
    model = tiny_model()
    perturb_(model, std=0.05)
    images = random_images(1, 2, 2, 42, 56, seed=4)
    ext = (torch.rand(1, 2, 2, 42, 56) > 0.5).float()
    with torch.no_grad():
        plain = model(images)
        masked = model(images, ext_mask=ext)
    assert not torch.allclose(plain["mask"], masked["mask"])  # the mask itself did change
    for key in ("pose_enc", "depth", "world_points", "depth_conf"):
        assert (plain[key] - masked[key]).abs().max() < 1e-6, key


def attention_mass_on(mask_keys):
    """A probe recording, per call, the attention mass that queries put on ``mask_keys`` (bool [L])."""
    masses = []

    def probe(q, k, bias):
        logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        if bias is not None:
            logits = logits + dense(bias)
        weights = torch.softmax(logits.double(), dim=-1)
        masses.append(float(weights[..., mask_keys].sum(-1).mean().detach()))

    return probe, masses


@pytest.mark.parametrize("kind", ["view", "time"])
@pytest.mark.slow
def test_nonzero_lambda_suppresses_masked_keys_in_pose_and_amplifies_in_geometry(kind):
    T, V, rows, cols = (1, 2, 5, 7) if kind == "view" else (2, 1, 5, 7)
    model = tiny_model(enable_dual_stream=True)
    perturb_(model, std=0.05)
    sync_streams(model)
    with torch.no_grad():
        model.aggregator.mask_fusion.alpha.zero_()  # M = sigmoid(M_ext): 0.5 static, 0.73 dynamic
    images = random_images(1, T, V, rows * 14, cols * 14, seed=5)
    ext = torch.zeros(1, T, V, rows, cols)
    ext[..., :, : cols // 2] = 1.0  # left part dynamic
    dynamic_tokens = torch.cat((torch.zeros(5, dtype=torch.bool), ext[0, 0, 0].flatten().bool()))
    mask_keys = dynamic_tokens.repeat(V if kind == "view" else T)
    first_mid = model.aggregator.mid[0]

    def run(lam):
        set_lambdas(model, lam, lam, lam, lam)
        masses = {}
        for stream in ("pose", "geo"):
            probe, record = attention_mass_on(mask_keys)
            block = model.aggregator.blocks_of(kind, first_mid, stream)
            # Grad mode on: nothing is skipped (at lambda 0 without autograd the identical geometry stream
            # would not run at all - tests/test_neutral_skips.py), so both streams' attention is probed.
            with probing(block.attn, probe):
                model(images, ext_mask=ext)
            masses[stream] = record[0]
        return masses

    neutral, active = run(0.0), run(2.0)
    assert neutral["pose"] == pytest.approx(neutral["geo"], abs=1e-9)  # the streams start identical
    assert active["pose"] < neutral["pose"] - 1e-3
    assert active["geo"] > neutral["geo"] + 1e-3


def test_lambdas_are_clamped():
    model = tiny_model(enable_dual_stream=False)
    set_lambdas(model, 10.0, -9.0, 4.5, -0.5)
    assert model.aggregator.mask_bias.values() == {
        "lambda_pose": 4.0, "lambda_geo": -4.0, "lambda_pose_t": 4.0, "lambda_geo_t": -0.5}
    key_mask = torch.ones(1, 2 * 40)
    bias = model.aggregator.mask_bias.bias(key_mask, "shared", "view", 5, 40)
    matrix = dense(bias)[0, 0]
    # Single stream: camera/register query rows get -lambda_pose, patch rows +lambda_geo (clamped).
    assert torch.allclose(matrix[:5], torch.full_like(matrix[:5], -4.0))
    assert torch.allclose(matrix[5:40], torch.full_like(matrix[5:40], -4.0))  # +lambda_geo = -4
    assert torch.allclose(matrix[40:45], torch.full_like(matrix[40:45], -4.0))
    with torch.no_grad():
        model(random_images(1, 1, 2, 28, 28))  # forward runs with clamped values
    out_lambdas = model(random_images(1, 1, 1, 28, 28))["lambdas"]
    assert out_lambdas["lambda_pose"] == 4.0


def test_single_stream_bias_depends_on_query_role():
    model = tiny_model(enable_dual_stream=False)
    set_lambdas(model, 1.5, 0.5, 0.0, 0.0)
    key_mask = torch.rand(1, 80)
    matrix = dense(model.aggregator.mask_bias.bias(key_mask, "shared", "view", 5, 40))[0, 0]
    expected_rows = torch.tensor(([-1.5] * 5 + [0.5] * 35) * 2)
    assert torch.allclose(matrix, expected_rows[:, None] * key_mask[0][None, :])


@pytest.mark.slow
def test_permuting_cameras_permutes_outputs():
    model = tiny_model()
    perturb_(model, std=0.05)
    set_lambdas(model, 1.0, 1.0, 1.0, 1.0)
    with torch.no_grad():
        for module in model.aggregator.temporal_pos.values():
            module.freq.fill_(0.5)
    images = random_images(1, 2, 4, 42, 56, seed=6)
    ext = (torch.rand(1, 2, 4, 42, 56) > 0.7).float()
    order = [0, 3, 1, 2]  # camera 0 (the reference) stays first
    with torch.no_grad():
        base = model(images, ext_mask=ext)
        permuted = model(images[:, :, order], ext_mask=ext[:, :, order])
    for key in ("depth", "world_points", "extrinsic", "intrinsic", "mask", "depth_conf"):
        assert torch.allclose(base[key][:, :, order], permuted[key], atol=1e-4), key


@pytest.mark.parametrize("kind, parameter", [("rope", "freq"), ("alibi", "slope")])
@pytest.mark.slow
def test_temporal_encoding_is_neutral_at_init_and_acts_after_training(kind, parameter):
    with_encoding = tiny_model(temporal_encoding=kind)
    perturb_(with_encoding, std=0.05)
    without = tiny_model(temporal_encoding="none")
    without.load_state_dict(with_encoding.state_dict(), strict=False)
    images = random_images(1, 3, 2, 42, 56, seed=7)
    with torch.no_grad():
        for module in with_encoding.aggregator.temporal_pos.values():
            getattr(module, parameter).zero_()
        a, b = with_encoding(images), without(images)
        assert (a["depth"] - b["depth"]).abs().max() < 1e-6
        for module in with_encoding.aggregator.temporal_pos.values():
            getattr(module, parameter).fill_(1.0)
        moved = with_encoding(images)
        assert (moved["depth"] - b["depth"]).abs().max() > 1e-4
        # One instant has no time differences: the encoding cannot act.
        single = images[:, :1]
        assert (with_encoding(single)["depth"] - without(single)["depth"]).abs().max() < 1e-6


def test_temporal_rope_is_relative():
    from models.layers.rope import temporal_rotation

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 1, 16, generator=g), torch.randn(1, 2, 1, 16, generator=g)
    freq = torch.tensor([0.3, 1.1])
    def score(tq, tk):
        return (temporal_rotation(q, torch.tensor([tq]), freq) * temporal_rotation(k, torch.tensor([tk]), freq)).sum(-1)
    assert torch.allclose(score(2, 5), score(7, 10), atol=1e-5)
    assert not torch.allclose(score(2, 5), score(2, 6), atol=1e-3)


@pytest.mark.parametrize("layout", ["official", "ckpt150"])
def test_spatial_mask_head_ranges(layout):
    from models.dynamic_mask import SpatialMaskHead

    torch.manual_seed(0)
    head = SpatialMaskHead(64, layout)
    perturb_(head, std=0.2)
    mask = head(torch.randn(3, 35, 64) * 3, 5, 7)
    assert mask.shape == (3, 35)
    assert (mask > -0.5).all() and (mask < 0.5).all()
    assert mask.std() > 1e-3  # not a constant
    # Extreme inputs saturate the sigmoid at the (closed) ends of the range, never beyond.
    perturb_(head, std=2.0)
    saturated = head(torch.randn(3, 35, 64) * 100, 5, 7)
    assert (saturated >= -0.5).all() and (saturated <= 0.5).all()
    if layout == "ckpt150":
        assert head.trained_alpha == pytest.approx(math.log1p(math.exp(float(head.alpha_logit.detach()))))


def test_dual_stream_at_lambda_zero_equals_single_stream():
    single = tiny_model(enable_dual_stream=False)
    perturb_(single, std=0.05)
    dual = tiny_model(enable_dual_stream=True)
    state = dict(single.state_dict())
    for k in dual.aggregator.mid:
        for kind in ("time", "view"):
            for stream in ("pose", "geo"):
                for name, value in single.aggregator.blocks_of(kind, k, "shared").state_dict().items():
                    state[f"aggregator.{stream}_{kind}_blocks.{k}.{name}"] = value
    state = {name: value for name, value in state.items() if name in dual.state_dict()}
    dual.load_state_dict(state, strict=True)
    images = random_images(1, 2, 2, 42, 56, seed=8)
    with torch.no_grad():
        a, b = single(images), dual(images)
    for key in ("depth", "pose_enc", "world_points"):
        assert (a[key] - b[key]).abs().max() < 1e-5, key


def test_layout_round_trips():
    from models.token_layout import from_time_sequences, from_view_sequences

    x = torch.randn(2, 3, 4, 5, 6)
    assert torch.equal(from_time_sequences(to_time_sequences(x), 2, 3, 4), x)
    assert torch.equal(from_view_sequences(to_view_sequences(x), 2, 3, 4), x)
    # Time sequences hold one camera across time.
    assert torch.equal(to_time_sequences(x)[1 * 4 + 2, 5:10], x[1, 1, 2])
