"""DPT head: the memory changes (maps freed early, in-place ReLU / UV adds) leave its outputs bitwise unchanged
and bring its peak to VGGT's or below, measured with a tensor-allocation recorder (no timing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.tensor_memory import LiveTensorBytes, peak_bytes
from benchmarks.vggt_reference_dpt import vggt_dpt_forward
from models.heads.dpt_head import add_uv_embedding
from tests.helpers import perturb_, tiny_model


def out_of_place_forward(head, layers, image_hw, patch_start):
    """The head as it was before the memory changes: every map kept to the end, ReLUs out of place."""
    H, W = image_hw
    rows, cols = H // head.patch_size, W // head.patch_size
    layers = [x[:, :, patch_start:] for x in layers]
    B, S = layers[0].shape[:2]
    s = head.scratch

    def unit(u, x):
        x = torch.relu(x)
        return u.conv2(torch.relu(u.conv1(x))) + x

    def fusion(block, coarse, skip=None, size=None):
        x = coarse if skip is None else coarse + unit(block.resConfUnit1, skip)
        x = unit(block.resConfUnit2, x)
        x = F.interpolate(x, **({"scale_factor": 2} if size is None else {"size": size}), mode="bilinear",
                          align_corners=True)
        return block.out_conv(x)

    features = []
    for level, x in enumerate(layers):
        x = head.norm(x.reshape(B * S, rows * cols, -1)).transpose(1, 2).reshape(B * S, -1, rows, cols)
        features.append(head.resize_layers[level](add_uv_embedding(head.projects[level](x), W / H)))
    l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(f) for i, f in enumerate(features, start=1))
    out = fusion(s.refinenet4, l4, size=l3.shape[2:])
    out = fusion(s.refinenet3, out, l3, size=l2.shape[2:])
    out = fusion(s.refinenet2, out, l2, size=l1.shape[2:])
    out = s.output_conv1(fusion(s.refinenet1, out, l1))
    out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=True)
    out = s.output_conv2(add_uv_embedding(out, W / H)).permute(0, 2, 3, 1)
    values, conf = out[..., :-1], out[..., -1]
    values = torch.exp(values) if head.activation == "exp" else torch.sign(values) * torch.expm1(values.abs())
    return values.reshape(B, S, H, W, -1), (1 + torch.exp(conf)).reshape(B, S, H, W)


def head_inputs(model, S=3, rows=4, cols=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    N = 5 + rows * cols
    return [torch.randn(1, S, N, 2 * model.config.embed_dim, generator=generator) for _ in range(4)]


def test_dpt_heads_are_bitwise_unchanged():
    model = tiny_model()
    perturb_(model, std=0.05)
    layers = head_inputs(model)
    with torch.no_grad():
        for head in (model.depth_head, model.point_head):
            got = head(layers, (56, 84), 5)
            expected = out_of_place_forward(head, layers, (56, 84), 5)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_dpt_head_peak_memory_is_within_vggt_and_below_the_old_head():
    model = tiny_model()
    head = model.depth_head
    layers = head_inputs(model, S=2, rows=8, cols=8)
    ours, _ = peak_bytes(head, layers, (112, 112), 5)
    vggt, _ = peak_bytes(vggt_dpt_forward, head, layers, (112, 112), 5)
    old, _ = peak_bytes(out_of_place_forward, head, layers, (112, 112), 5)
    assert ours <= 1.1 * vggt, (ours, vggt)
    assert ours < 0.8 * old, (ours, old)  # the recorder does see the maps the old head kept alive


def test_recorder_counts_live_tensors_only():
    with LiveTensorBytes() as recorder:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 live
        del a
        c = b + 1  # 8000 again: a was freed
        c.relu_()  # in place: no allocation
        view = c[:10]  # a view: no allocation
    assert recorder.peak == 8000
    assert recorder.current == 8000 and view.numel() == 10
