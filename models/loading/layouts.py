"""Which model a checkpoint holds, and at what size, from its tensor names and shapes alone.

- :func:`detect_layout` -> "pi3" | "pi3x" | "page4d" | "page4d_ckpt150" | "vggt".
  Pi3: ``encoder.*``, ``decoder.N.*``, ``register_token`` and nothing Pi3 lacks. Pi3X: the same trunk
  plus modules Pi3 does not have (``metric_*``, ``depth_encoder``, ``ray_embed``, conv heads ...).
  VGGT family (``aggregator.frame_blocks.N.*``): official PAGE-4D has the spatial mask head with
  ``head0.2`` a 1x1 conv [hidden, C, 1, 1]; checkpoint_150 has ``alpha_logit``/``tau_logit`` and a
  depthwise ``head0.2`` [C, 1, 3, 3]; VGGT-1B has no mask head.
- :func:`infer_dims` reads the sizes (embed dim, depths, heads, registers, head sizes) off the shapes,
  so loaders can say "this file is ViT-B sized, your model is ViT-L" (:func:`size_mismatch`).
- :func:`expect_layout` checks that a file suits a role ("pi3" or "page4d") with errors that say
  which flag the file belongs to.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from typing import Iterator, Mapping, Optional, Union

from models.errors import PathLike
from models.loading.checkpoint_grammar import LAYOUT_RULES, expand
from models.loading.checkpoint_io import open_checkpoint
from models.loading.checkpoint_reader import CheckpointError, CheckpointReader
from models.loading.roles import LAYOUT_DESCRIPTION, ROLES

Source = Union[PathLike, CheckpointReader]
_VIT_SIZES = {384: "ViT-S", 768: "ViT-B", 1024: "ViT-L", 1536: "ViT-g"}
_MASK = "aggregator.spatial_mask_head."
_PI3X_MODULES = ("metric_token", "metric_decoder", "metric_head", "depth_encoder", "ray_embed", "pose_inject_blk")


@contextlib.contextmanager
def _reader(src: Source) -> Iterator[CheckpointReader]:
    """Use a reader as given, or open (and afterwards close) a path."""
    if isinstance(src, CheckpointReader):
        yield src
    else:
        with open_checkpoint(src) as reader:
            yield reader


def _generalize(key: str) -> str:
    """``decoder.12.attn.qkv.weight`` -> ``decoder.#.attn.qkv.weight``: names without indices."""
    return re.sub(r"(?<=\.)\d+(?=\.|$)", "#", key)


@functools.lru_cache(maxsize=None)
def layout_names(layout: str) -> frozenset:
    """Every tensor name of ``layout`` with its indices generalized (names do not depend on sizes;
    Pi3 with all three heads, the VGGT family without the tracker, which page4d never loads)."""
    from models.loading.synthetic import layout_sizes

    sizes = layout_sizes(layout, embed_dim=8, encoder_depth=1, depth=1, num_heads=2, pos_embed_grid=1,
                         camera_trunk_depth=1, dpt_features=2, dpt_out_channels=(1, 1, 1, 1), dpt_hidden2=1,
                         mask_hidden=1, track_head=False, pi3_head_dim=2, pi3_head_depth=1)
    return frozenset(_generalize(name) for name, _ in expand(LAYOUT_RULES[layout][0], sizes))


def layout_has(layout: str, key: str) -> bool:
    """Whether a complete file of ``layout`` has a tensor named like ``key`` (at some size)."""
    return layout in LAYOUT_RULES and _generalize(key) in layout_names(layout)


def _pi3_names() -> frozenset:
    return layout_names("pi3")


def _classify(reader: CheckpointReader) -> tuple[str, list[str]]:
    """(layout, evidence): for pi3x the names Pi3 lacks; raises CheckpointError when unknown."""
    keys = reader.keys()
    has = set(keys).__contains__
    if has("aggregator.frame_blocks.0.attn.qkv.weight") and has("aggregator.global_blocks.0.attn.qkv.weight"):
        return _mask_head_variant(reader), []
    if has("register_token") and has("decoder.0.attn.qkv.weight") and has("encoder.patch_embed.proj.weight"):
        known = _pi3_names()
        extras = [k for k in keys if _generalize(k) not in known]
        return ("pi3x", _modules(extras)) if extras else ("pi3", [])
    examples = ", ".join(keys[:5]) if keys else "no tensors at all"
    raise CheckpointError(
        f"{reader.path}: unknown checkpoint layout ({len(keys)} tensors, e.g. {examples}); expected Pi3 "
        f"(encoder.*, decoder.N.*, register_token) or VGGT / PAGE-4D (aggregator.frame_blocks.N.*, "
        f"aggregator.global_blocks.N.*); pass Pi3's model.safetensors or a PAGE-4D .pt"
    )


