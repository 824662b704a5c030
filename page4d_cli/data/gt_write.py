"""Write ground truth in the clip format read by ``gt_clip`` (used by ``page4d data synth`` and tests).

``write_gt(clip_root, ...)`` adds ``gt/`` next to an existing input (e.g. videos); ``write_gt_clip(out, ...)``
writes a whole clip: one image folder (``NAME/frame_TTTT.png``) or video (``NAME.mp4``) per camera plus
``gt/``. Both write into a temporary sibling and rename it at the end (nothing half-written is left), and
refuse to replace anything page4d did not write.

Array shapes (per camera lists allow cameras of different sizes; a single array means all cameras):
    images           [T, V, H, W, 3] uint8 RGB, or V arrays [T, H_v, W_v, 3]
    K                [T, V, 3, 3] or [V, 3, 3] (static), original pixels, pixel-centre convention
    camera_from_world [T, V, 4, 4] or [V, 4, 4] (static rig)
    depth            [T, V, H, W] float z-depth (0 / NaN / inf = invalid), or V arrays [T, H_v, W_v]
    masks            None, or [T, V, H, W] bool (True = dynamic), or V arrays [T, H_v, W_v]
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import cv2
import numpy as np

from page4d_cli.data.cameras_file import DEPTH_FORMATS
from page4d_cli.data.errors import DataFormatError
from page4d_cli.data.gt_clip import CAMERAS_FILE, GT_DIR
from page4d_cli.pipeline import geometry
from page4d_cli.pipeline.export import camera_dir, frame_name, quantization_scale, quantize_png16, write_map_file
from page4d_cli.pipeline.output_dir import swap_into_place
from page4d_cli.pipeline.records import CAMERAS_FORMAT, CAMERAS_VERSION, CONVENTIONS, validate_cameras_json, write_json

GT_KIND = "ground-truth"
ArrayOrList = Union[np.ndarray, Sequence[np.ndarray]]


def _per_camera(values: ArrayOrList, num_cameras: int, what: str) -> list[np.ndarray]:
    """``[T, V, ...]`` array or a V-long list of ``[T, ...]`` -> list of V arrays."""
    if isinstance(values, np.ndarray):
        if values.ndim < 2 or values.shape[1] != num_cameras:
            raise ValueError(f"{what}: expected [T, V={num_cameras}, ...], got {list(values.shape)}")
        return [values[:, v] for v in range(num_cameras)]
    if len(values) != num_cameras:
        raise ValueError(f"{what}: {len(values)} cameras given, expected {num_cameras}")
    return [np.asarray(value) for value in values]


def _per_frame_matrices(values: np.ndarray, num_frames: int, num_cameras: int, size: int, what: str) -> np.ndarray:
    """``[V, n, n]`` (static) or ``[T, V, n, n]`` -> ``[T, V, n, n]`` float64, checked finite."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape == (num_cameras, size, size):
        values = np.broadcast_to(values, (num_frames, num_cameras, size, size))
    if values.shape != (num_frames, num_cameras, size, size):
        raise ValueError(f"{what}: expected [V, {size}, {size}] or [T={num_frames}, V={num_cameras}, {size}, {size}], "
                         f"got {list(values.shape)}")
    if not np.isfinite(values).all():
        raise ValueError(f"{what}: holds non-finite values")
    return values


def build_gt_cameras_json(names: Sequence[str], sources: Sequence[str], sizes: Sequence[tuple[int, int]],
                          K: np.ndarray, camera_from_world: np.ndarray, fps: Optional[float],
                          files: dict, depth_record: dict, source_frames: Optional[np.ndarray] = None,
                          about: str = "") -> dict:
    """gt/cameras.json content (the output's schema; ``network_size``/``image_transform`` are null).

    K ``[T, V, 3, 3]``, camera_from_world ``[T, V, 4, 4]``, source_frames ``[T, V]`` (default: t).
    """
    num_t, num_v = K.shape[:2]
    frames_index = np.repeat(np.arange(num_t)[:, None], num_v, axis=1) if source_frames is None else source_frames
    cameras = []
    for v, name in enumerate(names):
        frames = []
        for t in range(num_t):
            index = int(frames_index[t, v])
            frames.append({"t": t, "source_frame": index, "timestamp": index / fps if fps else float(index),
                           "K": K[t, v].tolist(), "camera_from_world": camera_from_world[t, v].tolist()})
        cameras.append({"index": v, "name": name, "dir": camera_dir(v), "source": sources[v],
                        "image_size": [int(sizes[v][0]), int(sizes[v][1])], "network_size": None,
                        "image_transform": None, "frames": frames})
    conventions = dict(CONVENTIONS)
    conventions["units"] = "the clip's own (metres for clips made by page4d data synth)"
    conventions["K"] = "original pixels of each camera (image_size)"
    data = {
        "format": CAMERAS_FORMAT, "version": CAMERAS_VERSION, "kind": GT_KIND,
        "world_frame": "the ground truth's own world frame (evaluation aligns predictions to it)",
        "conventions": conventions, "about": about, "num_instants": num_t, "num_cameras": num_v, "fps": fps,
        "files": files, "depth": depth_record, "cameras": cameras,
    }
    validate_cameras_json(data)
    return data


