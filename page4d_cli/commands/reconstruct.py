"""``page4d reconstruct``: synchronized multi-camera video in, a 4D reconstruction folder out.

Thin shell over :func:`page4d_cli.pipeline.reconstruct.reconstruct`: parse the options, draw progress
with Rich, print warnings (yellow), errors (one red line, exit code 1) and a summary. Ctrl-C exits
with 130 and leaves no output folder. The pipeline (torch, OpenCV) is imported only when the command
runs, so ``page4d --help`` stays fast.
"""

from __future__ import annotations

import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeRemainingColumn)

from page4d_cli.console import fail

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
STAGE_LABELS = {"read": "decoding", "load": "loading network", "network": "network", "write": "writing"}


class Mode(str, Enum):
    crop = "crop"
    pad = "pad"


class Preset(str, Enum):
    full = "full"
    small = "small"
    tiny = "tiny"


class WeightsSpec(str, Enum):
    auto = "auto"
    random = "random"


class PointsFrom(str, Enum):
    depth = "depth"
    head = "head"


class MapFormat(str, Enum):
    png = "png"
    npy = "npy"
    exr = "exr"


class RichReporter:
    """Draws ``reconstruct``'s stages as Rich progress bars (with ETA) and prints its notices."""

    def __init__(self, console: Console, show_progress: bool = True, show_info: bool = True) -> None:
        self.console = console
        self.show_info = show_info
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description:<15}"), BarColumn(bar_width=24),
                             MofNCompleteColumn(), TextColumn("eta"),
                             TimeRemainingColumn(compact=True, elapsed_when_finished=True),
                             TextColumn("[dim]{task.fields[detail]}"), console=console, disable=not show_progress)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "RichReporter":
        return self

    def __exit__(self, *exc) -> None:
        if self.tasks:
            self.bars.stop()

    def stage(self, name: str, done: float, total: Optional[float], detail: str = "") -> None:
        if not self.tasks:
            self.bars.start()  # on first use: an error before any stage leaves no empty progress block
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(STAGE_LABELS.get(name, name), total=total, detail="")
        self.bars.update(self.tasks[name], completed=done, total=total, detail=detail)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)

    def info(self, message: str) -> None:
        if self.show_info:
            self.console.print(f"[cyan]note:[/] {escape(message)}", soft_wrap=True, highlight=False)


def _fail(console: Console, message: str, code: int = EXIT_ERROR) -> None:
    """One red line on stderr (no traceback), then exit with ``code``."""
    fail(message, code, console)


def _command_line() -> Optional[str]:
    """The command as typed when run through the ``page4d`` script; None otherwise (e.g. in tests),
    so the library records the equivalent command built from the options."""
    if Path(sys.argv[0]).stem == "page4d":
        return shlex.join(["page4d", *sys.argv[1:]])
    return None


def _summary(result) -> str:
    """A few lines: where the outputs are, what was reconstructed, how long each stage took."""
    names = ", ".join(result.camera_names)
    passes = len(result.windows)
    timing = " · ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.timings_s.items())
    kinds = ", ".join(sorted(result.files))
    return "\n".join([
        f"[bold green]done:[/] {escape(str(result.out_dir))}",
        f"  {result.num_instants} instants x {result.num_cameras} cameras ({escape(names)}), "
        f"{passes} network pass{'es' if passes > 1 else ''}",
        f"  outputs: {kinds}, cameras.json, run.json",
        f"  {timing}",
    ])


_HELP = "\n\n".join([
    "Reconstruct a synchronized multi-camera clip in 4D with the PAGE-4D network.",
    "INPUT_DIR holds one video per camera (cam0.mp4, cam1.mp4, ...) or one image folder per camera. "
    "T instants are sampled; every camera contributes its frame nearest in time. Outputs: per-instant "
    "point clouds, per-camera depth maps (original resolution), dynamic masks, TUM trajectories, "
    "cameras.json and run.json (optionally confidence maps and a COLMAP model).",
])