def _modules(keys: list[str]) -> list[str]:
    """Readable evidence: top-level modules Pi3 lacks first (metric_token, ...), then sub-modules."""
    pi3_tops = {name.split(".")[0] for name in _pi3_names()}
    tops = [k.split(".")[0] for k in keys if k.split(".")[0] not in pi3_tops]
    subs = [".".join(k.split(".")[:2]) for k in keys if k.split(".")[0] in pi3_tops]
    found = list(dict.fromkeys(tops + subs))
    # Name Pi3X's own modules first: they are what a reader will recognise.
    return sorted(found, key=lambda m: _PI3X_MODULES.index(m) if m in _PI3X_MODULES else len(_PI3X_MODULES))


def _mask_head_variant(reader: CheckpointReader) -> str:
    """page4d / page4d_ckpt150 / vggt from the spatial mask head's tensors."""
    mask = [k for k in reader.keys() if k.startswith(_MASK)]
    if not mask:
        return "vggt"
    head02 = _MASK + "head0.2.weight"
    shape = reader.shape(head02) if head02 in reader else None
    scalars = {_MASK + "alpha_logit", _MASK + "tau_logit"} <= set(mask)
    depthwise = shape is not None and len(shape) == 4 and shape[1:] == (1, 3, 3)
    pointwise = shape is not None and len(shape) == 4 and shape[2:] == (1, 1) and shape[1] > 1
    if scalars and depthwise:
        return "page4d_ckpt150"
    if pointwise and not scalars:
        return "page4d"
    raise CheckpointError(
        f"{reader.path}: unrecognised spatial mask head (head0.2.weight {list(shape) if shape else 'missing'}, "
        f"alpha/tau logits {'present' if scalars else 'absent'}); expected [hidden, C, 1, 1] (official "
        f"PAGE-4D) or [C, 1, 3, 3] with alpha_logit and tau_logit (checkpoint_150); pass one of those files"
    )


def detect_layout(src: Source) -> str:
    """The layout of a checkpoint: "pi3", "pi3x", "page4d", "page4d_ckpt150" or "vggt"."""
    with _reader(src) as reader:
        return _classify(reader)[0]


