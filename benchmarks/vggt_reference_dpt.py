"""VGGT's DPT head forward, written for comparison: the same modules (our ``DPTHead``), VGGT's op order.

Memory behaviour of facebookresearch/vggt ``vggt/heads/dpt_head.py`` (``DPTHead._forward_impl``,
``scratch_forward``, ``ResidualConvUnit`` / ``FeatureFusionBlock`` with ``nn.ReLU(inplace=True)``,
``activate_head``), reproduced step by step:

- per level: norm, 1x1 projection, UV embedding (out of place), resize; the four resized maps stay in a
  list that lives until the fusion returns;
- layer*_rn convs; refinenets 4 -> 1, each ``ReLU(inplace=True)`` rectifying its input in place;
- output_conv1, bilinear resize to the image, UV embedding (out of place, the old map dropped on
  rebinding), output_conv2 (Sequential: conv, in-place ReLU, conv) while the caller still holds its input;
- permute, split, activation (exp / inverse-log), conf = 1 + exp.

Used by ``benchmarks/bench_neutral.py`` and ``tests/test_dpt_memory.py`` to compare peak memory.
The values equal ``DPTHead``'s up to float rounding (same weights, same functions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.heads.dpt_head import DPTHead, add_uv_embedding


def _residual_unit(unit, x):
    out = torch.relu_(x)  # ReLU(inplace=True) on the input: x itself becomes relu(x)
    out = unit.conv1(out)
    out = torch.relu_(out)
    out = unit.conv2(out)
    return out + x


def _fusion(block, *xs, size=None):
    output = xs[0]
    if len(xs) == 2:
        res = _residual_unit(block.resConfUnit1, xs[1])
        output = output + res
    output = _residual_unit(block.resConfUnit2, output)
    if size is None:
        output = F.interpolate(output, scale_factor=2, mode="bilinear", align_corners=True)
    else:
        output = F.interpolate(output, size=size, mode="bilinear", align_corners=True)
    return block.out_conv(output)


def _scratch_forward(s, features):
    layer_1, layer_2, layer_3, layer_4 = features
    layer_1_rn = s.layer1_rn(layer_1)
    layer_2_rn = s.layer2_rn(layer_2)
    layer_3_rn = s.layer3_rn(layer_3)
    layer_4_rn = s.layer4_rn(layer_4)
    out = _fusion(s.refinenet4, layer_4_rn, size=layer_3_rn.shape[2:])
    del layer_4_rn, layer_4
    out = _fusion(s.refinenet3, out, layer_3_rn, size=layer_2_rn.shape[2:])
    del layer_3_rn, layer_3
    out = _fusion(s.refinenet2, out, layer_2_rn, size=layer_1_rn.shape[2:])
    del layer_2_rn, layer_2
    out = _fusion(s.refinenet1, out, layer_1_rn)
    del layer_1_rn, layer_1
    return s.output_conv1(out)


def _output_conv2(sequential, x):
    conv_a, _, conv_b = sequential
    return conv_b(torch.relu_(conv_a(x)))  # nn.Sequential(conv, ReLU(inplace=True), conv)


def _forward_impl(head: DPTHead, layers, image_hw, start, end):
    H, W = image_hw
    rows, cols = H // head.patch_size, W // head.patch_size
    out = []
    for level, tokens in enumerate(layers):
        x = tokens[:, start:end]
        B, S = x.shape[:2]
        x = x.reshape(B * S, -1, x.shape[-1])
        x = head.norm(x)
        x = x.permute(0, 2, 1).reshape((x.shape[0], x.shape[-1], rows, cols))
        x = head.projects[level](x)
        x = add_uv_embedding(x, W / H)
        x = head.resize_layers[level](x)
        out.append(x)
    out = _scratch_forward(head.scratch, out)
    out = F.interpolate(out, (rows * head.patch_size, cols * head.patch_size), mode="bilinear", align_corners=True)
    out = add_uv_embedding(out, W / H)
    out = _output_conv2(head.scratch.output_conv2, out)
    fmap = out.permute(0, 2, 3, 1)
    xyz, conf = fmap[:, :, :, :-1], fmap[:, :, :, -1]
    preds = torch.exp(xyz) if head.activation == "exp" else torch.sign(xyz) * torch.expm1(torch.abs(xyz))
    conf = 1 + conf.exp()
    return preds.view(B, S, *preds.shape[1:]), conf.view(B, S, *conf.shape[1:])


def vggt_dpt_forward(head: DPTHead, layers: list[torch.Tensor], image_hw: tuple[int, int], patch_start: int):
    """layers: 4 x [B, S, N, 2C] -> (values [B, S, H, W, C_out-1], confidence [B, S, H, W]), VGGT's way."""
    layers = [x[:, :, patch_start:] for x in layers]
    S = layers[0].shape[1]
    preds, confs = [], []
    for start in range(0, S, head.frames_chunk):
        p, c = _forward_impl(head, layers, image_hw, start, min(start + head.frames_chunk, S))
        preds.append(p)
        confs.append(c)
    return torch.cat(preds, dim=1), torch.cat(confs, dim=1)
