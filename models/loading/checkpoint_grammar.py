"""The tensor-name grammar of every checkpoint layout page4d meets, as data.

Each layout is a tuple of :class:`T` (one tensor: name and shape) and :class:`G` (a group of rules
under a name prefix, optionally repeated ``{i}`` = 0..n-1, optionally skipped by a flag, optionally
binding local sizes such as the block width ``W``). Shapes are ints or small arithmetic expressions
over named sizes (``"3*W"``, ``"W//NH"``). :func:`expand` is the one function that turns a layout and
a set of sizes into ``(name, shape)`` pairs, in the order the real files store them.

At the full sizes these rules reproduce the real key lists (``tests/data/keys``) name for name and shape for
shape (tested); at small sizes they reproduce the fixtures' ``weights.safetensors``.

``pi3x`` is approximate: its extra module names come from the public Pi3X source (``pi3x.py``), with
the block internals of ``metric_decoder`` and ``pose_inject_blk`` left out. It exists so that
layout detection can be tested, not to load Pi3X.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Iterator, Mapping, Union

Size = Union[int, str]


@dataclass(frozen=True)
class T:
    """One tensor: ``name`` (relative to the enclosing groups' prefixes) and its ``shape``."""

    name: str
    shape: tuple[Size, ...]


@dataclass(frozen=True)
class G:
    """Rules under ``prefix``; ``repeat`` copies (``{i}`` in the prefix), ``when`` a flag, ``bind`` sizes."""

    prefix: str
    items: tuple
    repeat: Size | None = None
    when: str | None = None
    bind: tuple[tuple[str, Size], ...] = ()


def lin(name: str, out: Size, inp: Size) -> tuple[T, T]:
    return T(f"{name}.weight", (out, inp)), T(f"{name}.bias", (out,))


def tconv(name: str, inp: Size, out: Size, k: int) -> tuple[T, T]:
    """A transposed convolution: its weight is stored (in, out, k, k)."""
    return T(f"{name}.weight", (inp, out, k, k)), T(f"{name}.bias", (out,))


def ln(name: str, dim: Size) -> tuple[T, T]:
    return T(f"{name}.weight", (dim,)), T(f"{name}.bias", (dim,))


def conv(name: str, out: Size, inp: Size, k: int, bias: bool = True) -> tuple[T, ...]:
    weight = T(f"{name}.weight", (out, inp, k, k))
    return (weight, T(f"{name}.bias", (out,))) if bias else (weight,)


# ---- transformer blocks: W = width, HW = q/k-norm (head) width, HID = MLP hidden ----------------
_QKV, _PROJ = lin("attn.qkv", "3*W", "W"), lin("attn.proj", "W", "W")
_QK = (*ln("attn.q_norm", "HW"), *ln("attn.k_norm", "HW"))
_MLP = (*lin("mlp.fc1", "HID", "W"), *lin("mlp.fc2", "W", "HID"))
_LS1, _LS2 = T("ls1.gamma", ("W",)), T("ls2.gamma", ("W",))
ENCODER_BLOCK = (*ln("norm1", "W"), *_QKV, *_PROJ, _LS1, *ln("norm2", "W"), *_MLP, _LS2)
VGGT_BLOCK = (*ln("norm1", "W"), *_QKV, *_QK, *_PROJ, _LS1, *ln("norm2", "W"), *_MLP, _LS2)
PI3_BLOCK = (*ln("norm1", "W"), *_QKV, *_PROJ, *_QK, _LS1, *ln("norm2", "W"), *_MLP, _LS2)
PLAIN_BLOCK = (*ln("norm1", "W"), *_QKV, *_PROJ, *ln("norm2", "W"), *_MLP)
_MAIN = (("W", "D"), ("HW", "D//NH"), ("HID", "MLP"))

# ---- DINOv2 encoder (IN_CH input channels; MASK_TOKEN only in the VGGT copy) --------------------
ENCODER = (
    T("cls_token", (1, 1, "D")),
    T("pos_embed", (1, "POS*POS+1", "D")),
    T("register_tokens", (1, "ENC_REG", "D")),
    G("", (T("mask_token", (1, "D")),), when="MASK_TOKEN"),
    *conv("patch_embed.proj", "D", "IN_CH", "PATCH"),
    G("blocks.{i}.", ENCODER_BLOCK, repeat="ENC_DEPTH", bind=_MAIN),
    *ln("norm", "D"),
)

# ---- PAGE-4D spatial mask heads ---------------------------------------------------------------
MASK_OFFICIAL = (*conv("head0.0", "D", 1, 3), *conv("head0.2", "MASK_HID", "D", 1), *conv("head0.4", 1, "MASK_HID", 1))
MASK_CKPT150 = (
    T("alpha_logit", ()), T("tau_logit", ()),
    *conv("head0.0", "D", 1, 3), *conv("head0.2", "D", 1, 3), *conv("head0.4", 1, "D", 1),
)

# ---- VGGT heads (C = camera dim = 2*D; DPT: F features, O1..O4 projections, OUT channels) -------
CAMERA_HEAD = (
    T("empty_pose_tokens", (1, 1, 9)),
    G("trunk.{i}.", ENCODER_BLOCK, repeat="CAM_DEPTH", bind=(("W", "C"), ("HID", "4*C"))),
    *ln("token_norm", "C"), *ln("trunk_norm", "C"),
    *lin("embed_pose", "C", 9), *lin("poseLN_modulation.1", "3*C", "C"),
    *lin("pose_branch.fc1", "C//2", "C"), *lin("pose_branch.fc2", 9, "C//2"),
)
_RCU = (*conv("conv1", "F", "F", 3), *conv("conv2", "F", "F", 3))
_REFINE = (*conv("out_conv", "F", "F", 1), G("resConfUnit1.", _RCU), G("resConfUnit2.", _RCU))
DPT_HEAD = (
    *ln("norm", "2*D"),
    *(r for k, o in enumerate(("O1", "O2", "O3", "O4")) for r in conv(f"projects.{k}", o, "2*D", 1)),
    *conv("resize_layers.0", "O1", "O1", 4), *conv("resize_layers.1", "O2", "O2", 2),
    *conv("resize_layers.3", "O4", "O4", 3),
    *(r for k, o in enumerate(("O1", "O2", "O3", "O4")) for r in conv(f"scratch.layer{k + 1}_rn", "F", o, 3, False)),
    G("scratch.refinenet1.", _REFINE), G("scratch.refinenet2.", _REFINE), G("scratch.refinenet3.", _REFINE),
    G("scratch.refinenet4.", (*conv("out_conv", "F", "F", 1), G("resConfUnit2.", _RCU))),
    *conv("scratch.output_conv1", "OC1", "F", 3),
    G("scratch.output_conv2.", (*conv("0", "DPT_HID2", "OC1", 3), *conv("2", "OUT", "DPT_HID2", 1)), when="HAS_OUT"),
)
_DPT_OUT = (("F", "DPT_F"), ("OC1", "DPT_F//2"), ("HAS_OUT", 1))

# The tracker's sizes do not scale with the backbone; they are written as the real file has them.
_TRACK_SELF = (*ln("norm1", 384), *ln("norm2", 384), T("attn.in_proj_weight", (1152, 384)),
               T("attn.in_proj_bias", (1152,)), *lin("attn.out_proj", 384, 384),
               *lin("mlp.fc1", 1536, 384), *lin("mlp.fc2", 384, 1536))
_TRACK_CROSS = (*ln("norm1", 384), *ln("norm_context", 384), *ln("norm2", 384),
                T("cross_attn.in_proj_weight", (1152, 384)), T("cross_attn.in_proj_bias", (1152,)),
                *lin("cross_attn.out_proj", 384, 384), *lin("mlp.fc1", 1536, 384), *lin("mlp.fc2", 384, 1536))
TRACKER = (
    T("query_ref_token", (1, 2, 388)), *lin("corr_mlp.fc1", 384, 567), *lin("corr_mlp.fc2", 128, 384),
    G("updateformer.", (
        T("virual_tracks", (1, 64, 1, 384)), *ln("input_norm", 388), *lin("input_transform", 384, 388),
        *ln("output_norm", 384), *lin("flow_head", 130, 384),
        G("time_blocks.{i}.", _TRACK_SELF, repeat=6), G("space_virtual_blocks.{i}.", _TRACK_SELF, repeat=6),
        G("space_point2virtual_blocks.{i}.", _TRACK_CROSS, repeat=6),
        G("space_virtual2point_blocks.{i}.", _TRACK_CROSS, repeat=6),
    )),
    *ln("fmap_norm", 128), *ln("ffeat_norm", 128), *lin("ffeat_updater.0", 128, 128),
    *lin("vis_predictor.0", 1, 128), *lin("conf_predictor.0", 1, 128),
)

VGGT_FAMILY = (
    G("aggregator.", (
        T("camera_token", (1, 2, 1, "D")), T("register_token", (1, 2, "NREG", "D")),
        G("patch_embed.", ENCODER, bind=(("MASK_TOKEN", 1), ("IN_CH", 3))),
        G("frame_blocks.{i}.", VGGT_BLOCK, repeat="DEPTH", bind=_MAIN),
        G("global_blocks.{i}.", VGGT_BLOCK, repeat="DEPTH", bind=_MAIN),
        G("spatial_mask_head.", MASK_OFFICIAL, when="MASK_OFFICIAL"),
        G("spatial_mask_head.", MASK_CKPT150, when="MASK_CKPT150"),
    )),
    G("camera_head.", CAMERA_HEAD),
    G("point_head.", DPT_HEAD, bind=(*_DPT_OUT, ("OUT", 4))),
    G("depth_head.", DPT_HEAD, bind=(*_DPT_OUT, ("OUT", 2))),
    G("track_head.", (
        G("feature_extractor.", DPT_HEAD, bind=(("F", "TRACK_F"), ("OC1", "TRACK_F"), ("HAS_OUT", 0))),
        G("tracker.", TRACKER),
    ), when="TRACK_HEAD"),
)

# ---- Pi3 (HDIM / HDEPTH: its head decoders; OUTD: a head decoder's output width) -----------------
PI3_HEAD_DECODER = (
    *lin("projects", "HDIM", "2*D"),
    G("blocks.{i}.", PLAIN_BLOCK, repeat="HDEPTH", bind=(("W", "HDIM"), ("HID", "4*HDIM"))),
    *lin("linear_out", "OUTD", "HDIM"),
)
_RES = (*lin("res_conv1", 512, 512), *lin("res_conv2", 512, 512), *lin("res_conv3", 512, 512))
PI3_CAMERA_HEAD = (
    G("res_conv.{i}.", _RES, repeat=2), *lin("more_mlps.0", 512, 512), *lin("more_mlps.2", 512, 512),
    *lin("fc_t", 3, 512), *lin("fc_rot", 9, 512),
)
_PI3_TRUNK = (
    G("encoder.", ENCODER, bind=(("MASK_TOKEN", 0), ("IN_CH", 3))),
    G("decoder.{i}.", PI3_BLOCK, repeat="2*DEPTH", bind=_MAIN),
)
_PI3_BUFFERS = (T("image_mean", (1, 3, 1, 1)), T("image_std", (1, 3, 1, 1)))
PI3 = (
    T("register_token", (1, 1, "NREG", "D")), *_PI3_BUFFERS, *_PI3_TRUNK,
    G("", (G("point_decoder.", PI3_HEAD_DECODER, bind=(("OUTD", "HDIM"),)),
           *lin("point_head.proj", "3*PATCH*PATCH", "HDIM")), when="PI3_POINT"),
    G("", (G("conf_decoder.", PI3_HEAD_DECODER, bind=(("OUTD", "HDIM"),)),
           *lin("conf_head.proj", "PATCH*PATCH", "HDIM")), when="PI3_CONF"),
    G("", (G("camera_decoder.", PI3_HEAD_DECODER, bind=(("OUTD", 512),)),
           G("camera_head.", PI3_CAMERA_HEAD)), when="PI3_CAMERA"),
)

# Pi3X's MoGe-style conv head: 3 upsamplers (+2 UV channels in), 2 residual blocks each, outputs.
_GN_RES = (*ln("layers.0", "U"), *conv("layers.2", "2*U", "U", 3), *ln("layers.3", "2*U"),
           *conv("layers.5", "U", "2*U", 3))
_UPSAMPLE = (*tconv("0.0", "UIN+2", "U", 2), *conv("0.1", "U", "U", 3), G("1.", _GN_RES), G("2.", _GN_RES))
_CONV_OUT = (*conv("0", 32, 66, 3), *conv("2", "NOUT", 32, 1))
CONV_HEAD = (
    G("upsample_blocks.0.", _UPSAMPLE, bind=(("UIN", "HDIM"), ("U", 256))),
    G("upsample_blocks.1.", _UPSAMPLE, bind=(("UIN", 256), ("U", 128))),
    G("upsample_blocks.2.", _UPSAMPLE, bind=(("UIN", 128), ("U", 64))),
)
PI3X = (
    *_PI3_TRUNK, T("register_token", (1, 1, "NREG", "D")),
    G("depth_encoder.", ENCODER, bind=(("MASK_TOKEN", 0), ("IN_CH", 2))),
    T("depth_emb", (1, 1, "D")), *conv("ray_embed.proj", "D", 2, "PATCH"),
    G("point_decoder.", PI3_HEAD_DECODER, bind=(("OUTD", "HDIM"),)),
    G("point_head.", (*CONV_HEAD, G("output_block.0.", _CONV_OUT, bind=(("NOUT", 2),)),
                      G("output_block.1.", _CONV_OUT, bind=(("NOUT", 1),)))),
    G("camera_decoder.", PI3_HEAD_DECODER, bind=(("OUTD", 512),)), G("camera_head.", PI3_CAMERA_HEAD),
    T("metric_token", (1, 1, "2*D")),
    *lin("metric_decoder.projects_x", 512, "2*D"), *lin("metric_decoder.projects_y", 512, "2*D"),
    *lin("metric_decoder.linear_out", 512, 512), *lin("metric_head", 1, 512),
    G("conf_decoder.", PI3_HEAD_DECODER, bind=(("OUTD", "HDIM"),)),
    G("conf_head.", (*CONV_HEAD, G("output_block.0.", _CONV_OUT, bind=(("NOUT", 1),)))),
    *_PI3_BUFFERS,
)

# layout name -> (rules, flags that select its variant)
LAYOUT_RULES: dict[str, tuple[tuple, dict[str, int]]] = {
    "pi3": (PI3, {}),
    "pi3x": (PI3X, {}),
    "page4d": (VGGT_FAMILY, {"MASK_OFFICIAL": 1}),
    "page4d_ckpt150": (VGGT_FAMILY, {"MASK_CKPT150": 1}),
    "vggt": (VGGT_FAMILY, {}),
}


@functools.lru_cache(maxsize=None)
def _compile(expr: str):
    """Compile a size expression; only names, ints and + - * // are allowed."""
    tree = ast.parse(expr, mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)
    for node in ast.walk(tree):
        if not isinstance(node, allowed) or (isinstance(node, ast.Constant) and not isinstance(node.value, int)):
            raise ValueError(f"size expression {expr!r}: only names, ints and + - * // are allowed")
    return compile(tree, f"<size {expr}>", "eval")


def size(expr: Size, sizes: Mapping[str, int]) -> int:
    """The value of an int or a size expression such as ``"3*W"`` under ``sizes``."""
    if isinstance(expr, int):
        return expr
    try:
        return int(eval(_compile(expr), {"__builtins__": {}}, dict(sizes)))
    except NameError as exc:
        raise ValueError(f"size expression {expr!r} needs a size that was not given ({exc})") from None


def expand(items: tuple, sizes: Mapping[str, int], prefix: str = "") -> Iterator[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every tensor that the rules ``items`` describe under ``sizes``."""
    for item in items:
        if isinstance(item, T):
            yield prefix + item.name, tuple(size(s, sizes) for s in item.shape)
            continue
        if item.when is not None and not sizes.get(item.when, 0):
            continue
        scope = {**sizes, **{name: size(expr, sizes) for name, expr in item.bind}}
        for i in range(size(item.repeat, scope)) if item.repeat is not None else (None,):
            yield from expand(item.items, scope, prefix + item.prefix.format(i=i))
