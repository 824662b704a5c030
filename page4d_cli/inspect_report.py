"""Rendering a ``LoadReport`` for people (rich tables) and machines (JSON), with filters.

Used by ``page4d inspect-load``; callable from Python: ``render_report(report, console, layer=3)``.
"""

from __future__ import annotations

import fnmatch
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from models.loading.provenance import LoadReport, TensorRecord
from models.loading.roles import STAGE_NAMES
from models.loading.source_map import STREAMS

STAGE_STYLE = {1: "cyan", 2: "green", 3: "yellow", 4: "magenta"}


def filter_records(records: list[TensorRecord], layer: Optional[int] = None,
                   tensor: Optional[str] = None) -> list[TensorRecord]:
    """Records of 1-based ``layer`` (its Time/View/stream/sparse blocks and temporal encoding) and/or
    names matching a glob."""
    out = records
    if layer is not None:
        out = [r for r in out if r.layer == layer]
    if tensor is not None:
        out = [r for r in out if fnmatch.fnmatchcase(r.name, tensor)]
    return out


def group_rows(records: list[TensorRecord]) -> list[dict]:
    """One row per (module group, stage, source file): tensors, parameters, example source, adaptation."""
    rows: dict = {}
    for r in records:
        key = (r.group, r.stage, r.file)
        row = rows.setdefault(key, {"group": r.group, "stage": r.stage, "file": r.file, "tensors": 0,
                                    "parameters": 0, "source": r.source[0] if r.source else "",
                                    "adaptation": set(), "reason": r.reason, "order": record_order(r)})
        row["tensors"] += 1
        row["parameters"] += r.numel
        row["adaptation"].update(r.adaptation)
    ordered = sorted(rows.values(), key=lambda row: (row.pop("order"), row["stage"]))
    return [dict(row, adaptation=sorted(row["adaptation"])) for row in ordered]


_FIXED_ORDER = ("encoder", "tokens", "mask head", "mask fusion", "lambdas")
_HEAD_ORDER = ("camera head", "depth head", "point head")
_KIND_ORDER = {"time": 0, "view": 1, "sparse": 2, None: 3}  # None in a layer: its temporal encoding


def record_order(record: TensorRecord) -> tuple:
    """Network order from the record's fields: encoder, tokens, mask parts, layers 1..depth (Time, View,
    sparse; shared, pose, geo), heads, the rest."""
    if record.layer is not None:
        return (1, record.layer, _KIND_ORDER[record.kind], STREAMS.index(record.stream or "shared"))
    if record.group in _FIXED_ORDER:
        return (0, _FIXED_ORDER.index(record.group), 0, 0)
    if record.group in _HEAD_ORDER:
        return (2, _HEAD_ORDER.index(record.group), 0, 0)
    return (3, 0, 0, 0)


def report_json(report: LoadReport, layer: Optional[int] = None, tensor: Optional[str] = None,
                would_fill: Optional[dict] = None) -> dict:
    records = filter_records(report.records, layer, tensor)
    data = report.to_json()
    data["tensors"] = [r.to_json() for r in records]
    data["groups"] = group_rows(records)
    if would_fill:
        data["would_fill"] = would_fill
    return data


def render_report(report: LoadReport, console: Console, layer: Optional[int] = None,
                  tensor: Optional[str] = None, would_fill: Optional[dict] = None) -> None:
    records = filter_records(report.records, layer, tensor)
    files = report.files or {}
    if files:
        for role, info in files.items():
            console.print(f"[bold]{role}[/]: {info['path']} (layout {info['layout']}, {info['format']}, "
                          f"{info['tensors']} tensors)")
    else:
        console.print("[yellow]No weight files given or registered: every tensor would be initialised (stage 3).[/]")
    table = Table(title="Where each part of the network comes from", show_lines=False)
    for column in ("module", "stage", "tensors", "parameters", "source (example)", "adaptation / reason"):
        table.add_column(column, overflow="fold")
    for row in group_rows(records):
        style = STAGE_STYLE[row["stage"]]
        detail = "; ".join(row["adaptation"]) if row["stage"] != 3 else (row["reason"] or "")
        source = row["source"]
        if row["file"]:
            source = f"{source}  [dim]({row['file'].rsplit('/', 1)[-1]})[/]"
        table.add_row(row["group"], f"[{style}]{row['stage']}[/]", str(row["tensors"]), f"{row['parameters']:,}",
                      source, detail)
    console.print(table)
    if tensor is not None:
        detail = Table(title=f"Tensors matching {tensor!r}")
        for column in ("tensor", "shape", "stage", "source", "adaptation / reason"):
            detail.add_column(column, overflow="fold")
        for r in records:
            detail.add_row(r.name, str(list(r.shape)), str(r.stage), ", ".join(r.source),
                           "; ".join(r.adaptation) if r.stage != 3 else (r.reason or ""))
        console.print(detail)
    totals = Table(title="Totals per stage")
    for column in ("stage", "tensors", "parameters"):
        totals.add_column(column)
    counts = _counts(records)
    for stage in counts:
        totals.add_row(f"[{STAGE_STYLE[stage]}]{STAGE_NAMES[stage]}[/]", str(counts[stage][0]), f"{counts[stage][1]:,}")
    totals.add_row("all", str(sum(c[0] for c in counts.values())), f"{sum(c[1] for c in counts.values()):,}")
    console.print(totals)
    for role, keys in report.unused.items():
        if keys:
            console.print(f"[bold]Unused tensors of the {role} file[/] ({len(keys)}; --json lists them all): "
                          + ", ".join(summarize_keys(keys)))
    for note in report.notes:
        console.print(f"[dim]note:[/] {escape(note)}", soft_wrap=True)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    if would_fill:
        console.print("[bold]Which files would fill what:[/]")
        for role, groups in would_fill.items():
            console.print(f"  {role}: {', '.join(groups)}")


def summarize_keys(keys: list[str]) -> list[str]:
    """Collapse tensor names to modules with index ranges: ``aggregator.frame_blocks.{0-17}.* (324)``."""
    groups: dict = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "aggregator" and len(parts) > 2:
            name, index = f"aggregator.{parts[1]}", (int(parts[2]) if parts[2].isdigit() else None)
        elif len(parts) > 2 and parts[1].isdigit():
            name, index = parts[0], int(parts[1])
        elif len(parts) > 2:
            name, index = parts[0], None
        else:
            name, index = key, None  # a top-level tensor (register_token, image_mean, ...)
        groups.setdefault(name, [0, set()])
        groups[name][0] += 1
        if index is not None:
            groups[name][1].add(index)
    out = []
    for name, (count, indices) in groups.items():
        if indices:
            lo, hi = min(indices), max(indices)
            span = f"{lo}-{hi}" if len(indices) == hi - lo + 1 and hi > lo else ",".join(map(str, sorted(indices)))
            out.append(f"{name}.{{{span}}}.* ({count})")
        else:
            out.append(f"{name}.* ({count})" if any(k.startswith(name + ".") for k in keys) else f"{name} ({count})")
    return out


def _counts(records: list[TensorRecord]) -> dict:
    counts = {stage: [0, 0] for stage in (1, 2, 3) + ((4,) if any(r.stage == 4 for r in records) else ())}
    for r in records:
        counts[r.stage][0] += 1
        counts[r.stage][1] += r.numel
    return counts
