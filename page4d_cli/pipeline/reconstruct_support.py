"""Pieces of ``reconstruct`` that are not the pipeline's flow: progress reporting, the errors meant for
the user, the COLMAP frames, and the content of run.json."""

from __future__ import annotations

import os
import shlex
import threading
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from page4d_cli.pipeline.decode import iter_frames
from page4d_cli.pipeline.device import DevicePolicy
from page4d_cli.pipeline.errors import PathLike
from page4d_cli.pipeline.types import ClipBatch, Prediction
from page4d_cli.pipeline.write_outputs import ExportOptions


class Reporter:
    """Receives what ``reconstruct`` has to say; this base class ignores it all (quiet library use).

    ``stage(name, done, total, detail)``: progress of a stage: "read" (decoded samples), "load"
    (total None while loading), "network" (forward-pass steps over all windows), "write" (files;
    called from a helper thread, see ``WriteWatcher``). ``warning``: a notice about the input or
    the run (one line). ``info``: how the run proceeds (e.g. windowing).
    """

    def stage(self, name: str, done: float, total: Optional[float], detail: str = "") -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def window_done(self, index: int, count: int, start: int, stop: int) -> None:
        """Network window ``index`` (1-based) of ``count``, instants ``[start, stop)``, has finished."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose one-line message is meant for the person running page4d (exit code 1)."""
    from models.config import ConfigError
    from models.loading.checkpoint_io import CheckpointError
    from page4d_cli.pipeline.align import AlignmentError
    from page4d_cli.pipeline.errors import InputError
    from page4d_cli.pipeline.export import ExportError
    from page4d_cli.pipeline.output_dir import OutputExistsError
    from page4d_cli.weights import WeightsError

    return (InputError, WeightsError, OutputExistsError, CheckpointError, ConfigError, AlignmentError, ExportError)


# ----------------------------------------------------------------------------- writing progress


def expected_file_count(pred: Prediction, batch: ClipBatch, options: ExportOptions) -> int:
    """How many files ``export_reconstruction`` writes with these options (for the progress bar)."""
    num_t, num_v = batch.frame_indices.shape
    count = 1  # cameras.json
    count += num_t if options.write_points else 0
    count += num_t * num_v if options.depth_format else 0
    count += num_t * num_v if options.confidence_format else 0
    count += num_t * num_v if options.mask_mode and pred.dynamic_mask is not None else 0
    count += num_v if options.write_trajectories else 0
    count += num_v + 3 if options.colmap_instant is not None else 0  # images + cameras/images/points3D.txt
    return count


class WriteWatcher:
    """Report ``(files written, expected)`` while a block writes into ``folder``.

    The writers belong to ``write_outputs`` and take no callback, so a daemon thread counts the files
    that appear in the (fresh, temporary) output folder a few times a second.
    """

    def __init__(self, folder: Path, expected: int, report: Callable[[int, int], None], interval: float = 0.2):
        self.folder, self.expected, self.report, self.interval = Path(folder), expected, report, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="page4d-write-progress", daemon=True)

    def count(self) -> int:
        return sum(len(names) for _, _, names in os.walk(self.folder))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report(min(self.count(), self.expected), self.expected)

    def __enter__(self) -> "WriteWatcher":
        self.report(0, self.expected)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------- COLMAP frames


