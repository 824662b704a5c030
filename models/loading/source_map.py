"""Where every tensor of the network comes from: the map from our tensor names to source names.

Each ``Rule`` matches our tensor names with a regular expression and lists candidate sources in order
of preference. A candidate names a file role (``models.loading.roles``: ``pi3`` = stage 1, ``page4d`` =
stage 2), how to build the source key from the match, an optional condition, and an optional
adaptation. A rule also says where the tensor sits (:class:`Place`: module group, 1-based layer,
Time/View/sparse, stream), which the provenance records keep. ``plan.py`` applies the table; a tensor
no candidate can fill is initialised (stage 3).

The plan (docs/design.md, "Three-stage loading"):

- encoder: Pi3 ``encoder.*``; without a Pi3 file, the PAGE-4D file's ``aggregator.patch_embed.*``.
- layers 1 .. pi3_layers (default 18): Pi3 ``decoder.{2i}`` -> Time-SA, ``decoder.{2i+1}`` -> View-SA;
  without a Pi3 file, PAGE-4D's ``frame_blocks.i`` / ``global_blocks.i``.
- layers pi3_layers+1 .. 24: PAGE-4D ``aggregator.frame_blocks.i`` / ``global_blocks.i``.
- per-stream blocks of L_mid layers (pose/geo) copy the source of the layer they sit at.
- camera token: PAGE-4D (the camera head was trained with it); without one, Pi3's register 0.
- register tokens: Pi3 registers 1-4 (in both slots); without Pi3, PAGE-4D's.
- spatial mask head, camera / depth / point heads: PAGE-4D.
- everything else (lambdas, temporal encoding, mask fusion, sparse gates...): stage 3, neutral.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional, get_args

import torch

from models.token_layout import Stream

#: Time-SA / View-SA / sparse Global-SA blocks, as recorded in ``TensorRecord.kind``.
KINDS = {"time": "Time-SA", "view": "View-SA", "sparse": "sparse global"}
#: The streams a block belongs to (``models.token_layout.Stream``): ``shared``, then ``pose`` / ``geo``
#: (the dual streams of the mid layers), in report order.
STREAMS: tuple[Stream, ...] = get_args(Stream)


@dataclass(frozen=True)
class Place:
    """Where a tensor sits: ``group`` (report label), 1-based ``layer``, ``kind`` (a key of KINDS), ``stream``
    (a block's stream; None outside Time/View/sparse blocks)."""

    group: str
    layer: Optional[int] = None
    kind: Optional[str] = None
    stream: Optional[Stream] = None


def block_place(layer: int, kind: str, stream: Optional[str]) -> Place:
    """The place of a Time/View/sparse block tensor; the group label is derived from the fields.
    ``stream``: the name's ``pose`` / ``geo`` prefix, None (no prefix) for the shared stream."""
    stream = stream or "shared"
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; one of {STREAMS}")
    suffix = "" if stream == "shared" else f" / {stream}"
    if kind == "sparse":
        return Place(f"sparse global after layer {layer}{suffix}", layer, kind, stream)
    return Place(f"layer {layer} / {KINDS[kind]}{suffix}", layer, kind, stream)


@dataclass(frozen=True)
class Adaptation:
    """A transformation of the source tensor: ``apply(source) -> target``; ``describe`` for provenance."""

    describe: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    shape: Callable[[tuple], tuple]  # source shape -> produced shape (header-only planning)


def _pi3_camera_slots(reg: torch.Tensor) -> torch.Tensor:
    return reg[:, :, :1].expand(1, 2, 1, reg.shape[-1]).clone()


def _pi3_register_slots(reg: torch.Tensor) -> torch.Tensor:
    return reg[:, :, 1:].expand(1, 2, reg.shape[2] - 1, reg.shape[-1]).clone()


PI3_CAMERA_SLOTS = Adaptation(
    "slice Pi3 register 0 of 5, repeat to slots 0 and 1", _pi3_camera_slots,
    lambda s: (1, 2, 1, s[-1]))
PI3_REGISTER_SLOTS = Adaptation(
    "slice Pi3 registers 1-4 of 5, repeat to slots 0 and 1", _pi3_register_slots,
    lambda s: (1, 2, s[2] - 1, s[-1]))


@dataclass(frozen=True)
class Candidate:
    role: str  # "pi3" or "page4d"
    source: Callable[[re.Match], str]
    when: Callable[[re.Match, "PlanContext"], bool] = lambda m, ctx: True
    adaptation: Optional[Adaptation] = None
    note: str = ""  # e.g. "fallback: no Pi3 file"; added to the provenance when this candidate is used


@dataclass(frozen=True)
class Rule:
    name: str  # recorded in TensorRecord.rule; RULES_BY_NAME finds the rule again
    pattern: re.Pattern
    candidates: tuple[Candidate, ...]
    place: Callable[[re.Match], Place]
    on_mismatch: str = "error"  # "error", or "init" = a recorded stage-3 fallback (layout variants)
    unit: bool = False  # all-or-nothing: if one tensor is initialised, all of the rule's tensors are


@dataclass
class PlanContext:
    """What the rules may look at: the config and which files are present."""

    pi3_layers: int
    depth: int
    roles_present: set = field(default_factory=set)


def _layer(m: re.Match) -> int:
    return int(m["k"])


def _block_place(m: re.Match) -> Place:
    return block_place(_layer(m) + 1, m["kind"], m["stream"])


def _pi3_block(m: re.Match) -> str:
    return f"decoder.{2 * _layer(m) + (0 if m['kind'] == 'time' else 1)}.{m['rest']}"


def _page4d_block(m: re.Match) -> str:
    container = "frame_blocks" if m["kind"] == "time" else "global_blocks"
    return f"aggregator.{container}.{_layer(m)}.{m['rest']}"


def _from_pi3(m, ctx) -> bool:
    return _layer(m) < ctx.pi3_layers


def _pi3_absent(m, ctx) -> bool:
    return "pi3" not in ctx.roles_present


_BLOCK = r"aggregator\.(?:(?P<stream>pose|geo)_)?(?P<kind>time|view)_blocks\.(?P<k>\d+)\.(?P<rest>.+)"
_SPARSE = r"aggregator\.(?:(?P<stream>pose|geo)_)?sparse_blocks\.(?P<k>\d+)\.block\.(?P<rest>.+)"

RULES: tuple[Rule, ...] = (
    Rule("encoder", re.compile(r"aggregator\.encoder\.(?P<rest>.+)"), (
        Candidate("pi3", lambda m: f"encoder.{m['rest']}"),
        Candidate("page4d", lambda m: f"aggregator.patch_embed.{m['rest']}", note="fallback: no Pi3 file"),
    ), lambda m: Place("encoder")),
    Rule("camera token", re.compile(r"aggregator\.camera_token"), (
        Candidate("page4d", lambda m: "aggregator.camera_token"),
        Candidate("pi3", lambda m: "register_token", adaptation=PI3_CAMERA_SLOTS, note="fallback: no PAGE-4D file"),
    ), lambda m: Place("tokens")),
    Rule("register tokens", re.compile(r"aggregator\.register_token"), (
        Candidate("pi3", lambda m: "register_token", adaptation=PI3_REGISTER_SLOTS),
        Candidate("page4d", lambda m: "aggregator.register_token", note="fallback: no Pi3 file"),
    ), lambda m: Place("tokens")),
    Rule("block", re.compile(_BLOCK), (
        Candidate("pi3", _pi3_block, when=_from_pi3),
        Candidate("page4d", _page4d_block, when=lambda m, ctx: not _from_pi3(m, ctx)),
        Candidate("page4d", _page4d_block, when=lambda m, ctx: _from_pi3(m, ctx) and _pi3_absent(m, ctx),
                  note="fallback: no Pi3 file"),
    ), _block_place),
    # Sparse Global-SA blocks copy the View-SA block of the layer they follow (same stream).
    Rule("sparse block", re.compile(_SPARSE), (
        Candidate("pi3", lambda m: f"decoder.{2 * _layer(m) + 1}.{m['rest']}", when=_from_pi3,
                  note="copy of the View-SA block of this layer"),
        Candidate("page4d", lambda m: f"aggregator.global_blocks.{_layer(m)}.{m['rest']}",
                  when=lambda m, ctx: not _from_pi3(m, ctx) or _pi3_absent(m, ctx),
                  note="copy of the View-SA block of this layer"),
    ), lambda m: block_place(_layer(m) + 1, "sparse", m["stream"])),
    Rule("mask head", re.compile(r"aggregator\.spatial_mask_head\.(?P<rest>.+)"), (
        Candidate("page4d", lambda m: f"aggregator.spatial_mask_head.{m['rest']}"),
    ), lambda m: Place("mask head"), on_mismatch="init", unit=True),
    Rule("heads", re.compile(r"(?P<head>camera_head|depth_head|point_head)\.(?P<rest>.+)"), (
        Candidate("page4d", lambda m: f"{m['head']}.{m['rest']}"),
    ), lambda m: Place(m["head"].replace("_", " "))),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}

# Where the tensors no rule covers sit (stage 3 by design), for reports.
STAGE3_PLACES: tuple[tuple[re.Pattern, Callable[[re.Match], Place]], ...] = (
    (re.compile(r"aggregator\.mask_bias\."), lambda m: Place("lambdas")),
    (re.compile(r"aggregator\.mask_fusion\."), lambda m: Place("mask fusion")),
    (re.compile(r"aggregator\.temporal_pos\.(\d+)\."), lambda m: Place("temporal encoding", int(m[1]) + 1)),
    (re.compile(r"aggregator\.(?:(pose|geo)_)?sparse_blocks\.(\d+)\."),
     lambda m: block_place(int(m[2]) + 1, "sparse", m[1])),
    (re.compile(r"aggregator\.(memory|lambda_kpt)"), lambda m: Place("sparse global")),
)


def match_rule(name: str) -> tuple[Optional[Rule], Optional[re.Match]]:
    for rule in RULES:
        m = rule.pattern.fullmatch(name)
        if m:
            return rule, m
    return None, None


def stage3_place(name: str) -> Place:
    """Where a tensor that no rule covers sits."""
    for pattern, place in STAGE3_PLACES:
        m = pattern.match(name)
        if m:
            return place(m)
    return Place("other")


def candidate_of(rule: Optional[str], candidate: Optional[int]) -> Optional[Candidate]:
    """The candidate a plan chose (``TensorRecord.rule`` / ``.candidate``), or None."""
    if rule is None or candidate is None:
        return None
    return RULES_BY_NAME[rule].candidates[candidate]