def _write_png(path: Path, values: np.ndarray, png_level: int) -> None:
    """uint8/uint16 PNG at zlib level ``png_level`` (0-9: smaller files, slower writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), values, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]):
        raise OSError(f"{path}: OpenCV could not write the file")


def _write_depth(gt_dir: Path, depths: list[np.ndarray], fmt: str, scale: Optional[float], png_level: int) -> dict:
    if fmt not in DEPTH_FORMATS:
        raise ValueError(f"depth_format must be one of {', '.join(DEPTH_FORMATS)}, got {fmt!r}")
    if fmt == "png" and scale is None:
        finite = [d[geometry.valid_depth(d)] for d in depths]
        scale = quantization_scale(max((float(f.max()) for f in finite if f.size), default=0.0))
    elif fmt != "png":
        scale = 1.0
    for v, depth in enumerate(depths):
        for t, values in enumerate(depth):
            values = np.asarray(values, dtype=np.float64)
            if fmt == "png":
                if np.nanmax(np.where(np.isfinite(values), values, 0.0)) / scale > 65535.5:
                    raise ValueError(f"depth up to {np.nanmax(values):g} does not fit 16 bits at scale {scale:g}")
                _write_png(gt_dir / "depth" / camera_dir(v) / frame_name(t, fmt), quantize_png16(values, scale),
                           png_level)
            else:
                out = np.where(geometry.valid_depth(values), values, 0.0).astype(np.float32)
                write_map_file(gt_dir / "depth" / camera_dir(v) / frame_name(t, fmt), out, fmt)
    return {"pattern": f"depth/cam{{v:02d}}/frame_{{t:04d}}.{fmt}", "format": fmt, "scale": float(scale),
            "decode": "value * scale" if fmt == "png" else "value (float32, scale 1)", "invalid_value": 0,
            "resolution": "original", "kind": "z-depth along the camera's optical axis, world units"}


def _write_masks(gt_dir: Path, masks: list[np.ndarray], png_level: int) -> dict:
    for v, mask in enumerate(masks):
        for t, values in enumerate(mask):
            _write_png(gt_dir / "masks" / camera_dir(v) / frame_name(t, "png"),
                       np.where(np.asarray(values) > 0, 255, 0).astype(np.uint8), png_level)
    return {"pattern": "masks/cam{v:02d}/frame_{t:04d}.png", "mode": "binary",
            "decode": "non-zero = dynamic object, 0 = static", "resolution": "original"}


def _check_target(target: Path, overwrite: bool, is_ours) -> None:
    """Refuse an existing ``target`` unless ``overwrite`` and page4d wrote it (it is replaced only at the end)."""
    if not target.exists():
        return
    if not overwrite:
        raise DataFormatError(f"{target}: already exists; pass overwrite=True (--overwrite) or choose another folder")
    if not is_ours(target):
        raise DataFormatError(f"{target}: exists and was not written by page4d; move it away or choose another folder")


@contextlib.contextmanager
def _renamed_into_place(target: Path, prefix: str) -> Iterator[Path]:
    """A new temporary folder next to ``target``, swapped in for ``target`` when the block succeeds and
    removed when it raises (Ctrl-C included): nothing half-written is left, and a folder being replaced
    (``overwrite``) stays intact until its successor is complete."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield tmp
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_gt_folder(folder: Path) -> bool:
    return (folder / CAMERAS_FILE).is_file()


