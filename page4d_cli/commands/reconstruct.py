"""``page4d reconstruct``: synchronized multi-camera video in, a 4D reconstruction folder out.

Thin shell over :func:`page4d_cli.pipeline.reconstruct.reconstruct`: parse the options, draw progress
with Rich, print warnings (yellow), errors (one red line, exit code 1) and a summary. Ctrl-C exits
with 130, SIGTERM with 143, and neither leaves an output folder (nor touches an existing one). The
pipeline (torch, OpenCV) is imported only when the command runs, so ``page4d --help`` stays fast.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from page4d_cli import signals
from page4d_cli.commands import summary
from page4d_cli.console import fail
from page4d_cli.pipeline import options as opt
from page4d_cli.reporters import make_reporter, plural

EXIT_ERROR = 1
OFF = "off"  # the default shown for on/off flags


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of ``values`` for Typer (which shows them as ``<a|b|c>``): the choices live in options.py."""
    return Enum(name, {value: value for value in values}, type=str)


Mode = _choices("Mode", opt.MODES)
Preset = _choices("Preset", opt.PRESET_NAMES)
WeightsSpec = _choices("WeightsSpec", opt.WEIGHT_SOURCES)
PointsFrom = _choices("PointsFrom", opt.POINTS_FROM)
MapFormat = _choices("MapFormat", opt.MAP_FORMATS)
ColmapFormat = _choices("ColmapFormat", opt.COLMAP_FORMATS)


def _fail(console: Console, message: str, code: int = EXIT_ERROR) -> None:
    """One red line on stderr (no traceback), then exit with ``code``."""
    fail(message, code, console)


def _untouched(options) -> str:
    """What an interrupted run leaves: no output folder, or the previous one unchanged."""
    out = options.out if options.out is not None else None
    if options.overwrite and (out is None or Path(out).exists()):
        return "no output was written (an existing output folder is unchanged)"
    return "no output was written"


def _interrupted(console: Console, exc: BaseException, what_is_left: str) -> None:
    """One line for Ctrl-C (exit 130) or SIGTERM (exit 143); the temporary folder is already gone."""
    signum = signals.signal_of(exc) or signal.SIGINT
    signals.mark_reported()
    _fail(console, f"interrupted ({signals.NAMES.get(signum, signum)}); {what_is_left}", signals.exit_code(signum))


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
    pass_word = "network pass" if passes == 1 else "network passes"
    timing = " · ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.timings_s.items())
    kinds = ", ".join(sorted(result.files))
    return "\n".join([
        f"[bold green]done:[/] {escape(str(result.out_dir))}",
        f"  {plural(result.num_instants, 'instant')} x {plural(result.num_cameras, 'camera')} ({escape(names)}), "
        f"{passes} {pass_word}",
        f"  outputs: {kinds}, cameras.json, run.json",
        f"  {timing}",
    ])


HELP = "\n\n".join([
    summary("reconstruct"),
    "INPUT_DIR holds one video per camera (cam0.mp4, cam1.mp4, ...) or one image folder per camera. "
    "T instants are sampled; every camera contributes its frame nearest in time. Outputs: per-instant "
    "point clouds, per-camera depth maps (original resolution), dynamic masks, TUM trajectories, "
    "cameras.json and run.json (optionally confidence maps and a COLMAP model).",
])


app = typer.Typer(add_completion=False)


