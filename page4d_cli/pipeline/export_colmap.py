"""COLMAP text model of ONE instant, for nerfstudio / gaussian-splatting style tools.

Layout (the one ``colmap``'s own ``image_undistorter``, nerfstudio and gaussian-splatting read)::

    colmap/images/camXX.png             the frames of that instant
    colmap/sparse/0/cameras.txt         one PINHOLE camera per rig camera: fx fy cx cy
    colmap/sparse/0/images.txt          QW QX QY QZ TX TY TZ (world-to-camera), CAMERA_ID, NAME;
                                        the POINTS2D line is left empty
    colmap/sparse/0/points3D.txt        fused points with RGB, error 0, empty tracks

COLMAP's pixel convention (centre of the top-left pixel = (0.5, 0.5)) is the one used for K
everywhere in page4d, so K goes in unchanged. No line ends with a space: COLMAP's text reader
would take a trailing space for an empty track element.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from page4d_cli.pipeline import geometry
from page4d_cli.pipeline.export import ExportError, camera_dir, check_shapes, write_map_file
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
            views.append((geometry.intrinsics_to_original(pred.intrinsic[instant, v], transform), image))
        else:
            image = np.moveaxis(batch.images[instant, v], 0, -1)
            views.append((pred.intrinsic[instant, v].astype(np.float64),
                          np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)))
    return views


def write_colmap_model(colmap_dir: Path, pred: Prediction, batch: ClipBatch, instant: int,
                       points: np.ndarray, colors: np.ndarray,
                       frames: Optional[Sequence[np.ndarray]] = None) -> dict:
    """Write the COLMAP text model of instant ``instant`` into ``colmap_dir``.

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
    camera_lines = ["# Camera list with one line of data per camera:",
                    "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
                    f"# Number of cameras: {num_v}"]
    image_lines = ["# Image list with two lines of data per image:",
                   "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                   "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                   f"# Number of images: {num_v}, mean observations per image: 0"]
    names = []
    for v, (k, image) in enumerate(views):
        height, width = image.shape[:2]
        camera_lines.append(f"{v + 1} PINHOLE {width} {height} "
                            + " ".join(f"{x:.10g}" for x in (k[0, 0], k[1, 1], k[0, 2], k[1, 2])))
        extrinsic = pred.extrinsic[instant, v].astype(np.float64)
        qx, qy, qz, qw = geometry.rotation_to_quaternion(extrinsic[:3, :3])
        name = f"{camera_dir(v)}.png"
        names.append(name)
        image_lines.append(f"{v + 1} " + " ".join(f"{x:.12g}" for x in (qw, qx, qy, qz, *extrinsic[:3, 3]))
                           + f" {v + 1} {name}")
        image_lines.append("")  # no 2D observations
        # encoded in memory, written by Python: a full disk raises OSError(ENOSPC), no libpng noise
        write_map_file(images_dir / name, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), "png")

    rgb = np.rint(np.clip(colors, 0, 1) * 255).astype(np.int64)
    point_lines = ["# 3D point list with one line of data per point:",
                   "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
                   f"# Number of points: {len(points)}, mean track length: 0"]
    point_lines += [f"{i + 1} {p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {c[0]} {c[1]} {c[2]} 0"
                    for i, (p, c) in enumerate(zip(points, rgb))]

    (sparse / "cameras.txt").write_text("\n".join(camera_lines) + "\n")
    (sparse / "images.txt").write_text("\n".join(image_lines) + "\n")
    (sparse / "points3D.txt").write_text("\n".join(point_lines) + "\n")
    return {
        "dir": "colmap",
        "instant": instant,
        "model": "colmap/sparse/0/{cameras,images,points3D}.txt",
        "images": [f"colmap/images/{n}" for n in names],
        "resolution": "original" if frames is not None else "network",
        "num_points": int(len(points)),
    }