def write_gt(clip_root: Path, names: Sequence[str], K: np.ndarray, camera_from_world: np.ndarray,
             depth: ArrayOrList, masks: Optional[ArrayOrList] = None, fps: Optional[float] = None,
             sources: Optional[Sequence[str]] = None, depth_format: str = "png",
             depth_scale: Optional[float] = None, source_frames: Optional[np.ndarray] = None,
             about: str = "", overwrite: bool = False, png_level: int = 6) -> Path:
    """Write ``clip_root/gt/`` (cameras.json, depth, optional masks) for an existing input; return it.

    depth_scale: metres (world units) per PNG level; None = the finest that fits the largest depth.
    png_level: zlib level of the PNGs (0-9; 6 is a good size/speed balance).
    sources: how each camera's input is named in the clip (default: the camera name).
    """
    clip_root = Path(clip_root)
    num_v = len(names)
    depths = _per_camera(depth, num_v, "depth")
    num_t = depths[0].shape[0]
    if any(d.ndim != 3 or d.shape[0] != num_t for d in depths):
        raise ValueError("depth: every camera needs [T, H, W] with the same T")
    K = _per_frame_matrices(K, num_t, num_v, 3, "K")
    camera_from_world = _per_frame_matrices(camera_from_world, num_t, num_v, 4, "camera_from_world")
    sizes = [(d.shape[2], d.shape[1]) for d in depths]
    mask_list = None if masks is None else _per_camera(masks, num_v, "masks")
    if mask_list is not None and any(m.shape != d.shape for m, d in zip(mask_list, depths)):
        raise ValueError("masks: every camera's masks must have its depth's shape [T, H, W]")
    target = clip_root / GT_DIR
    _check_target(target, overwrite, _is_gt_folder)
    clip_root.mkdir(parents=True, exist_ok=True)
    with _renamed_into_place(target, ".gt.tmp-") as tmp:
        depth_record = _write_depth(tmp, depths, depth_format, depth_scale, png_level)
        files = {"depth": depth_record}
        if mask_list is not None:
            files["masks"] = _write_masks(tmp, mask_list, png_level)
        data = build_gt_cameras_json(names, list(sources) if sources else list(names), sizes, K, camera_from_world,
                                     fps, files, depth_record, source_frames, about)
        write_json(tmp / CAMERAS_FILE, data)
    return target


def write_camera_images(folder: Path, name: str, frames: np.ndarray, image_format: str = "png",
                        fps: float = 30.0, png_level: int = 6) -> str:
    """One camera's input: ``folder/NAME/frame_TTTT.png`` (lossless) or ``folder/NAME.mp4``; returns
    the source name recorded in cameras.json. frames ``[T, H, W, 3]`` uint8 RGB."""
    if image_format == "png":
        (folder / name).mkdir(parents=True, exist_ok=True)
        for t, rgb in enumerate(frames):
            _write_png(folder / name / frame_name(t, "png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), png_level)
        return name
    if image_format == "mp4":
        path = folder / f"{name}.mp4"
        height, width = frames.shape[1:3]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot write mp4v video here; use image_format='png'")
        for rgb in frames:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        writer.release()
        return path.name
    raise ValueError(f"image_format must be 'png' or 'mp4', got {image_format!r}")


def write_gt_clip(out: Path, names: Sequence[str], images: ArrayOrList, K: np.ndarray,
                  camera_from_world: np.ndarray, depth: ArrayOrList, masks: Optional[ArrayOrList] = None,
                  fps: float = 30.0, image_format: str = "png", depth_format: str = "png",
                  depth_scale: Optional[float] = None, about: str = "", overwrite: bool = False,
                  png_level: int = 6) -> Path:
    """Write a whole clip folder ``out`` (input + gt/), atomically; return ``out``.

    Camera names must sort in the given order (natural order, e.g. cam00, cam01, ...) so that the clip's
    input order equals gt/cameras.json's.
    """
    out = Path(out)
    frames = _per_camera(images, len(names), "images")
    if any(f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 for f in frames):
        raise ValueError("images: expected uint8 RGB [T, H, W, 3] per camera")
    _check_target(out, overwrite, lambda folder: (folder / GT_DIR / CAMERAS_FILE).is_file())
    out.parent.mkdir(parents=True, exist_ok=True)
    with _renamed_into_place(out, f".{out.name}.tmp-") as tmp:
        sources = [write_camera_images(tmp, name, f, image_format, fps, png_level) for name, f in zip(names, frames)]
        write_gt(tmp, names, K, camera_from_world, depth, masks, fps=fps, sources=sources,
                 depth_format=depth_format, depth_scale=depth_scale, about=about, png_level=png_level)
    return out
