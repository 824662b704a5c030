"""COLMAP model of ONE instant, for nerfstudio / gaussian-splatting style tools.

Layout (the one ``colmap``'s own ``image_undistorter``, nerfstudio and gaussian-splatting read)::

    colmap/images/camXX.png             the frames of that instant
    colmap/sparse/0/cameras.txt         one PINHOLE camera per rig camera: fx fy cx cy
    colmap/sparse/0/images.txt          QW QX QY QZ TX TY TZ (world-to-camera), CAMERA_ID, NAME;
                                        the POINTS2D line is left empty
    colmap/sparse/0/points3D.txt        fused points with RGB, error 0, empty tracks
    colmap/sparse/0/points3D.ply        the same points as gaussian-splatting's loader reads them
                                        (x y z float, nx ny nz float = 0, red green blue uchar)

``fmt="bin"`` writes ``cameras.bin``, ``images.bin`` and ``points3D.bin`` instead of the ``.txt`` files,
in COLMAP's binary layout (little-endian; ``colmap/src/colmap/scene/reconstruction_io.cc``):
cameras = uint64 count, then per camera int32 id, int32 model (1 = PINHOLE), uint64 width, uint64
height, 4 double params; images = uint64 count, then per image int32 id, 4 double qvec (w x y z),
3 double tvec, int32 camera id, the name and a NUL byte, uint64 number of 2D points (0); points3D =
uint64 count, then per point uint64 id, 3 double xyz, 3 uint8 rgb, double error, uint64 track length (0).

The number of points is capped (``DEFAULT_COLMAP_MAX_POINTS``, ``--colmap-max-points``; 0 = no cap) by an
even random subsample: initialisers of splatting need a few hundred thousand points, not millions.

COLMAP's pixel convention (centre of the top-left pixel = (0.5, 0.5)) is the one used for K
everywhere in page4d, so K goes in unchanged. No line ends with a space: COLMAP's text reader
would take a trailing space for an empty track element.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from page4d_cli.pipeline import geometry, preprocess
from page4d_cli.pipeline.export import ExportError, Tick, camera_dir, check_shapes, write_map_file
from page4d_cli.pipeline.types import ClipBatch, Prediction


def _colmap_views(pred: Prediction, batch: ClipBatch, instant: int,
                  frames: Optional[Sequence[np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(K ``[3, 3]``, RGB uint8 image ``[H, W, 3]``) per camera, at original or network resolution."""
    views = []
    for v, transform in enumerate(batch.transforms):
        if frames is not None:
            image = np.asarray(frames[v])
            width, height = transform.original_size
            if image.shape[:2] != (height, width) or image.ndim != 3:
                raise ExportError(f"COLMAP frame of camera {batch.cameras[v].name} is {image.shape}, "
                                  f"expected ({height}, {width}, 3) (its original size)")
            views.append((preprocess.intrinsics_to_original(pred.intrinsic[instant, v], transform), image))
        else:
            image = np.moveaxis(batch.images[instant, v], 0, -1)
            views.append((pred.intrinsic[instant, v].astype(np.float64),
                          np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)))
    return views


def write_colmap_model(colmap_dir: Path, pred: Prediction, batch: ClipBatch, instant: int,
                       points: np.ndarray, colors: np.ndarray,
                       frames: Optional[Sequence[np.ndarray]] = None, fmt: str = "text", tick: Tick = None) -> dict:
    """Write the COLMAP model (``fmt`` "text" or "bin") of instant ``instant`` into ``colmap_dir``.

    points ``[N, 3]`` world, colors ``[N, 3]`` in [0, 1] (e.g. ``export.fused_points``).
    frames: the V original frames of that instant (RGB uint8, original size) -> cameras at the
    original resolution; None -> the network images and network K are written instead (padding
    and crop included, still a consistent model).
    """
    num_t, num_v, _, _ = check_shapes(pred, batch)
    if not 0 <= instant < num_t:
        raise ExportError(f"COLMAP instant must be in 0..{num_t - 1}, got {instant}")
    if frames is not None and len(frames) != num_v:
        raise ExportError(f"COLMAP export needs {num_v} frames (one per camera), got {len(frames)}")
    colmap_dir = Path(colmap_dir)
    sparse = colmap_dir / "sparse" / "0"
    images_dir = colmap_dir / "images"
    sparse.mkdir(parents=True, exist_ok=True)
    images_dir.mkdir(parents=True, exist_ok=True)

    views = _colmap_views(pred, batch, instant, frames)
    cameras, images = [], []
    for v, (k, image) in enumerate(views):
        height, width = image.shape[:2]
        cameras.append((v + 1, width, height, (k[0, 0], k[1, 1], k[0, 2], k[1, 2])))
        extrinsic = pred.extrinsic[instant, v].astype(np.float64)
        qx, qy, qz, qw = geometry.rotation_to_quaternion(extrinsic[:3, :3])
        name = f"{camera_dir(v)}.png"
        images.append((v + 1, (qw, qx, qy, qz), tuple(extrinsic[:3, 3]), v + 1, name))
        # encoded in memory, written by Python: a full disk raises OSError(ENOSPC), no libpng noise
        write_map_file(images_dir / name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), "png")
        if tick is not None:
            tick(1)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    rgb = np.rint(np.clip(colors, 0, 1) * 255).astype(np.uint8).reshape(-1, 3)
    if fmt == "bin":
        _write_binary_model(sparse, cameras, images, points, rgb)
    else:
        _write_text_model(sparse, cameras, images, points, rgb)
    (sparse / "points3D.ply").write_bytes(splatting_ply_bytes(points, rgb))
    if tick is not None:
        tick(MODEL_FILES)
    extension = "bin" if fmt == "bin" else "txt"
    return {
        "dir": "colmap",
        "instant": instant,
        "format": "binary" if fmt == "bin" else "text",
        "model": f"colmap/sparse/0/{{cameras,images,points3D}}.{extension}",
        "points_ply": "colmap/sparse/0/points3D.ply",
        "images": [f"colmap/images/{image[-1]}" for image in images],
        "resolution": "original" if frames is not None else "network",
        "num_points": int(len(points)),
    }


