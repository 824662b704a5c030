"""``page4d data synth | check``: make and validate ground-truth clips (format: README "Evaluate").

Thin shell over :mod:`page4d_cli.data`; numpy/OpenCV are imported inside the commands so that
``page4d --help`` stays fast.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from page4d_cli.commands import summary

app = typer.Typer(help=summary("data"), no_args_is_help=True, add_completion=False)


class Rig(str, Enum):
    mixed = "mixed"
    static = "static"
    moving = "moving"


class ImageFormat(str, Enum):
    png = "png"
    mp4 = "mp4"


def _progress(console: Console, label: str, quiet: bool) -> Progress:
    """A transient bar on a terminal; nothing in a log (a non-terminal Live would leave a stray blank line)."""
    return Progress(TextColumn(label), BarColumn(bar_width=24), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=quiet or not console.is_terminal, transient=True)


@app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Argument(help="Folder that receives clip_0000, clip_0001, ...", show_default=False)],
    clips: Annotated[int, typer.Option(help="Number of clips N.")] = 8,
    cameras: Annotated[int, typer.Option(help="Cameras per clip V.")] = 4,
    frames: Annotated[int, typer.Option(help="Frames per clip T.")] = 8,
    size: Annotated[str, typer.Option(help="Image size WIDTHxHEIGHT.")] = "112x84",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    rig: Annotated[Rig, typer.Option(help="mixed: even clips static rigs, odd clips moving (hand-held) rigs.")]
        = Rig.mixed,
    image_format: Annotated[ImageFormat, typer.Option(help="png image folders (lossless) or mp4 videos.")]
        = ImageFormat.png,
    fps: Annotated[float, typer.Option(help="Frame rate recorded for the clips.")] = 30.0,
    workers: Annotated[int, typer.Option(help="Processes rendering in parallel.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace clips page4d wrote before.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Render N procedural multi-camera dynamic scenes with exact depth, cameras and dynamic masks."""
    console = Console(stderr=True)
    from page4d_cli.data.synth import SynthOptions, parse_size, synth_clips

    width, height = parse_size(size)
    options = SynthOptions(clips=clips, cameras=cameras, frames=frames, width=width, height=height, seed=seed,
                           rig=rig.value, fps=fps, image_format=image_format.value, overwrite=overwrite,
                           workers=workers)
    started = time.perf_counter()
    with _progress(console, "rendering", quiet) as bars:
        task = bars.add_task("synth", total=clips)
        paths = synth_clips(out, options, progress=lambda done, total: bars.update(task, completed=done))
    seconds = time.perf_counter() - started
    typer.echo(f"wrote {len(paths)} clips ({cameras} cameras x {frames} frames, {width}x{height}) to {out} "
               f"in {seconds:.1f} s")


@app.command("check")
def check_cmd(
    path: Annotated[Path, typer.Argument(help="A clip, a folder of clips, or a text file listing clips.",
                                         show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Validate ground-truth clips: one line per problem naming the file; exit 1 if any."""
    console = Console()
    from page4d_cli.data.check import check_clips

    reports = check_clips(path)
    problems = [problem for report in reports for problem in report.problems]
    if as_json:
        typer.echo(json.dumps([{"clip": str(r.clip), "ok": r.ok, "cameras": r.num_cameras, "frames": r.num_frames,
                                "masks": r.has_masks, "problems": r.problems} for r in reports], indent=2))
    else:
        for problem in problems:
            console.print(f"[red]problem:[/] {escape(problem)}", soft_wrap=True, highlight=False)
        bad = sum(not r.ok for r in reports)
        verdict = "[green]ok[/]" if not bad else f"[red]{bad} with problems[/]"
        console.print(f"{len(reports)} clip{'s' if len(reports) != 1 else ''} checked: {verdict} "
                      f"({len(problems)} problem{'s' if len(problems) != 1 else ''})", highlight=False)
    if problems:
        raise typer.Exit(1)
