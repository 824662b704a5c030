"""One definition of every ``page4d reconstruct`` option: its default, its choices and its check.

The command line (``commands/reconstruct.py``) builds its defaults and choices from the constants
here; the library validates each group ONCE, in the constructor of its option object:

- :class:`ReadOptions`: what ``read_clip`` samples and how frames reach the network size;
- :class:`NetworkOptions`: which network, weights and device, and how passes are windowed;
- the export group is ``write_outputs.ExportOptions`` with its ``export.PointFilter`` (their
  constructors check with :func:`check_point_filter` and :func:`check_map_format` from here).

``ReconstructOptions`` (``pipeline/reconstruct.py``) keeps the flat, CLI-shaped spelling and builds
the three groups when it is constructed, so a bad option fails before any file is read. This module
imports nothing heavy (no torch, numpy or OpenCV): ``page4d --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from models.checks import Checks
from models.config import PRESETS, Page4DConfig  # no torch: the network's structure as plain dataclasses
from models.errors import Page4DError
from page4d_cli.pipeline.errors import InputError

# ----------------------------------------------------------------------------- reading
DEFAULT_FRAMES = 24  # T instants, spread evenly over the clip
ALL_FRAMES = "all"  # --frames all: every frame of the span (at --stride); frames=None in the library
PATCH = Page4DConfig.patch_size  # the network's patch size (every preset's): widths are multiples of it
NETWORK_WIDTH = Page4DConfig.img_size  # the width the network was trained at (518 = 37 x 14)
MODES = ("crop", "pad")
DEFAULT_MODE = "crop"
# ----------------------------------------------------------------------------- network
DEFAULT_DEVICE = "auto"
PRESET_NAMES = tuple(PRESETS)  # full, small, tiny: the network sizes models/config.py defines
DEFAULT_PRESET = "full"
WEIGHT_SOURCES = ("auto", "random")
DEFAULT_WEIGHTS = "auto"
DEFAULT_MAX_IMAGES_PER_PASS = 128  # 24 instants x 4 cameras in one pass (+ room); ~40 GB peak for "full" at 518
DEFAULT_OVERLAP = 2  # instants shared by consecutive windows
DEFAULT_SEED = 0
# ----------------------------------------------------------------------------- export
# VGGT's point-cloud viewer (facebookresearch/vggt demo_viser.py, --conf_threshold default 25.0)
# drops the lowest 25 % of confidences by default; its Gradio demo starts its slider at 50 %.
DEFAULT_CONF_PERCENTILE = 25.0
DEFAULT_EDGE_REL_THRESHOLD = 0.05  # relative depth jump that marks a discontinuity
POINTS_FROM = ("depth", "head")
DEFAULT_POINTS_FROM = "depth"  # VGGT's default: depth + cameras, not the point head
MAP_FORMATS = ("png", "npy", "exr")
DEFAULT_DEPTH_FORMAT = "png"  # 16-bit, with the scale in cameras.json
MASK_MODES = ("binary", "probability")
COLMAP_FORMATS = ("text", "bin")  # COLMAP's .txt or .bin model files (points3D.ply is written with both)
DEFAULT_COLMAP_FORMAT = "text"
DEFAULT_COLMAP_FRAME = 0  # instant t of the COLMAP model
DEFAULT_COLMAP_MAX_POINTS = 500_000  # even random subsample above this; 0 = every point

check = Checks(InputError)


def _at_least(flag: str, value: Optional[int], minimum: int, why: str) -> None:
    check.option(value is None or (int(value) == value and value >= minimum), flag, value,
                 f"must be an integer of at least {minimum} ({why})")


def parse_frames(text: str) -> Optional[int]:
    """``--frames`` as typed: a number of instants, or ``all`` (None: every frame of the span)."""
    if str(text).strip().lower() == ALL_FRAMES:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--frames {text}: give a number of instants (e.g. {DEFAULT_FRAMES}) or "
                         f"'{ALL_FRAMES}' for every frame") from None


def format_frames(frames: Optional[int]) -> str:
    """The ``--frames`` value that gives ``frames`` (inverse of :func:`parse_frames`)."""
    return ALL_FRAMES if frames is None else str(frames)


def check_network_width(width: int, error: type[Page4DError] = InputError) -> None:
    """``--size``: ``error`` unless ``width`` is a multiple of 14 (the network's patch size), at least 28.

    ``error``: the caller's exception class (training raises its own); the rule and its words are these."""
    if int(width) != width or width < 2 * PATCH or width % PATCH:
        lower = max(2 * PATCH, int(width) // PATCH * PATCH)
        raise error(f"--size {width}: the network width must be a multiple of {PATCH} and at least "
                         f"{2 * PATCH}; use e.g. {lower} or {lower + PATCH} (default {NETWORK_WIDTH})")


def check_mode(mode: str, error: type[Page4DError] = InputError) -> None:
    """``--mode``: one of ``MODES`` (``error``: the caller's exception class, as above)."""
    Checks(error).option_choice("--mode", mode, MODES)


def default_network_width(camera_width: int) -> int:
    """``--size`` when not given: the network's width (518), or the camera's width rounded down to a
    multiple of 14 when it is narrower: a small input is never upsampled unless ``--size`` asks for it."""
    return max(2 * PATCH, min(NETWORK_WIDTH, int(camera_width) // PATCH * PATCH))


def check_map_format(fmt: Optional[str], flag: str = "--depth-format") -> None:
    if fmt is not None:
        check.option_choice(flag, fmt, MAP_FORMATS)


def check_colmap(fmt: str, max_points: int) -> None:
    """``--colmap-format`` and ``--colmap-max-points`` (0 = no cap)."""
    check.option_choice("--colmap-format", fmt, COLMAP_FORMATS)
    _at_least("--colmap-max-points", max_points, 0, "0 keeps every point")


def check_point_filter(conf_percentile: Optional[float], conf_threshold: Optional[float],
                       voxel: Optional[float], points_from: str) -> None:
    """The checks of the point filter (``--conf-percentile``, ``--voxel``, ``--points-from``)."""
    if conf_percentile is not None and not 0 <= conf_percentile < 100:
        raise InputError(f"--conf-percentile {conf_percentile:g}: must be in [0, 100) (the share of "
                         "lowest-confidence points dropped)")
    if voxel is not None and not voxel > 0:
        raise InputError(f"--voxel {voxel:g}: must be > 0 (world units), or leave it out")
    check.option_choice("--points-from", points_from, POINTS_FROM)
    if conf_threshold is not None and conf_threshold != conf_threshold:  # NaN
        raise InputError("--conf-threshold nan: give a number")


@dataclass(frozen=True)
class ReadOptions:
    """What ``read_clip`` samples and how each frame is brought to the network size (checked here)."""

    frames: Optional[int] = DEFAULT_FRAMES  # None = every frame of [start, end) at stride
    start: Optional[int] = None
    end: Optional[int] = None
    stride: Optional[int] = None
    ref_camera: Optional[str] = None
    size: Optional[int] = None  # None: NETWORK_WIDTH, or less for a narrower camera (never upsampled)
    mode: str = DEFAULT_MODE
    masks: Optional[Path] = None
    auto_masks: bool = False

    def __post_init__(self) -> None:
        _at_least("--frames", self.frames, 1, "instants to sample; or --frames all")
        _at_least("--start", self.start, 0, "a frame number")
        _at_least("--stride", self.stride, 1, "take every n-th frame")
        if self.end is not None and self.end <= (self.start or 0):
            raise InputError(f"--end {self.end}: must be after --start ({self.start or 0}); it is exclusive")
        if self.size is not None:
            check_network_width(self.size)
        check_mode(self.mode)
        if self.masks is not None and self.auto_masks:
            raise InputError("--masks and --auto-masks: choose one (external masks, or estimated ones)")


@dataclass(frozen=True)
class NetworkOptions:
    """Which network, weights and device, and how the clip is split into passes (checked here)."""

    device: str = DEFAULT_DEVICE
    preset: str = DEFAULT_PRESET
    weights: str = DEFAULT_WEIGHTS
    pi3: Optional[Path] = None
    page4d: Optional[Path] = None
    finetuned: Optional[Path] = None
    max_images_per_pass: int = DEFAULT_MAX_IMAGES_PER_PASS
    overlap: int = DEFAULT_OVERLAP
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        check.option_choice("--preset", self.preset, PRESET_NAMES)
        check.option_choice("--weights", self.weights, WEIGHT_SOURCES)
        _at_least("--max-images-per-pass", self.max_images_per_pass, 1, "images per network pass")
        _at_least("--overlap", self.overlap, 1, "windows are aligned on shared instants")
        if not isinstance(self.device, str) or not self.device:
            raise InputError(f"--device {self.device!r}: use auto, cpu, cuda, cuda:N or mps")
