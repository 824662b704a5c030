"""``page4d inspect-load``: where every tensor of the network would come from, from file headers only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from page4d_cli.commands import summary

app = typer.Typer(add_completion=False)


@app.command("inspect-load", help=summary("inspect-load"))
def inspect_load_command(
    pi3: Optional[Path] = typer.Option(None, "--pi3", help="Pi3 model.safetensors (default: the registered one)."),
    page4d: Optional[Path] = typer.Option(None, "--page4d", help="PAGE-4D checkpoint (.pt/.safetensors) or VGGT-1B."),
    preset: str = typer.Option("full", "--preset", help="Network size: full, small or tiny."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Only layer N (1-based): its Time/View/stream blocks."),
    tensor: Optional[str] = typer.Option(None, "--tensor", help="Only tensors whose name matches this glob."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help=(
        "Initialise, with a warning, tensors a file's layout has but the file lacks (else an error).")),
    no_registry: bool = typer.Option(
        False, "--no-registry", help="Ignore registered weights; use only --pi3/--page4d."),
    finetuned: Optional[Path] = typer.Option(
        None, "--finetuned", help="A `page4d train` run (folder or weights file) overlaid as stage 4."),
) -> None:
    # torch and the loader are imported here, not at the top: `page4d --help` must stay light.
    from rich.console import Console

    from models.config import ConfigError
    from models.loading.loader import inspect_load, would_fill_for
    from page4d_cli.inspect_report import render_report, report_json
    from page4d_cli.weights import WeightsNotFound, resolve_weights
    from page4d_cli.weights.finetuned import choose_finetuned

    if not no_registry and (pi3 is None or page4d is None):
        try:
            selection = resolve_weights("auto", pi3=pi3, page4d=page4d)
            pi3, page4d = selection.pi3_path, selection.page4d_path
        except WeightsNotFound:
            pass  # nothing registered: show the plan without files
    finetuned, _ = choose_finetuned(finetuned, "random" if no_registry else "auto", preset)
    report = inspect_load(pi3=pi3, page4d=page4d, preset=preset, finetuned=finetuned,
                          allow_missing=allow_missing)
    depth = report.config["depth"]
    if layer is not None and not 1 <= layer <= depth:
        raise ConfigError(f"--layer {layer}: this network has layers 1 to {depth}; pass one of those")
    fill = would_fill_for(preset) if pi3 is None and page4d is None else None
    if as_json:
        typer.echo(json.dumps(report_json(report, layer, tensor, fill), indent=1))
    else:
        render_report(report, Console(stderr=False, highlight=False), layer, tensor, fill)