def _write_text_model(sparse: Path, cameras: list, images: list, points: np.ndarray, rgb: np.ndarray) -> None:
    camera_lines = ["# Camera list with one line of data per camera:",
                    "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
                    f"# Number of cameras: {len(cameras)}"]
    camera_lines += [f"{cid} PINHOLE {width} {height} " + " ".join(f"{x:.10g}" for x in params)
                     for cid, width, height, params in cameras]
    image_lines = ["# Image list with two lines of data per image:",
                   "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                   "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                   f"# Number of images: {len(images)}, mean observations per image: 0"]
    for iid, qvec, tvec, cid, name in images:
        image_lines.append(f"{iid} " + " ".join(f"{x:.12g}" for x in (*qvec, *tvec)) + f" {cid} {name}")
        image_lines.append("")  # no 2D observations
    point_lines = ["# 3D point list with one line of data per point:",
                   "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
                   f"# Number of points: {len(points)}, mean track length: 0"]
    point_lines += [f"{i + 1} {p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {c[0]} {c[1]} {c[2]} 0"
                    for i, (p, c) in enumerate(zip(points, rgb.astype(np.int64)))]
    (sparse / "cameras.txt").write_text("\n".join(camera_lines) + "\n")
    (sparse / "images.txt").write_text("\n".join(image_lines) + "\n")
    (sparse / "points3D.txt").write_text("\n".join(point_lines) + "\n")


PINHOLE_MODEL_ID = 1
MODEL_FILES = 4  # cameras, images, points3D (.txt or .bin) + points3D.ply; plus one image per camera
_POINT_RECORD = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"),
                          ("track_length", "<u8")])  # packed: 51 bytes, as COLMAP writes them


def _write_binary_model(sparse: Path, cameras: list, images: list, points: np.ndarray, rgb: np.ndarray) -> None:
    blob = [struct.pack("<Q", len(cameras))]
    for cid, width, height, params in cameras:
        blob.append(struct.pack("<iiQQ4d", cid, PINHOLE_MODEL_ID, width, height, *params))
    (sparse / "cameras.bin").write_bytes(b"".join(blob))
    blob = [struct.pack("<Q", len(images))]
    for iid, qvec, tvec, cid, name in images:
        blob.append(struct.pack("<i7di", iid, *qvec, *tvec, cid) + name.encode("utf-8") + b"\x00"
                    + struct.pack("<Q", 0))
    (sparse / "images.bin").write_bytes(b"".join(blob))
    records = np.zeros(len(points), dtype=_POINT_RECORD)
    records["id"] = np.arange(1, len(points) + 1)
    records["xyz"] = points
    records["rgb"] = rgb
    (sparse / "points3D.bin").write_bytes(struct.pack("<Q", len(points)) + records.tobytes())


_SPLATTING_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"),
                              ("nz", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def splatting_ply_bytes(points: np.ndarray, rgb: np.ndarray) -> bytes:
    """points3D.ply as gaussian-splatting's ``storePly`` writes it (its ``fetchPly`` reads these names)."""
    vertex = np.zeros(len(points), dtype=_SPLATTING_VERTEX)
    for axis, name in enumerate("xyz"):
        vertex[name] = points[:, axis]
    for axis, name in enumerate(("red", "green", "blue")):
        vertex[name] = rgb[:, axis]
    properties = "".join(f"property {'float' if _SPLATTING_VERTEX[name].kind == 'f' else 'uchar'} {name}\n"
                         for name in _SPLATTING_VERTEX.names)
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\n{properties}end_header\n")
    return header.encode("ascii") + vertex.tobytes()
