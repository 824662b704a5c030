"""Synthetic checkpoints with the real tensor names, at any width and depth.

- :func:`synthetic_specs` lists ``(name, shape)`` of a layout ("pi3", "pi3x", "page4d",
  "page4d_ckpt150", "vggt") at the given sizes, from the rules in :mod:`checkpoint_grammar`.
- :func:`synthetic_state_dict` makes the tensors: on "meta" (shapes only, free) or "cpu" with seeded
  values. A tensor's values depend only on ``(seed, name, shape)``, so a test can recompute
  :func:`synthetic_tensor` for any name and compare it with what a loader produced.
- :func:`write_checkpoint` writes a state dict as safetensors (tensor by tensor) or as a torch pickle
  ``{"model": sd}`` like the real PAGE-4D file; :func:`write_synthetic` does both without first
  building the dict for safetensors, so a full-size Pi3 file (3.8 GB) needs one tensor of RAM at a
  time. The torch format has to pickle the whole dict: writing a full-size PAGE-4D ``.pt``
  (~5 GB float32) peaks at about the file's size in RAM.
- :data:`TINY`: the fixtures' sizes, for quick files. (Broken files for tests are made in
  ``tests/broken_checkpoints.py``.)
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch

from models.errors import PathLike
from models.loading.checkpoint_grammar import LAYOUT_RULES, expand
from models.loading.safetensors_reader import SAFETENSORS_DTYPES

LAYOUTS = tuple(LAYOUT_RULES)

# The sizes of the reference fixtures (tests/test_fidelity_fixtures.py), small enough for any unit test.
TINY = dict(
    embed_dim=64, encoder_depth=2, depth=4, num_heads=4, dpt_features=32, dpt_out_channels=(16, 32, 64, 64),
    camera_trunk_depth=2, track_head=False, pi3_heads=("point",), pi3_head_depth=1,
)

_IMAGENET = {"image_mean": (0.485, 0.456, 0.406), "image_std": (0.229, 0.224, 0.225)}
_NORM_WEIGHT = re.compile(r"(^|\.)(\w*norm\w*|layers\.[03])\.weight$")
_ST_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def layout_sizes(
    layout: str,
    embed_dim: int = 1024,
    encoder_depth: int = 24,
    depth: Optional[int] = None,
    num_heads: int = 16,
    mlp_ratio: float = 4.0,
    *,
    encoder_registers: int = 4,
    pos_embed_grid: int = 37,
    patch_size: int = 14,
    camera_trunk_depth: int = 4,
    dpt_features: int = 256,
    dpt_out_channels: Sequence[int] = (256, 512, 1024, 1024),
    dpt_hidden2: int = 32,
    mask_hidden: int = 256,
    track_head: Optional[bool] = None,
    track_features: int = 128,
    pi3_heads: Sequence[str] = ("point", "conf", "camera"),
    pi3_head_dim: Optional[int] = None,
    pi3_head_depth: int = 5,
) -> dict[str, int]:
    """The named sizes the rules of ``layout`` use. ``depth`` = aggregator layers (VGGT family,
    default 24) or Pi3 decoder layers = blocks / 2 (default 18). ``track_head`` defaults to True for
    the VGGT family, as in the real files; the fixtures have none."""
    if layout not in LAYOUT_RULES:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    rules_flags = LAYOUT_RULES[layout][1]
    pi3_like = layout.startswith("pi3")
    unknown_heads = set(pi3_heads) - {"point", "conf", "camera"}
    if unknown_heads:
        raise ValueError(f"pi3_heads: unknown {sorted(unknown_heads)}; choose from point, conf, camera")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
    o1, o2, o3, o4 = dpt_out_channels
    return {
        "D": embed_dim, "NH": num_heads, "MLP": int(embed_dim * mlp_ratio), "POS": pos_embed_grid,
        "PATCH": patch_size, "ENC_REG": encoder_registers, "ENC_DEPTH": encoder_depth,
        "DEPTH": depth if depth is not None else (18 if pi3_like else 24),
        "NREG": 5 if pi3_like else 4,  # Pi3: 5 registers; VGGT: camera token + 4 registers
        "C": 2 * embed_dim, "CAM_DEPTH": camera_trunk_depth,
        "DPT_F": dpt_features, "DPT_HID2": dpt_hidden2, "O1": o1, "O2": o2, "O3": o3, "O4": o4,
        "MASK_HID": mask_hidden, "TRACK_F": track_features,
        "TRACK_HEAD": int(track_head if track_head is not None else not pi3_like),
        "HDIM": pi3_head_dim or embed_dim, "HDEPTH": pi3_head_depth,
        **{f"PI3_{h.upper()}": 1 for h in pi3_heads},
        **rules_flags,
    }


def synthetic_specs(layout: str, **sizes) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every tensor of ``layout`` at the given sizes (see :func:`layout_sizes`)."""
    named = layout_sizes(layout, **sizes)  # checks the layout name first
    return list(expand(LAYOUT_RULES[layout][0], named))