def colmap_frames(batch: ClipBatch, instant: int) -> list[np.ndarray]:
    """The original RGB frames of one sampled instant, one per camera (the COLMAP model's images)."""
    frames = []
    for v, camera in enumerate(batch.cameras):
        index = int(batch.frame_indices[instant, v])
        for _, frame_bgr in iter_frames(camera.path, camera.kind, [index], camera.size):
            frames.append(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
    return frames


# ----------------------------------------------------------------------------- run.json


def equivalent_command(input_dir: PathLike, options) -> str:
    """The ``page4d reconstruct`` command line that gives these options (non-default ones only).

    Paths are absolute, so the command re-runs from any folder; ``frames=None`` is ``--frames all``;
    a flag that defaults on (``edge_filter``, ``preview``) is turned off with ``--no-<name>``.
    """
    from page4d_cli.pipeline.options import format_frames

    defaults = type(options)()
    args = ["page4d", "reconstruct", os.fspath(Path(input_dir).absolute())]
    for spec in fields(options):
        value = getattr(options, spec.name)
        if spec.name == "command_line" or value == getattr(defaults, spec.name):
            continue
        flag = "--" + spec.name.replace("_", "-")
        if spec.name == "frames":
            args += [flag, format_frames(value)]
        elif value is None:
            continue  # an optional setting left to its automatic value
        elif isinstance(value, bool):
            args.append(flag if value else "--no-" + spec.name.replace("_", "-"))
        else:
            args += [flag, os.fspath(Path(value).absolute()) if isinstance(value, Path) else str(value)]
    return shlex.join(args)


def weights_record(selection, load_report, provenance_file: Optional[str], seed: int) -> dict:
    """run.json ``weights``: "random", or the files and the provenance summary of the load."""
    return {
        "source": "random" if selection.random else "pretrained",
        "pi3": None if selection.pi3_path is None else str(selection.pi3_path),
        "page4d": None if selection.page4d_path is None else str(selection.page4d_path),
        "notes": list(selection.notes),
        "random_init_seed": seed,  # for every part without a file
        "provenance": None if load_report is None else load_report.summary(),
        "provenance_file": provenance_file,
    }


def describe_alignment(alignment) -> dict:
    """A window's similarity X_ref = s R X + t, as JSON."""
    return {"instants": [alignment.start, alignment.stop], "scale": float(alignment.scale),
            "rotation": np.asarray(alignment.rotation).tolist(),
            "translation": np.asarray(alignment.translation).tolist(),
            "num_points": int(alignment.num_points), "rms_residual": float(alignment.rms_residual)}


def input_record(input_dir: PathLike, options, batch: ClipBatch) -> dict:
    """run.json ``input``: the cameras found, the sampled frames and the masks used."""
    num_t, num_v, _, height, width = batch.images.shape
    masks = None
    if batch.ext_masks is not None:
        masks = {"source": "external" if options.masks is not None else "auto",
                 "dir": None if options.masks is None else str(Path(options.masks).absolute()),
                 "dynamic_fraction": float(np.mean(batch.ext_masks))}
    return {
        "folder": str(Path(input_dir).absolute()),
        "num_instants": num_t,
        "num_cameras": num_v,
        "network_size": [width, height],
        "cameras": [{"name": cam.name, "path": str(cam.path), "kind": cam.kind, "size": list(cam.size),
                     "fps": cam.fps, "num_frames": cam.num_frames} for cam in batch.cameras],
        "frame_indices": batch.frame_indices.tolist(),
        "masks": masks,
    }


def build_run_info(input_dir: PathLike, options, batch: ClipBatch, selection, load_report, policy: DevicePolicy,
                   windows: list[tuple[int, int]], alignments: list, timings: dict, memory: dict, files: dict,
                   warnings: list[str], provenance_file: Optional[str]) -> dict:
    """Everything run.json records (``records.build_run_record`` adds versions and the date)."""
    return {
        "command_line": options.command_line or equivalent_command(input_dir, options),
        "device": str(policy.device),
        "device_description": policy.description,
        "dtype": policy.dtype_name,
        "weights": weights_record(selection, load_report, provenance_file, options.seed),
        "timings_s": {stage: round(float(seconds), 4) for stage, seconds in timings.items()},
        "peak_memory": memory,
        "input": input_record(input_dir, options, batch),
        "network": {
            "preset": options.preset,
            "max_images_per_pass": options.max_images_per_pass,
            "overlap": options.overlap,
            "windows": [list(window) for window in windows],
            "alignments": [describe_alignment(alignment) for alignment in alignments],
        },
        "options": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(options).items()},
        "export": files,
        "warnings": list(warnings),
    }