def expect_layout(src: Source, role: str) -> str:
    """The file's layout if it suits ``role`` ("pi3" or "page4d"), else a CheckpointError naming the fix."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    with _reader(src) as reader:
        layout, extras = _classify(reader)
        if layout in ROLES[role].layouts:
            return layout
        path = reader.path
    if layout == "pi3x":
        what = f"this is a Pi3X checkpoint (it has {', '.join(extras[:3])}, which Pi3 does not)"
        if role == "pi3":
            raise CheckpointError(f"{path}: {what}; page4d loads Pi3 (yyfz233/Pi3, model.safetensors): "
                                  f"fetch it with `page4d weights fetch` and pass that with --pi3")
        raise CheckpointError(f"{path}: {what}, not PAGE-4D; pass a PAGE-4D .pt with --page4d and Pi3 "
                              f"(yyfz233/Pi3) with --pi3")
    if role == "pi3":
        raise CheckpointError(f"{path}: this is a {LAYOUT_DESCRIPTION[layout]} checkpoint, not Pi3; pass it with --page4d")
    raise CheckpointError(f"{path}: this is a Pi3 checkpoint, not PAGE-4D; pass it with --pi3")


# ---------------------------------------------------------------------------------------------
# sizes


def size_label(embed_dim: int) -> str:
    """"ViT-L" for 1024 etc.; "embed-N" for widths with no common name."""
    return _VIT_SIZES.get(embed_dim, f"embed-{embed_dim}")


def _count(keys: list[str], prefix: str) -> int:
    """How many numbered children ``prefix{N}.`` the keys have."""
    found = {m.group(1) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return len(found)


def infer_dims(src: Source) -> dict:
    """Sizes read off the shapes. Keys shared with :func:`synthetic.layout_sizes` keep its names
    (embed_dim, encoder_depth, depth, num_heads, ...), so a file can be regenerated at its size."""
    with _reader(src) as reader:
        layout, _ = _classify(reader)
        pi3 = layout.startswith("pi3")
        enc, blk = ("encoder.", "decoder.0.") if pi3 else ("aggregator.patch_embed.", "aggregator.frame_blocks.0.")
        keys = reader.keys()

        def shape(key: str) -> tuple[int, ...]:
            if key not in reader:
                raise CheckpointError(
                    f"{reader.path}: incomplete {LAYOUT_DESCRIPTION[layout]} checkpoint: no {key}; {_REFETCH}")
            return reader.shape(key)

        patch = shape(enc + "patch_embed.proj.weight")
        width = shape(blk + "attn.qkv.weight")[1]
        dims = {
            "layout": layout,
            "embed_dim": patch[0],
            "size_label": size_label(patch[0]),
            "patch_size": patch[-1],
            "encoder_depth": _count(keys, enc + "blocks."),
            "encoder_registers": shape(enc + "register_tokens")[1],
            "pos_embed_grid": math.isqrt(shape(enc + "pos_embed")[1] - 1),
            "width": width,
            "num_heads": width // shape(blk + "attn.q_norm.weight")[0],
            "head_dim": shape(blk + "attn.q_norm.weight")[0],
            "mlp_ratio": shape(blk + "mlp.fc1.weight")[0] / width,
        }
        if pi3:
            blocks = _count(keys, "decoder.")
            dims.update(decoder_blocks=blocks, depth=blocks // 2, special_tokens=shape("register_token")[2])
            return dims
        dims.update(depth=_count(keys, "aggregator.frame_blocks."),
                    special_tokens=1 + shape("aggregator.register_token")[2])
        dims.update(_vggt_heads(reader, layout))
        return dims


_REFETCH = "re-download it (page4d weights fetch) or pass a complete file"


def _vggt_heads(reader: CheckpointReader, layout: str) -> dict:
    """Head sizes of a VGGT-family file (only those whose tensors are present)."""
    out: dict = {"track_head": any(k.startswith("track_head.") for k in reader.keys())}
    if "camera_head.embed_pose.weight" in reader:
        out["camera_dim"] = reader.shape("camera_head.embed_pose.weight")[0]
        out["camera_trunk_depth"] = _count(reader.keys(), "camera_head.trunk.")
    if "depth_head.scratch.layer1_rn.weight" in reader:
        out["dpt_features"] = reader.shape("depth_head.scratch.layer1_rn.weight")[0]
        out["dpt_out_channels"] = tuple(reader.shape(f"depth_head.projects.{k}.weight")[0] for k in range(4))
    if layout == "page4d":
        out["mask_hidden"] = reader.shape(_MASK + "head0.2.weight")[0]
    return out


def describe_dims(dims: Mapping) -> str:
    """One phrase, e.g. "ViT-L sized (embed 1024, 24 encoder blocks, 24 layers, 16 heads)"."""
    get = lambda name: dims.get(name, "?")  # noqa: E731
    return (f"{size_label(dims['embed_dim'])} sized (embed {dims['embed_dim']}, {get('encoder_depth')} encoder "
            f"blocks, {get('depth')} layers, {get('num_heads')} heads)")


def size_mismatch(path: PathLike, file_dims: Mapping, model_dims: Mapping,
                  fields: tuple[str, ...] = ("embed_dim", "encoder_depth", "depth", "num_heads")) -> Optional[str]:
    """A one-line error when the file's sizes differ from the model's in ``fields``, else None."""
    differ = [f for f in fields if f in file_dims and f in model_dims and file_dims[f] != model_dims[f]]
    if not differ:
        return None
    return (f"{path}: this file is {describe_dims(file_dims)}, your model is {describe_dims(model_dims)} "
            f"({', '.join(differ)} differ); pick the configuration preset that matches the file, or the file "
            f"that matches the preset")
