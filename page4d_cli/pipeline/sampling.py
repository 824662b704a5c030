"""Choose which frame of each camera makes up each of the T sampled instants.

Time is shared through the reference camera (camera 0): the options ``start``, ``end`` (exclusive)
and ``stride`` are frame numbers of camera 0, and sample t happens at camera 0's frame time
``i_t / fps_0``. Every other camera contributes its frame nearest to that time,
``round(i_t * fps_v / fps_0)``, so cameras with different frame rates stay aligned in time (with equal
rates this is simply the same frame number). When a frame rate is unknown (image folders) the frame
number is the time and all cameras are assumed to run at the same rate.

Only the span that every camera covers is used; cameras with different lengths produce a warning
naming the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from page4d_cli.pipeline.errors import InputError, WarningLog
from page4d_cli.pipeline.types import CameraInfo


@dataclass(frozen=True)
class SamplePlan:
    """The chosen samples. Rows are sampled instants (t), columns cameras (v)."""

    frame_indices: np.ndarray  # [T, V] int64: source frame index of each sample in its camera
    timestamps: np.ndarray  # [T, V] float64: seconds (index / fps), or the index when fps is unknown
    available: int  # frames of camera 0 inside the span common to all cameras


def _frame_rates(cameras: list[CameraInfo], warnings: WarningLog) -> Optional[np.ndarray]:
    """Per-camera fps as an array, or None when time must be the frame number."""
    rates = [cam.fps for cam in cameras]
    if all(rate is not None for rate in rates):
        return np.asarray(rates, dtype=np.float64)
    if any(rate is not None for rate in rates):
        unknown = ", ".join(cam.name for cam in cameras if cam.fps is None)
        warnings.add(f"frame rate unknown for {unknown}; matching cameras by frame number (assumes they "
                     f"all run at the same rate)")
    return None


def _nearest_frames(reference_indices: np.ndarray, rates: Optional[np.ndarray], num_cameras: int) -> np.ndarray:
    """[N] indices of camera 0 -> [N, V] index in every camera nearest to the same time."""
    if rates is None:
        return np.repeat(reference_indices[:, None], num_cameras, axis=1)
    ratio = rates / rates[0]  # [V]
    # floor(x + 0.5) rather than np.round: ties always go up, so the mapping is monotonic.
    return np.floor(reference_indices[:, None] * ratio[None, :] + 0.5).astype(np.int64)


def common_span(cameras: list[CameraInfo], warnings: Optional[WarningLog] = None) -> int:
    """Number of camera-0 frames whose matching frame exists in every camera."""
    warnings = WarningLog() if warnings is None else warnings
    rates = _frame_rates(cameras, warnings)
    counts = np.asarray([cam.num_frames for cam in cameras], dtype=np.int64)
    reference = np.arange(cameras[0].num_frames, dtype=np.int64)
    matched = _nearest_frames(reference, rates, len(cameras))
    inside = np.all(matched <= counts[None, :] - 1, axis=1)  # a prefix of True values
    return int(inside.sum())


def _choose_reference_indices(available: int, frames: Optional[int], start: Optional[int],
                              end: Optional[int], stride: Optional[int], reference_name: str,
                              shortest: str = "") -> np.ndarray:
    """``shortest``: names the camera that limits the common span (empty when all are equally long).

    ``frames`` >= 1 and ``stride`` >= 1 are checked once, by ``options.ReadOptions``; the checks here
    are the ones that need the clip (the span that exists)."""
    span_words = (f"{available} frames are available ({reference_name} frames 0..{available - 1}, the span "
                  f"common to all cameras{shortest})")
    first = 0 if start is None else int(start)
    stop = available if end is None else int(end)
    if not 0 <= first < available:
        raise InputError(f"--start {first}: out of range; {span_words}")
    if not first < stop <= available:
        raise InputError(f"--end {stop}: must be after --start ({first}) and at most {available} "
                         f"(exclusive); {span_words}")
    if stride is not None:
        candidates = np.arange(first, stop, int(stride), dtype=np.int64)
        if frames is None:
            return candidates
        if int(frames) > len(candidates):
            raise InputError(f"--frames {frames}: only {len(candidates)} frames are available with --stride "
                             f"{stride} between frames {first} and {stop - 1}; use --frames {len(candidates)} "
                             f"or fewer, or a smaller stride")
        return candidates[: int(frames)]
    if frames is None:
        return np.arange(first, stop, dtype=np.int64)
    count = int(frames)
    if count > stop - first:
        where = (f"the span common to all cameras is {reference_name} frames 0..{available - 1}{shortest}"
                 if (first, stop) == (0, available) else f"between frames {first} and {stop - 1}")
        raise InputError(f"--frames {count}: only {stop - first} frames are available ({where}); "
                         f"use --frames {stop - first} or fewer")
    # Evenly spaced over [first, stop - 1]; spacing >= 1 and floor(x + .5) keep them distinct.
    return np.floor(np.linspace(first, stop - 1, count) + 0.5).astype(np.int64)


def plan_samples(cameras: list[CameraInfo], frames: Optional[int] = None, start: Optional[int] = None,
                 end: Optional[int] = None, stride: Optional[int] = None,
                 warnings: Optional[WarningLog] = None) -> SamplePlan:
    """Pick T instants and, for each camera, the frame nearest to each instant.

    ``frames`` (T) spreads samples evenly over ``[start, end)``; ``stride`` takes every stride-th frame
    (the first ``frames`` of them when both are given); with neither, every frame of the span is used.
    Raises ``InputError`` when the options ask for more frames than exist.
    """
    warnings = WarningLog() if warnings is None else warnings
    rates = _frame_rates(cameras, warnings)
    available = common_span(cameras, WarningLog())
    counts = [cam.num_frames for cam in cameras]
    if len(set(counts)) > 1:
        listed = ", ".join(f"{cam.name}: {cam.num_frames}" for cam in cameras)
        warnings.add(f"cameras have different frame counts ({listed}); using the span common to all "
                     f"cameras ({available} frames of {cameras[0].name})")
    short = min(cameras, key=lambda cam: cam.num_frames)
    shortest = f"; {short.name} is the shortest with {short.num_frames} frames" if len(set(counts)) > 1 else ""
    reference = _choose_reference_indices(available, frames, start, end, stride, cameras[0].name, shortest)
    indices = _nearest_frames(reference, rates, len(cameras))
    if rates is None:
        timestamps = indices.astype(np.float64)
    else:
        timestamps = indices / rates[None, :]
        if len({round(float(rate), 2) for rate in rates}) > 1:
            listed = ", ".join(f"{cam.name}: {cam.fps:g} fps" for cam in cameras)
            offset_ms = 1000.0 * float(np.max(np.abs(timestamps - timestamps[:, :1])))
            warnings.add(f"cameras have different frame rates ({listed}); each sample uses every camera's "
                         f"frame nearest in time to {cameras[0].name}'s (at most {offset_ms:.1f} ms apart)")
    return SamplePlan(frame_indices=indices, timestamps=timestamps, available=available)