def synthetic_tensor(name: str, shape: Sequence[int], seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The value page4d's synthetic checkpoints give tensor ``name``: N(0, 0.02) noise, norm weights
    1 + noise (so activations survive), Pi3's image mean/std the real ImageNet constants."""
    shape = tuple(shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf in _IMAGENET and shape == (1, 3, 1, 1):
        return torch.tensor(_IMAGENET[leaf], dtype=dtype).view(shape)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=gen) * 0.02
    if _NORM_WEIGHT.search(name):
        values += 1.0
    return values.to(dtype)


def synthetic_state_dict(
    layout: str, *, device: str = "meta", seed: int = 0, dtype: torch.dtype = torch.float32, **sizes
) -> dict[str, torch.Tensor]:
    """A state dict in the real key layout; ``device="meta"`` costs nothing, ``"cpu"`` makes values."""
    specs = synthetic_specs(layout, **sizes)
    if device == "meta":
        return {name: torch.empty(shape, dtype=dtype, device="meta") for name, shape in specs}
    return {name: synthetic_tensor(name, shape, seed, dtype).to(device) for name, shape in specs}


# ---------------------------------------------------------------------------------------------
# writers


def write_checkpoint(
    sd: Mapping[str, torch.Tensor],
    path: PathLike,
    format: str = "safetensors",
    *,
    optimizer: bool = False,
    metadata: Optional[Mapping[str, str]] = None,
) -> Path:
    """Write ``sd`` as ``.safetensors`` or as a torch pickle ``{"model": sd}`` (with ``optimizer=True``
    also a fake optimizer state, epoch and args, as training checkpoints carry)."""
    path = Path(path)
    if format == "safetensors":
        entries = [(name, tuple(t.shape), t.dtype) for name, t in sd.items()]
        _write_safetensors(path, entries, lambda name: sd[name], metadata)
    elif format == "torch":
        torch.save(_torch_payload(dict(sd), optimizer), path)
    else:
        raise ValueError(f"format must be 'safetensors' or 'torch', got {format!r}")
    return path


def write_synthetic(
    path: PathLike,
    layout: str,
    format: str = "safetensors",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    optimizer: bool = False,
    **sizes,
) -> Path:
    """Write a synthetic checkpoint of ``layout``; safetensors is streamed one tensor at a time."""
    specs = synthetic_specs(layout, **sizes)
    if format == "safetensors":
        entries = [(name, shape, dtype) for name, shape in specs]
        shapes = dict(specs)
        make = lambda name: synthetic_tensor(name, shapes[name], seed, dtype)  # noqa: E731
        _write_safetensors(Path(path), entries, make, {"page4d_synthetic": layout, "seed": str(seed)})
        return Path(path)
    sd = {name: synthetic_tensor(name, shape, seed, dtype) for name, shape in specs}
    return write_checkpoint(sd, path, format, optimizer=optimizer)


def _torch_payload(sd: dict, optimizer: bool) -> dict:
    if not optimizer:
        return {"model": sd}
    # Shaped like torch.optim state: only plain containers and tensors, so weights_only accepts it.
    first = next(iter(sd.values()))
    state = {0: {"step": torch.tensor(150.0), "exp_avg": torch.zeros_like(first),
                 "exp_avg_sq": torch.zeros_like(first)}}
    groups = [{"lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 0.05, "params": [0]}]
    return {"model": sd, "optimizer": {"state": state, "param_groups": groups}, "epoch": 150, "best": 0.5}


def _write_safetensors(
    path: Path,
    entries: Sequence[tuple[str, tuple[int, ...], torch.dtype]],
    make: Callable[[str], torch.Tensor],
    metadata: Optional[Mapping[str, str]] = None,
) -> None:
    """Header from the shapes, then each tensor's bytes as ``make(name)`` produces it."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, shape, dtype in entries:
        nbytes = torch.empty((), dtype=dtype).element_size()
        for s in shape:
            nbytes *= s
        header[name] = {"dtype": _ST_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape, dtype in entries:
            t = make(name).detach().to("cpu", dtype).contiguous()
            if tuple(t.shape) != tuple(shape):
                raise ValueError(f"{name}: made shape {tuple(t.shape)}, header says {tuple(shape)}")
            f.write(t.reshape(-1).view(torch.uint8).numpy())  # numpy's buffer: no extra copy