@app.command("reconstruct", help=HELP)
def reconstruct_cmd(
    input_dir: Annotated[Path, typer.Argument(help="Folder with one video (or image folder) per camera.",
                                              show_default=False)],
    frames: Annotated[str, typer.Option("--frames", metavar="<int|all>", show_default=True, help=(
        "Number of instants T, spread evenly over the clip; 'all' for every frame (at --stride)."))] = str(
        opt.DEFAULT_FRAMES),
    start: Annotated[Optional[int], typer.Option(
        help="First frame (of the reference camera).", show_default="0")] = None,
    end: Annotated[Optional[int], typer.Option(
        help="End frame, exclusive (reference camera).", show_default="the end of the shortest camera")] = None,
    stride: Annotated[Optional[int], typer.Option(
        help="Take every n-th frame (the first T of them).", show_default="none: --frames spread evenly")] = None,
    ref_camera: Annotated[Optional[str], typer.Option(
        help="Camera that defines the world frame.", show_default="the first by name")] = None,
    size: Annotated[Optional[int], typer.Option(
        help=f"Network input width in pixels (multiple of {opt.PATCH}); a larger value than the camera's width "
             "upsamples.", show_default=f"{opt.NETWORK_WIDTH}, or the camera's width rounded down to a multiple of "
        f"{opt.PATCH} when narrower (no upsampling; at least {2 * opt.PATCH})")] = None,  # opt.default_network_width
    mode: Annotated[Mode, typer.Option(help="crop (cover + centre crop) or pad (fit + white border).")] = (
        Mode(opt.DEFAULT_MODE)),
    masks: Annotated[Optional[Path], typer.Option(
        help="External dynamic masks: MASKS/<camera>/000.png ... (or <camera>.mp4), non-zero = dynamic.",
        show_default="none")] = None,
    auto_masks: Annotated[bool, typer.Option(
        "--auto-masks", show_default=OFF,
        help="Estimate dynamic masks by background subtraction (static cameras).")] = False,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder.", show_default="./page4d_out/<input folder name>")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", show_default=OFF, help=(
        "Replace an existing page4d output folder (one holding page4d's run.json; never the input folder, "
        "a folder containing it or the current folder), once the new output is complete."))] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = opt.DEFAULT_DEVICE,
    preset: Annotated[Preset, typer.Option(help="Network size (pretrained weights need full).")] = (
        Preset(opt.DEFAULT_PRESET)),
    weights: Annotated[WeightsSpec, typer.Option(
        help="auto: the registered weights (page4d weights fetch); random: untrained smoke run.")] = (
        WeightsSpec(opt.DEFAULT_WEIGHTS)),
    pi3: Annotated[Optional[Path], typer.Option(
        help="Pi3 checkpoint (overrides the registry).", show_default="the registered one")] = None,
    page4d: Annotated[Optional[Path], typer.Option(
        help="PAGE-4D checkpoint (overrides the registry).", show_default="the registered one")] = None,
    finetuned: Annotated[Optional[Path], typer.Option(
        help="A `page4d train` run (folder or weights file) overlaid on the weights as stage 4.",
        show_default="the registered one, if it trained this --preset")] = None,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", show_default=OFF,
        help="Initialise, with a warning, tensors a weights file's layout has but the file "
        "lacks (a truncated file); without it that is an error.")] = False,
    max_images_per_pass: Annotated[int, typer.Option(
        help="Most images (instants x cameras) per network pass; longer clips run in overlapping windows.")] = (
        opt.DEFAULT_MAX_IMAGES_PER_PASS),
    overlap: Annotated[int, typer.Option(help="Instants shared by consecutive windows.")] = opt.DEFAULT_OVERLAP,
    conf_percentile: Annotated[Optional[float], typer.Option(
        help="Drop this percentage of lowest-confidence points.", show_default=f"{opt.DEFAULT_CONF_PERCENTILE:g}")] = None,
    conf_threshold: Annotated[Optional[float], typer.Option(
        help="Drop points below this absolute confidence (instead of --conf-percentile).", show_default="none")] = None,
    no_edge_filter: Annotated[bool, typer.Option(
        "--no-edge-filter", show_default=OFF, help="Keep points at depth discontinuities.")] = False,
    voxel: Annotated[Optional[float], typer.Option(
        help="Voxel size for point downsampling (world units).", show_default="none: every point")] = None,
    points_from: Annotated[PointsFrom, typer.Option(
        help="Points from depth + cameras, or from the point head.")] = PointsFrom(opt.DEFAULT_POINTS_FROM),
    depth_format: Annotated[MapFormat, typer.Option(help=(
        "Depth map files: 16-bit png, npy or exr (exr only with an OpenCV that can write it: checked before "
        "reading, the error names the formats that work)."))] = (
        MapFormat(opt.DEFAULT_DEPTH_FORMAT)),
    confidence: Annotated[bool, typer.Option(
        "--confidence", show_default=OFF, help="Also write confidence maps.")] = False,
    colmap: Annotated[bool, typer.Option("--colmap", show_default=OFF, help=(
        "Also write a COLMAP model of one instant (colmap/sparse/0, with points3D.ply)."))] = False,
    colmap_frame: Annotated[int, typer.Option(help="Instant t of the COLMAP model.")] = opt.DEFAULT_COLMAP_FRAME,
    colmap_format: Annotated[ColmapFormat, typer.Option(help="COLMAP model files: text (.txt) or bin (.bin).")] = (
        ColmapFormat(opt.DEFAULT_COLMAP_FORMAT)),
    colmap_max_points: Annotated[int, typer.Option(
        help="Most points in the COLMAP model (an even random subsample above it); 0 keeps every point.")] = (
        opt.DEFAULT_COLMAP_MAX_POINTS),
    no_preview: Annotated[bool, typer.Option("--no-preview", show_default=OFF, help=(
        "Skip preview/ (overview.png, depth.mp4, trajectory.png, and the input frames page4d view shows)."))] = False,
    view: Annotated[bool, typer.Option("--view", show_default=OFF, help=(
        "Open the result in Rerun when done, as `page4d view OUT` does (needs pip install 'page4d\\[view]')."))] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.", hidden=True)] = opt.DEFAULT_SEED,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", show_default=OFF, help="No progress bars or summary.")] = False,
) -> None:
    """See HELP."""
    err = Console(stderr=True)
    # FFmpeg prints its own diagnostics for unreadable videos; the pipeline's one-line error says it all.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct
    except BaseException as exc:  # noqa: BLE001 - an interrupted import may surface as ImportError
        if signals.signal_of(exc) is None or isinstance(exc, SystemExit):
            raise
        _interrupted(err, exc, "nothing was written")
    options = ReconstructOptions(
        frames=opt.parse_frames(frames), start=start, end=end, stride=stride, ref_camera=ref_camera, size=size, mode=mode.value,
        masks=masks, auto_masks=auto_masks, out=out, overwrite=overwrite, device=device, preset=preset.value,
        weights=weights.value, pi3=pi3, page4d=page4d, finetuned=finetuned, allow_missing=allow_missing,
        max_images_per_pass=max_images_per_pass, overlap=overlap,
        seed=seed, conf_percentile=conf_percentile, conf_threshold=conf_threshold, edge_filter=not no_edge_filter,
        voxel=voxel, points_from=points_from.value, depth_format=depth_format.value, confidence=confidence,
        colmap=colmap, colmap_frame=colmap_frame, colmap_format=colmap_format.value,
        colmap_max_points=colmap_max_points, preview=not no_preview, command_line=_command_line(),
    )
    if view:  # before the slow part: rerun-sdk and a display must be there
        from page4d_cli.view.session import ViewOptions, check_sink, import_rerun

        import_rerun()
        check_sink(ViewOptions())
    reporter = make_reporter(err, show_progress=not quiet, show_info=not quiet)
    try:
        with reporter:
            result = reconstruct(input_dir, options, progress=reporter)
    except KeyboardInterrupt as exc:
        _interrupted(err, exc, _untouched(options))
    # A Page4DError (bad input, weights, options) propagates to page4d_cli.main, which prints it.
    except MemoryError as exc:  # torch.OutOfMemoryError (CUDA) is a subclass of RuntimeError, see below
        _fail(err, f"out of memory ({exc or 'host RAM'}); lower --max-images-per-pass, --size or --frames")
    except RuntimeError as exc:
        if signals.received() is not None:  # e.g. an ImportError or a torch error raised by the interrupt
            _interrupted(err, exc, _untouched(options))
        if "out of memory" not in str(exc).lower():
            raise
        _fail(err, f"out of memory on {device}; lower --max-images-per-pass, --size or --frames")
    except Exception as exc:
        if signals.received() is not None:
            _interrupted(err, exc, _untouched(options))
        raise
    if not quiet:
        Console().print(_summary(result), highlight=False, soft_wrap=True)
    if view:
        from page4d_cli.commands.view import run_view

        run_view(result.out_dir, quiet=quiet)
