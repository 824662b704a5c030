"""Terminal tables for ``page4d eval`` (Rich) and the eval.json writer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

from page4d_cli.data.errors import DataFormatError
from page4d_cli.eval.result import EVAL_FORMAT, EvalResult
from page4d_cli.pipeline.records import write_json

EVAL_FILE = "eval.json"
HEADLINE = (  # (summary key, label, unit / alignment note)
    ("ate", "ATE (RMSE of camera centres)", "GT units, Sim(3)"),
    ("rpe_trans", "RPE translation (consecutive instants)", "GT units, Sim(3)"),
    ("rpe_rot_deg", "RPE rotation", "degrees"),
    ("rig_trans", "rig: camera-to-camera translation", "GT units, Sim(3) scale"),
    ("rig_rot_deg", "rig: camera-to-camera rotation", "degrees"),
    ("abs_rel", "depth AbsRel (all GT-valid pixels)", "depth alignment"),
    ("abs_rel_dynamic", "depth AbsRel, dynamic pixels", "depth alignment"),
    ("abs_rel_static", "depth AbsRel, static pixels", "depth alignment"),
    ("delta_1_25", "depth δ < 1.25", "share of pixels"),
    ("accuracy", "points: accuracy", "GT units, Sim(3)"),
    ("completeness", "points: completeness", "GT units, Sim(3)"),
    ("chamfer", "points: Chamfer", "GT units, Sim(3)"),
    ("mask_iou", "dynamic mask IoU", ""),
)


def fmt(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4f}"
    return f"{value:.3g}"


def write_eval_json(result: EvalResult, folder: Path) -> Path:
    """``folder/eval.json``, written to a temporary file and renamed; an existing eval.json is replaced only
    when page4d wrote it (``format: page4d-eval``)."""
    path = Path(folder) / EVAL_FILE
    if path.exists():
        try:
            ours = json.loads(path.read_text()).get("format") == EVAL_FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise DataFormatError(f"{path}: exists and was not written by page4d eval; move it away first")
    tmp = path.with_name(f".{EVAL_FILE}.tmp-{os.getpid()}")
    try:
        write_json(tmp, result.to_dict())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def headline_table(results: Sequence[EvalResult], titles: Sequence[str]):
    """One column per result (and a mean column when several)."""
    from rich.table import Table

    table = Table(title="page4d eval", title_justify="left")
    table.add_column("metric")
    table.add_column("unit / alignment", style="dim")
    for title in titles:
        table.add_column(title, justify="right")
    several = len(results) > 1
    if several:
        table.add_column("mean", justify="right", style="bold")
    for key, label, unit in HEADLINE:
        values = [r.summary()[key] for r in results]
        if all(v is None for v in values):
            continue
        row = [label, unit] + [fmt(v) for v in values]
        if several:
            present = [v for v in values if v is not None]
            row.append(fmt(sum(present) / len(present)))
        table.add_row(*row)
    return table


def camera_table(result: EvalResult):
    from rich.table import Table

    table = Table(title="per camera", title_justify="left")
    for column in ("camera", "instants", "ATE", "RPE t", "RPE r (deg)", "AbsRel", "δ<1.25", "mask IoU"):
        table.add_column(column, justify="left" if column == "camera" else "right")
    for cam in result.per_camera:
        table.add_row(cam.name, str(len(cam.gt_frames)), fmt(cam.ate), fmt(cam.rpe_trans), fmt(cam.rpe_rot_deg),
                      fmt(cam.depth.abs_rel if cam.depth else None), fmt(cam.depth.delta_1_25 if cam.depth else None),
                      fmt(cam.mask_iou))
    return table


def instant_table(result: EvalResult):
    from rich.table import Table

    table = Table(title="per instant", title_justify="left")
    for column in ("t", "ATE", "rig t", "rig r (deg)", "AbsRel", "δ<1.25", "Chamfer", "mask IoU"):
        table.add_column(column, justify="right")
    for inst in result.per_instant:
        table.add_row(str(inst.t), fmt(inst.ate), fmt(inst.rig_trans), fmt(inst.rig_rot_deg),
                      fmt(inst.depth.abs_rel if inst.depth else None), fmt(inst.depth.delta_1_25 if inst.depth else None),
                      fmt(inst.points["chamfer"] if inst.points else None), fmt(inst.mask_iou))
    return table


def notes(result: EvalResult) -> list[str]:
    """Alignment used and coverage, one line each."""
    sim3 = result.cameras.alignment
    lines = [f"cameras: one Sim(3) over {result.cameras.num_poses} camera centres ({sim3.method}), "
             f"scale {fmt(sim3.scale)}"]
    if result.depth is not None:
        align = result.depth.alignment
        shift = f", shift {fmt(align.shift)}" if align.mode == "scale-shift" else ""
        lines.append(f"depth: per-clip {align.mode} alignment, scale {fmt(align.scale)}{shift}; "
                     f"{result.depth.all.pixels} GT-valid pixels")
    if result.missing_frames:
        covered = {cam.name: len(set(cam.gt_frames)) for cam in result.per_camera}
        total = {cam.name: len(set(cam.gt_frames)) + len(cam.missing_frames) for cam in result.per_camera}
        parts = ", ".join(f"{name} {covered[name]}/{total[name]}" for name in result.missing_frames)
        lines.append(f"GT frames covered by the prediction: {parts} (the others are not evaluated)")
    return lines