def reconstruct_cmd(
    input_dir: Annotated[Path, typer.Argument(help="Folder with one video (or image folder) per camera.",
                                              show_default=False)],
    frames: Annotated[int, typer.Option("--frames", help="Number of instants T, spread evenly over the clip.")] = 24,
    start: Annotated[Optional[int], typer.Option(help="First frame (of the reference camera).")] = None,
    end: Annotated[Optional[int], typer.Option(help="End frame, exclusive (reference camera).")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Take every n-th frame (the first T of them).")] = None,
    ref_camera: Annotated[Optional[str], typer.Option(
        help="Camera that defines the world frame (default: the first by name).")] = None,
    size: Annotated[int, typer.Option(help="Network input width in pixels (multiple of 14).")] = 518,
    mode: Annotated[Mode, typer.Option(help="crop (cover + centre crop) or pad (fit + white border).")] = Mode.crop,
    masks: Annotated[Optional[Path], typer.Option(
        help="External dynamic masks: MASKS/<camera>/000.png ... (or <camera>.mp4), non-zero = dynamic.")] = None,
    auto_masks: Annotated[bool, typer.Option(
        "--auto-masks", help="Estimate dynamic masks by background subtraction (static cameras).")] = False,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder (default: ./page4d_out/<input folder name>).", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    preset: Annotated[Preset, typer.Option(help="Network size (pretrained weights need full).")] = Preset.full,
    weights: Annotated[WeightsSpec, typer.Option(
        help="auto: the registered weights (page4d weights fetch); random: untrained smoke run.")] = WeightsSpec.auto,
    pi3: Annotated[Optional[Path], typer.Option(help="Pi3 checkpoint (overrides the registry).")] = None,
    page4d: Annotated[Optional[Path], typer.Option(help="PAGE-4D checkpoint (overrides the registry).")] = None,
    max_images_per_pass: Annotated[int, typer.Option(
        help="Most images (instants x cameras) per network pass; longer clips run in overlapping windows.")] = 128,
    overlap: Annotated[int, typer.Option(help="Instants shared by consecutive windows.")] = 2,
    conf_percentile: Annotated[Optional[float], typer.Option(
        help="Drop this percentage of lowest-confidence points (default 25).", show_default=False)] = None,
    conf_threshold: Annotated[Optional[float], typer.Option(
        help="Drop points below this absolute confidence (instead of --conf-percentile).")] = None,
    no_edge_filter: Annotated[bool, typer.Option(
        "--no-edge-filter", help="Keep points at depth discontinuities.")] = False,
    voxel: Annotated[Optional[float], typer.Option(help="Voxel size for point downsampling (world units).")] = None,
    points_from: Annotated[PointsFrom, typer.Option(
        help="Points from depth + cameras, or from the point head.")] = PointsFrom.depth,
    depth_format: Annotated[MapFormat, typer.Option(help="Depth map files: 16-bit png, npy or exr.")] = MapFormat.png,
    confidence: Annotated[bool, typer.Option("--confidence", help="Also write confidence maps.")] = False,
    colmap: Annotated[bool, typer.Option("--colmap", help="Also write a COLMAP text model of one instant.")] = False,
    colmap_frame: Annotated[int, typer.Option(help="Instant t of the COLMAP model.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.", hidden=True)] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
) -> None:
    """See _HELP."""
    err = Console(stderr=True)
    # FFmpeg prints its own diagnostics for unreadable videos; the pipeline's one-line error says it all.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct, user_errors
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    options = ReconstructOptions(
        frames=frames, start=start, end=end, stride=stride, ref_camera=ref_camera, size=size, mode=mode.value,
        masks=masks, auto_masks=auto_masks, out=out, overwrite=overwrite, device=device, preset=preset.value,
        weights=weights.value, pi3=pi3, page4d=page4d, max_images_per_pass=max_images_per_pass, overlap=overlap,
        seed=seed, conf_percentile=conf_percentile, conf_threshold=conf_threshold, edge_filter=not no_edge_filter,
        voxel=voxel, points_from=points_from.value, depth_format=depth_format.value, confidence=confidence,
        colmap=colmap, colmap_frame=colmap_frame, command_line=_command_line(),
    )
    reporter = RichReporter(err, show_progress=not quiet, show_info=not quiet)
    try:
        with reporter:
            result = reconstruct(input_dir, options, progress=reporter)
    except KeyboardInterrupt:
        _fail(err, "interrupted; no output was written", EXIT_INTERRUPTED)
    except user_errors() as exc:
        _fail(err, str(exc))
    except MemoryError as exc:  # torch.OutOfMemoryError (CUDA) is a subclass of RuntimeError, see below
        _fail(err, f"out of memory ({exc or 'host RAM'}); lower --max-images-per-pass, --size or --frames")
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        _fail(err, f"out of memory on {device}; lower --max-images-per-pass, --size or --frames")
    if not quiet:
        Console().print(_summary(result), highlight=False, soft_wrap=True)
