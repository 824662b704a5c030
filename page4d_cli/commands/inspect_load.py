"""``page4d inspect-load``: where every tensor of the network would come from, from file headers only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from models.config import ConfigError
from models.loading.checkpoint_io import CheckpointError
from models.loading.loader import config_for, inspect_load, open_sources, would_fill
from page4d_cli.console import fail
from page4d_cli.inspect_report import render_report, report_json
from page4d_cli.weights import WeightsError, resolve_weights


def inspect_load_command(
    pi3: Optional[Path] = typer.Option(None, "--pi3", help="Pi3 model.safetensors (default: the registered one)."),
    page4d: Optional[Path] = typer.Option(None, "--page4d", help="PAGE-4D checkpoint (.pt/.safetensors) or VGGT-1B."),
    preset: str = typer.Option("full", "--preset", help="Network size: full, small or tiny."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Only layer N (1-based): its Time/View/stream blocks."),
    tensor: Optional[str] = typer.Option(None, "--tensor", help="Only tensors whose name matches this glob."),
    no_registry: bool = typer.Option(False, "--no-registry", help="Ignore registered weights; use only --pi3/--page4d."),
) -> None:
    """Show the three-stage loading plan: stage, source key and adaptation of every tensor."""
    console = Console(stderr=False, highlight=False)
    try:
        if not no_registry and (pi3 is None or page4d is None):
            try:
                selection = resolve_weights("auto", pi3=pi3, page4d=page4d)
                pi3, page4d = selection.pi3_path, selection.page4d_path
            except WeightsError:
                pass  # nothing registered: show the plan without files
        report = inspect_load(pi3=pi3, page4d=page4d, preset=preset)
        fill = None
        if pi3 is None and page4d is None:
            _, layouts = open_sources(None, None)
            fill = would_fill(config_for(preset, layouts))
    except (CheckpointError, ConfigError, WeightsError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(report_json(report, layer, tensor, fill), indent=1))
    else:
        render_report(report, console, layer, tensor, fill)
