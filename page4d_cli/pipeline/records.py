"""The two JSON records of an output folder, with schema checks: ``cameras.json`` and ``run.json``.

``cameras.json`` says how to read everything else: the world frame, pixel and pose conventions, the
depth scale, the file naming, and per camera and instant K (original pixels), camera-from-world,
source frame index and timestamp. ``run.json`` says how the output was made (command line,
versions, device, dtype, weights, timings, memory); ``build_run_info`` gathers its content from a
``reconstruct`` run and ``write_run_json`` completes and writes it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from page4d_cli.pipeline import preprocess
from page4d_cli.pipeline.errors import PathLike
from page4d_cli.pipeline.export import camera_dir, check_shapes
from page4d_cli.pipeline.output_dir import RUN_FORMAT
from page4d_cli.pipeline.types import ClipBatch, Prediction

if TYPE_CHECKING:  # device.py imports torch; records.py is read without it
    from page4d_cli.pipeline.device import DevicePolicy

CAMERAS_FORMAT = "page4d-cameras"
CAMERAS_VERSION = 1
CAMERAS_REQUIRED = ("format", "version", "world_frame", "conventions", "num_instants", "num_cameras",
                    "files", "depth", "cameras")
CAMERA_REQUIRED = ("index", "name", "dir", "image_size", "network_size", "image_transform", "frames")
FRAME_REQUIRED = ("t", "source_frame", "timestamp", "K", "camera_from_world")
RUN_REQUIRED = ("command_line", "device", "dtype", "weights", "timings_s", "peak_memory")

CONVENTIONS = {
    "extrinsic": "camera_from_world 4x4: X_cam = E @ [X_world, 1]",
    "axes": "OpenCV: x right, y down, z forward",
    "pixels": "continuous coordinates, centre of pixel (row i, col j) = (j + 0.5, i + 0.5) as in COLMAP; "
              "subtract 0.5 from cx, cy for OpenCV's integer-centre convention",
    "K": "original pixels of each camera (image_size); may change per instant (predicted per image)",
    "depth": "z-depth along the optical axis, world units",
    "units": "the network's: arbitrary, consistent across cameras and instants, up to one global scale",
    "timestamp": "seconds (source frame index / fps; the frame index when fps is unknown)",
}


def _to_jsonable(value: Any) -> Any:
    """json.dump fallback for numpy scalars/arrays and paths."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def absolute_path(path: PathLike) -> str:
    """``path`` as the records hold it: absolute, ``~`` expanded, ``..`` folded (``os.path.abspath``)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def write_json(path: Path, data: dict) -> None:
    """Pretty JSON (non-finite floats are refused: they are not valid JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_to_jsonable, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- cameras.json


def build_cameras_json(pred: Prediction, batch: ClipBatch, files: dict[str, Optional[dict]],
                       depth: Optional[dict] = None) -> dict:
    """The cameras.json content.

    ``files`` maps an output kind ("points", "depth", "confidence", "masks", "trajectory",
    "colmap") to the record its writer returned (None when not written). ``depth`` is the depth
    writer's record (format, scale, invalid value); None when no depth maps were written.
    """
    num_t, num_v, _, _ = check_shapes(pred, batch)
    cameras = []
    for v, (info, transform) in enumerate(zip(batch.cameras, batch.transforms)):
        k_original = preprocess.intrinsics_to_original(pred.intrinsic[:, v], transform)
        frames = [
            {
                "t": t,
                "source_frame": int(batch.frame_indices[t, v]),
                "timestamp": float(batch.timestamps[t, v]),
                "K": k_original[t].tolist(),
                "camera_from_world": np.asarray(pred.extrinsic[t, v], dtype=np.float64).tolist(),
            }
            for t in range(num_t)
        ]
        cameras.append({
            "index": v,
            "name": info.name,
            "dir": camera_dir(v),
            "source": absolute_path(info.path),  # the same from any folder, as run.json's paths
            "image_size": list(info.size),
            "network_size": list(transform.network_size),
            "image_transform": asdict(transform),
            "frames": frames,
        })
    reference = batch.cameras[batch.reference].name
    return {
        "format": CAMERAS_FORMAT,
        "version": CAMERAS_VERSION,
        "world_frame": (f"world = camera {reference} ({camera_dir(batch.reference)}) at the first sampled instant "
                        "(t = 0): its camera_from_world there is exactly the identity; OpenCV axes; units = the "
                        "network's (arbitrary, up to scale)"),
        "reference_camera": {"name": reference, "index": batch.reference, "dir": camera_dir(batch.reference)},
        "conventions": CONVENTIONS,
        "num_instants": num_t,
        "num_cameras": num_v,
        "files": {kind: record for kind, record in files.items() if record is not None},
        "depth": depth,
        "cameras": cameras,
    }


def _missing(record: Any, required: tuple[str, ...], where: str) -> list[str]:
    if not isinstance(record, dict):
        return [f"{where} (not an object)"]
    return [f"{where}.{key}" if where else key for key in required if key not in record]


def validate_cameras_json(data: dict) -> None:
    """Raise ``ValueError`` naming every missing key or malformed matrix; return None when valid."""
    problems = _missing(data, CAMERAS_REQUIRED, "")
    if not problems:
        if data["format"] != CAMERAS_FORMAT:
            problems.append(f"format is {data['format']!r}, expected {CAMERAS_FORMAT!r}")
        if len(data["cameras"]) != data["num_cameras"]:
            problems.append(f"{len(data['cameras'])} cameras listed, num_cameras = {data['num_cameras']}")
        for v, camera in enumerate(data["cameras"]):
            problems += _missing(camera, CAMERA_REQUIRED, f"cameras[{v}]")
            frames = camera.get("frames", []) if isinstance(camera, dict) else []
            if len(frames) != data["num_instants"]:
                problems.append(f"cameras[{v}].frames has {len(frames)} entries, num_instants = {data['num_instants']}")
            for t, frame in enumerate(frames):
                where = f"cameras[{v}].frames[{t}]"
                found = _missing(frame, FRAME_REQUIRED, where)
                problems += found
                if found:
                    continue
                if np.asarray(frame["K"], dtype=float).shape != (3, 3):
                    problems.append(f"{where}.K is not 3x3")
                if np.asarray(frame["camera_from_world"], dtype=float).shape != (4, 4):
                    problems.append(f"{where}.camera_from_world is not 4x4")
    if problems:
        raise ValueError("cameras.json is invalid: " + "; ".join(problems))


def write_cameras_json(out_dir: Path, data: dict) -> Path:
    """Validate and write ``cameras.json``; return its path."""
    validate_cameras_json(data)
    path = Path(out_dir) / "cameras.json"
    write_json(path, data)
    return path


# ----------------------------------------------------------------------------- run.json


def _distribution_version(*names: str) -> Optional[str]:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def software_versions() -> dict:
    """Versions of python and the libraries that shape the output (no heavy imports needed)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "page4d": _distribution_version("page4d"),
        "torch": _distribution_version("torch"),
        "numpy": np.__version__,
        "open3d": _distribution_version("open3d", "open3d-cpu"),
        "opencv": _distribution_version("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    }


def build_run_record(info: dict) -> dict:
    """``info`` + software versions + creation time; raise ``ValueError`` if a required key is missing.

    ``format`` is ``RUN_FORMAT`` ("page4d-run"): ``--overwrite`` replaces only folders carrying it.
    Required (``RUN_REQUIRED``): command_line, device, dtype, weights (provenance summary: name,
    source, sha256, ...), timings_s (seconds per stage), peak_memory (bytes, per device). Extra
    keys are kept. Versions given by the caller win over the detected ones.
    """
    missing = [key for key in RUN_REQUIRED if key not in info]
    if missing:
        raise ValueError(f"run.json is missing required keys: {', '.join(missing)}")
    record = {"format": RUN_FORMAT, **info}  # the marker that lets --overwrite replace this folder later
    record["versions"] = {**software_versions(), **info.get("versions", {})}
    record.setdefault("created_utc", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    record.setdefault("argv", list(sys.argv))
    return record


def write_run_json(out_dir: Path, info: dict) -> dict:
    """Complete (``build_run_record``) and write ``run.json``; return what was written."""
    record = build_run_record(info)
    write_json(Path(out_dir) / "run.json", record)
    return record


# ----------------------------------------------------------------------------- run.json content


def recorded_options(options) -> dict:
    """The options as run.json records them: every path field (typed ``Path``, given as a ``Path`` or a
    ``str``) absolute, so the record means the same from any folder; other values as they are."""
    def is_path_field(spec) -> bool:  # the annotations are strings ("Optional[Path]"): __future__ annotations
        return "Path" in str(spec.type)

    return {spec.name: absolute_path(getattr(options, spec.name))
            if is_path_field(spec) and getattr(options, spec.name) is not None else getattr(options, spec.name)
            for spec in fields(options)}


def equivalent_command(input_dir: PathLike, options) -> str:
    """The ``page4d reconstruct`` command line that gives these options (non-default ones only).

    Paths are absolute (``recorded_options``), so the command re-runs from any folder; ``frames=None``
    is ``--frames all``; a flag that defaults on (``edge_filter``, ``preview``) is turned off with
    ``--no-<name>``.
    """
    from page4d_cli.pipeline.options import format_frames

    defaults = type(options)()
    args = ["page4d", "reconstruct", absolute_path(input_dir)]
    for name, value in recorded_options(options).items():
        if name == "command_line" or value == getattr(defaults, name):
            continue
        flag = "--" + name.replace("_", "-")
        if name == "frames":
            args += [flag, format_frames(value)]
        elif value is None:
            continue  # an optional setting left to its automatic value
        elif isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            args += [flag, str(value)]
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
                 "dir": None if options.masks is None else absolute_path(options.masks),
                 "dynamic_fraction": float(np.mean(batch.ext_masks))}
    return {
        "folder": absolute_path(input_dir),
        "num_instants": num_t,
        "num_cameras": num_v,
        "network_size": [width, height],
        "cameras": [{"name": cam.name, "path": absolute_path(cam.path), "kind": cam.kind, "size": list(cam.size),
                     "fps": cam.fps, "num_frames": cam.num_frames} for cam in batch.cameras],
        "frame_indices": batch.frame_indices.tolist(),
        "masks": masks,
    }


def build_run_info(input_dir: PathLike, options, batch: ClipBatch, selection, load_report, policy: DevicePolicy,
                   windows: list[tuple[int, int]], alignments: list, timings: dict, memory: dict, files: dict,
                   warnings: list[str], provenance_file: Optional[str], skipped_as_neutral: Optional[dict] = None) -> dict:
    """Everything run.json records (``records.build_run_record`` adds versions and the date).

    skipped_as_neutral: the aggregator's ``neutral_report()`` (new parts skipped because they are still
    neutral, e.g. ``{"streams identical": "yes"}``; ``models/neutral.py``), recorded under ``network``.
    """
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
            "skipped as neutral": skipped_as_neutral,
        },
        "options": recorded_options(options),
        "export": files,
        "warnings": list(warnings),
    }
