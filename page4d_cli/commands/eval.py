"""``page4d eval PRED GT``: measure a reconstruction against a ground-truth clip (or pairs via --list).

Thin shell over :func:`page4d_cli.eval.evaluate`; numpy/evo are imported inside the command.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from page4d_cli.commands import summary

HELP = "\n\n".join([summary("eval"), (
        "Measures a reconstruct output folder PRED against a ground-truth clip GT: ATE/RPE/rig errors "
        "(evo, Sim(3) Umeyama), depth AbsRel and δ<1.25 (median or scale-shift aligned; all, dynamic and static "
        "pixels), point accuracy/completeness/Chamfer, mask IoU. Writes PRED/eval.json.")])


class DepthAlign(str, Enum):
    median = "median"
    scale_shift = "scale-shift"


def read_pairs(list_file: Path) -> list[tuple[Path, Path]]:
    """``PRED GT`` per line (paths relative to the file; blank lines and ``#`` ignored)."""
    from page4d_cli.data.errors import DataFormatError

    if not list_file.is_file():
        raise DataFormatError(f"{list_file}: not found; write one 'PRED GT' pair per line")
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataFormatError(f"{list_file}: line {number} has {len(fields)} fields; write 'PRED GT' "
                                  f"(two paths separated by spaces)")
        pairs.append(tuple(p if p.is_absolute() else list_file.parent / p for p in map(Path, fields)))
    if not pairs:
        raise DataFormatError(f"{list_file}: lists no pairs; write one 'PRED GT' pair per line")
    return pairs


app = typer.Typer(add_completion=False)


@app.command("eval", help=HELP)
def eval_command(
    pred: Annotated[Optional[Path], typer.Argument(help="A page4d reconstruct output folder.", show_default=False)]
        = None,
    gt: Annotated[Optional[Path], typer.Argument(help="A ground-truth clip (input layout + gt/).", show_default=False)]
        = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="Text file of 'PRED GT' pairs, one per line.",
                                                      show_default=False)] = None,
    align: Annotated[DepthAlign, typer.Option(help="Depth alignment per clip: median scaling or least-squares "
                                                   "scale-shift.")] = DepthAlign.median,
    points: Annotated[bool, typer.Option("--points/--no-points", help="Point accuracy/completeness/Chamfer.")] = True,
    max_points: Annotated[int, typer.Option(help="Points per cloud and instant (even subsample).")] = 20000,
    as_json: Annotated[bool, typer.Option("--json", help="Print eval.json instead of tables.")] = False,
    details: Annotated[bool, typer.Option("--details/--no-details", help="Per-camera and per-instant tables.")]
        = True,
) -> None:
    """Evaluate reconstructions against ground-truth clips."""
    console = Console()
    from page4d_cli.data.errors import DataFormatError
    from page4d_cli.eval import EvalOptions, evaluate, report

    if list_file is not None:
        if pred is not None or gt is not None:
            raise DataFormatError("--list: pass either PRED GT or --list FILE, not both")
        pairs = read_pairs(list_file)
    elif pred is None or gt is None:
        raise DataFormatError("page4d eval: give PRED (a reconstruct output) and GT (a clip with gt/), "
                              "or --list FILE")
    else:
        pairs = [(pred, gt)]
    options = EvalOptions(depth_align=align.value, points=points, max_points=max_points)
    results = [evaluate(p, g, options) for p, g in pairs]
    written = [report.write_eval_json(result, p) for result, (p, _) in zip(results, pairs)]
    if as_json:
        data = [r.to_dict() for r in results]
        typer.echo(json.dumps(data[0] if list_file is None else data, indent=2, default=float))
        return
    titles = [p.name for p, _ in pairs]
    console.print(report.headline_table(results, titles))
    for result in results:
        if details:
            console.print(report.camera_table(result))
            console.print(report.instant_table(result))
        for line in report.notes(result):
            console.print(f"[dim]{escape(line)}[/]", soft_wrap=True, highlight=False)
    for path in written:
        console.print(f"wrote {escape(str(path))}", highlight=False)
