"""``reconstruct``: a folder of synchronized cameras in, a complete reconstruction folder out.

This is the library form of ``page4d reconstruct`` (the command only parses options and prints)::

    from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct
    result = reconstruct("cams/", ReconstructOptions(frames=24, preset="full", out=Path("out/cams")))

Stages, in order (each timed in run.json):

1. check the output folder (an existing one without ``overwrite`` fails before anything slow),
   resolve the weights (``WeightsNotFound`` before anything slow), pick the device;
2. ``read``: discover the cameras, sample T instants, decode and preprocess (input errors surface
   here, before the weights are loaded: reading is cheap next to loading gigabytes);
3. ``load``: build the network and fill it (random init with ``weights="random"``);
4. ``network``: one forward pass, or overlapping windows when T x V > ``max_images_per_pass``;
5. ``stitch``: windows brought into window 0's frame (similarity per window, ``align.py``);
6. ``export``: every file written into a temporary folder renamed onto the target at the end, so a
   failure or Ctrl-C leaves no output folder (``output_dir.atomic_output_dir``).

Errors meant for the user derive from ``models.errors.Page4DError`` and have one-line messages;
anything else is a bug. run.json is assembled by ``records.build_run_info``; progress goes to a
``types.Reporter``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from models.errors import Page4DError
from page4d_cli.pipeline import export
from page4d_cli.pipeline.align import WindowStitcher, plan_windows, slice_clip_batch
from page4d_cli.pipeline.decode import instant_frames
from page4d_cli.pipeline.device import DevicePolicy, peak_memory, reset_peak_memory, select_device
from page4d_cli.pipeline.errors import InputError, PathLike
from page4d_cli.pipeline.feedback import auto_mask_warnings, empty_point_warnings, write_auto_masks
from page4d_cli.pipeline.masks import check_masks_dir
from page4d_cli.pipeline.options import (
    DEFAULT_COLMAP_FORMAT,
    DEFAULT_COLMAP_FRAME,
    DEFAULT_COLMAP_MAX_POINTS,
    DEFAULT_CONF_PERCENTILE,
    DEFAULT_DEPTH_FORMAT,
    DEFAULT_DEVICE,
    DEFAULT_EDGE_REL_THRESHOLD,
    DEFAULT_FRAMES,
    DEFAULT_MAX_IMAGES_PER_PASS,
    DEFAULT_MODE,
    DEFAULT_OVERLAP,
    DEFAULT_POINTS_FROM,
    DEFAULT_PRESET,
    DEFAULT_SEED,
    DEFAULT_WEIGHTS,
    NetworkOptions,
    ReadOptions,
)
from page4d_cli.pipeline.output_dir import (
    DISK_FULL_ERRNOS,
    OutputDirError,
    atomic_output_dir,
    check_free_space,
    check_output_dir,
    disk_full_error,
    has_room,
    sweep_stale_siblings,
)
from page4d_cli.pipeline.output_size import estimate_output_bytes
from page4d_cli.pipeline.predict import NetworkPredictor, network_warnings_to, repair_intrinsics
from page4d_cli.pipeline.read_clip import read_clip
from page4d_cli.pipeline.records import build_run_info, write_run_json
from page4d_cli.pipeline.types import ClipBatch, Prediction, Reporter
from page4d_cli.pipeline.world_frame import rebase_on_reference, to_input_order
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction

__all__ = ["ReconstructOptions", "ReconstructResult", "Reporter", "reconstruct",
           "default_output_dir", "load_network"]

PROVENANCE_FILE = "weights_provenance.json"


@dataclass
class ReconstructOptions:
    """Every option of ``page4d reconstruct`` (same names, ``-`` -> ``_``; defaults are the CLI's)."""

    # reading
    frames: Optional[int] = DEFAULT_FRAMES  # T, spread evenly over [start, end); None = every frame of the span
    start: Optional[int] = None
    end: Optional[int] = None
    stride: Optional[int] = None
    ref_camera: Optional[str] = None
    size: Optional[int] = None  # network width, multiple of 14; None = 518 or less (never upsample)
    mode: str = DEFAULT_MODE  # crop | pad
    masks: Optional[Path] = None  # external dynamic masks, same layout as the cameras
    auto_masks: bool = False
    # output
    out: Optional[Path] = None  # None = ./page4d_out/<input folder name>
    overwrite: bool = False
    # network
    device: str = DEFAULT_DEVICE  # auto | cpu | cuda | cuda:N | mps
    preset: str = DEFAULT_PRESET  # full | small | tiny
    weights: str = DEFAULT_WEIGHTS  # auto | random
    pi3: Optional[Path] = None
    page4d: Optional[Path] = None
    finetuned: Optional[Path] = None  # a `page4d train` run overlaid as stage 4 (weights="auto": a registered one)
    allow_missing: bool = False  # initialise, with a warning, tensors a file's layout has but the file lacks
    max_images_per_pass: int = DEFAULT_MAX_IMAGES_PER_PASS
    overlap: int = DEFAULT_OVERLAP
    seed: int = DEFAULT_SEED  # random initialisation (weights="random" or parts without a file)
    # points and maps
    conf_percentile: Optional[float] = None  # None = 25 (VGGT's viewer) unless conf_threshold is given
    conf_threshold: Optional[float] = None
    edge_filter: bool = True
    voxel: Optional[float] = None
    points_from: str = DEFAULT_POINTS_FROM  # depth | head
    depth_format: str = DEFAULT_DEPTH_FORMAT  # png | npy | exr
    confidence: bool = False  # also write confidence maps (same format as depth)
    colmap: bool = False
    colmap_frame: int = DEFAULT_COLMAP_FRAME  # instant t of the COLMAP model
    colmap_format: str = DEFAULT_COLMAP_FORMAT  # text | bin
    colmap_max_points: int = DEFAULT_COLMAP_MAX_POINTS  # 0 = every point
    preview: bool = True  # preview/ pictures (overview, depth video, trajectory, input frames); page4d_cli.preview
    # recorded in run.json; the CLI passes the real command line
    command_line: Optional[str] = None

    def __post_init__(self) -> None:
        """Every option is checked here, when the options are made (``InputError``, one line naming it)."""
        self.read_options()
        self.network_options()
        self.export_options()

    def read_options(self) -> ReadOptions:
        return ReadOptions(frames=self.frames, start=self.start, end=self.end, stride=self.stride,
                           ref_camera=self.ref_camera, size=self.size, mode=self.mode, masks=self.masks,
                           auto_masks=self.auto_masks)

    def network_options(self) -> NetworkOptions:
        return NetworkOptions(device=self.device, preset=self.preset, weights=self.weights, pi3=self.pi3,
                              page4d=self.page4d, finetuned=self.finetuned,
                              max_images_per_pass=self.max_images_per_pass, overlap=self.overlap, seed=self.seed)

    def point_filter(self) -> export.PointFilter:
        if self.conf_percentile is not None and self.conf_threshold is not None:
            raise InputError("--conf-percentile and --conf-threshold: choose one (a share of points to drop, "
                             "or an absolute minimum confidence)")
        percentile = DEFAULT_CONF_PERCENTILE if self.conf_percentile is None else self.conf_percentile
        return export.PointFilter(conf_percentile=percentile, conf_threshold=self.conf_threshold,
                                  edge_rel_threshold=DEFAULT_EDGE_REL_THRESHOLD if self.edge_filter else None,
                                  voxel=self.voxel, points_from=self.points_from)

    def export_options(self) -> ExportOptions:
        return ExportOptions(point_filter=self.point_filter(), depth_format=self.depth_format,
                             confidence_format=self.depth_format if self.confidence else None,
                             colmap_instant=self.colmap_frame if self.colmap else None,
                             colmap_format=self.colmap_format, colmap_max_points=self.colmap_max_points)


@dataclass
class ReconstructResult:
    """What a run produced (everything is also in ``out_dir/run.json``)."""

    out_dir: Path
    num_instants: int
    num_cameras: int
    camera_names: list[str]
    windows: list[tuple[int, int]]
    timings_s: dict[str, float]
    warnings: list[str]
    files: dict  # export summary per output kind (points, depth, masks, trajectory, colmap, ...)
    run_record: dict = field(repr=False, default_factory=dict)


def default_output_dir(input_dir: PathLike) -> Path:
    """``./page4d_out/<input folder name>`` (relative to the current directory)."""
    name = Path(input_dir).expanduser().absolute().resolve().name or "clip"
    return Path("page4d_out") / name


def check_options(options: ReconstructOptions) -> tuple[ReadOptions, NetworkOptions, ExportOptions]:
    """The three checked option groups (built again: fields may have changed since construction), and the
    checks that look at the disk (the masks folder); ``InputError`` before any work."""
    groups = options.read_options(), options.network_options(), options.export_options()
    if options.masks is not None:
        check_masks_dir(options.masks)
    return groups


def plan_passes(num_instants: int, num_cameras: int, options: ReconstructOptions) -> list[tuple[int, int]]:
    """Windows of instants, one per forward pass; ``InputError`` when the limits cannot be met."""
    limit, overlap = options.max_images_per_pass, options.overlap
    if num_instants * num_cameras <= limit:
        return [(0, num_instants)]
    per_pass = limit // num_cameras
    if per_pass <= overlap:
        need = num_cameras * (overlap + 1)
        raise InputError(f"--max-images-per-pass {limit}: {num_instants} instants x {num_cameras} cameras need "
                         f"windows of more than --overlap {overlap} instants, i.e. at least {need} images per "
                         f"pass; raise it to {need} or more, or lower --overlap")
    return plan_windows(num_instants, per_pass, overlap)


def load_network(options: ReconstructOptions, selection, policy: DevicePolicy,
                 finetuned: Optional[Path] = None) -> tuple[torch.nn.Module, object]:
    """The network on ``policy.device`` and its load report (None for random weights without a run).

    Random init is seeded (``options.seed``) without disturbing the caller's global RNG; ``finetuned``
    (a training run) is overlaid as stage 4.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        if selection.random and finetuned is None:
            from models.vggt import VGGT
            return VGGT.from_preset(options.preset).to(policy.device).eval(), None
        from models.loading import load_model
        return load_model(selection.pi3_path, selection.page4d_path, preset=options.preset,
                          dtype=torch.float32, device=str(policy.device), finetuned=finetuned,
                          allow_missing=options.allow_missing)


def run_network(predictor: NetworkPredictor, batch: ClipBatch, windows: list[tuple[int, int]],
                reporter: Reporter) -> tuple[Prediction, list, int, float]:
    """One forward pass per window, each stitched in as soon as it is done (``WindowStitcher``: the
    windows' predictions are never all held at once), reporting progress over all of them.

    Returns the stitched prediction, the window alignments, how many images needed
    ``repair_intrinsics`` and the seconds spent stitching.
    """
    units = predictor.units_per_pass
    total = units * len(windows)
    reporter.stage("network", 0, total)  # the stage starts now: its ETA counts from here
    stitcher = WindowStitcher(windows)
    repaired = 0
    stitch_seconds = 0.0
    for k, (start, stop) in enumerate(windows):
        where = f"window {k + 1}/{len(windows)} (instants {start}-{stop - 1}) · " if len(windows) > 1 else ""

        def tick(done: int, _total: int, detail: str, base: int = k * units) -> None:
            reporter.stage("network", base + done, total, where + detail)

        window = batch if len(windows) == 1 else slice_clip_batch(batch, start, stop)
        prediction, count = repair_intrinsics(predictor(window, progress=tick))
        repaired += count
        clock = time.perf_counter()
        stitcher.add(prediction)
        del prediction
        stitch_seconds += time.perf_counter() - clock
        reporter.window_done(k + 1, len(windows), start, stop)
    prediction, alignments = stitcher.result()
    return prediction, alignments, repaired, stitch_seconds


def reconstruct(input_dir: PathLike, options: Optional[ReconstructOptions] = None,
                progress: Optional[Reporter] = None) -> ReconstructResult:
    """Run the whole pipeline (see the module docstring) and return where the outputs are.

    progress: receives stage progress, warnings and notices (the CLI draws them with Rich);
    None = silent. Raises a ``Page4DError`` (one line) for unusable input or options, and lets
    ``KeyboardInterrupt`` through (no output folder is left behind in either case).
    """
    from page4d_cli.weights.finetuned import resolve_with_finetuned

    options = ReconstructOptions() if options is None else options
    reporter = progress if progress is not None else Reporter()
    started = time.perf_counter()
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        reporter.warning(message)

    read_options, _, export_options = check_options(options)
    # --overwrite never replaces the input (or the masks) nor a folder page4d did not write.
    protect = [Path(input_dir)] + ([Path(options.masks)] if options.masks is not None else [])
    target = Path(options.out if options.out is not None else default_output_dir(input_dir)).expanduser().absolute()
    for note in sweep_stale_siblings(target):  # first: it may put back an output moved aside by a killed run
        warn(note)
    out_dir = check_output_dir(target, options.overwrite, protect)
    selection, finetuned, weight_notes = resolve_with_finetuned(options.weights, options.pi3, options.page4d,
                                                                options.finetuned, options.preset)
    for note in weight_notes:
        reporter.info(note)
    policy = select_device(options.device)
    reset_peak_memory(policy)

    timings: dict[str, float] = {}

    clock = time.perf_counter()
    reporter.stage("read", 0, None)  # the stage starts now (its total is known after discovering the cameras)
    batch = read_clip(input_dir, options=read_options, progress=lambda done, total: reporter.stage("read", done, total))
    timings["read"] = time.perf_counter() - clock
    for message in batch.warnings:
        warn(message)
    if selection.random and finetuned is None:
        warn("random weights (--weights random): the outputs show the pipeline works, not the scene")
    num_t, num_v = batch.frame_indices.shape
    if num_v == 1:
        warn(f"only one camera ({batch.cameras[0].name}): a monocular reconstruction; depth and poses come from "
             "one view over time, without a second viewpoint to fix the geometry")
    if options.colmap and options.colmap_frame >= num_t:
        raise InputError(f"--colmap-frame {options.colmap_frame}: the clip has {num_t} sampled instants "
                         f"(0..{num_t - 1}); choose one of those")
    windows = plan_passes(num_t, num_v, options)
    needed_bytes = estimate_output_bytes(batch, export_options)
    check_free_space(out_dir, needed_bytes)  # before the network, not after it
    for message in auto_mask_warnings(batch) if options.auto_masks else []:
        warn(message)
    if len(windows) > 1:
        reporter.info(f"{num_t} instants x {num_v} cameras exceed --max-images-per-pass "
                      f"{options.max_images_per_pass}: {len(windows)} overlapping windows of "
                      f"{windows[0][1] - windows[0][0]} instants, stitched into one frame")

    clock = time.perf_counter()
    reporter.stage("load", 0, None, f"{options.preset} network on {policy.device}")
    model, load_report = load_network(options, selection, policy, finetuned)
    for message in load_report.warnings if load_report is not None else []:  # e.g. --allow-missing gaps
        warn(message)
    timings["load"] = time.perf_counter() - clock
    reporter.stage("load", 1, 1, "done")

    clock = time.perf_counter()
    # The point head's map is only read by --points-from head: skipping it saves a third of the network.
    skip = () if options.points_from == "head" else ("point_head",)
    with network_warnings_to(warn):  # the network's NetworkWarnings: once each, to the reporter and run.json
        prediction, alignments, repaired, stitch_seconds = run_network(NetworkPredictor(model, policy, skip), batch,
                                                                       windows, reporter)
    if repaired:
        passes = sum(stop - start for start, stop in windows) * num_v
        warn(f"the network predicted a zero field of view (infinite focal length) for {repaired} of the {passes} "
             "images it saw; those use the median focal length of the others (a 60 degree view when none is valid)")
    skipped_as_neutral = model.aggregator.neutral_report()  # e.g. "streams identical: yes" (models/neutral.py)
    del model  # free the weights before the export allocates its own buffers
    timings["network"] = time.perf_counter() - clock - stitch_seconds

    clock = time.perf_counter() - stitch_seconds  # stitching happened window by window during the network stage
    # Outputs keep the input camera order; the reference camera at t = 0 is exactly the world frame.
    batch, prediction = to_input_order(batch, prediction)
    prediction = rebase_on_reference(prediction, batch.reference)
    timings["stitch"] = time.perf_counter() - clock

    clock = time.perf_counter()
    frames = instant_frames(batch, options.colmap_frame) if options.colmap else None
    try:
        with atomic_output_dir(out_dir, options.overwrite, protect) as tmp:
            written = [0, 0]  # files written, files to write (export_reconstruction's progress)

            def wrote(done: int, total: int) -> None:
                written[:] = [done, total]
                reporter.stage("write", done, total)

            files = export_reconstruction(tmp, prediction, batch, export_options, colmap_frames=frames,
                                          progress=wrote)
            if options.auto_masks and batch.ext_masks is not None:
                files["auto_masks"] = write_auto_masks(tmp, batch)
            if load_report is not None:
                load_report.write_json(tmp / PROVENANCE_FILE)
            for message in empty_point_warnings(files.get("points"), prediction, batch, export_options.point_filter):
                warn(message)
            timings["export"] = time.perf_counter() - clock
            if options.preview:  # part of the output: written before the folder is renamed into place
                from page4d_cli.preview import write_previews

                clock = time.perf_counter()
                reporter.stage("preview", 0, 1, "overview, depth video, trajectory")
                files["preview"] = write_previews(tmp, prediction, batch)
                reporter.stage("preview", 1, 1, "done")
                timings["preview"] = time.perf_counter() - clock
            timings["total"] = time.perf_counter() - started
            info = build_run_info(input_dir, options, batch, selection, load_report, policy, windows, alignments,
                                  timings, peak_memory(policy), files, warnings,
                                  provenance_file=PROVENANCE_FILE if load_report is not None else None,
                                  skipped_as_neutral=skipped_as_neutral)
            record = write_run_json(tmp, info)
    except OSError as exc:  # the temporary folder is removed by now
        if exc.errno in DISK_FULL_ERRNOS or not has_room(out_dir, needed_bytes):
            raise disk_full_error(exc, out_dir, needed_bytes) from None
        raise OutputDirError(f"--out {out_dir}: writing {exc.filename or 'the output'} failed ({exc.strerror or exc}); "
                             "nothing was written; check the disk and its permissions") from None
    except Exception as exc:  # a writer that reports a full disk without errno (ffmpeg, a C library)
        if isinstance(exc, Page4DError) or has_room(out_dir, needed_bytes):
            raise
        raise disk_full_error(exc, out_dir, needed_bytes) from None
    reporter.stage("write", written[0], written[1], "done")
    return ReconstructResult(out_dir=out_dir, num_instants=num_t, num_cameras=num_v,
                             camera_names=[cam.name for cam in batch.cameras], windows=list(windows),
                             timings_s=dict(timings), warnings=warnings, files=files, run_record=record)

