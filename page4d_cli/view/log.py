"""What ``page4d view`` logs to Rerun, entity by entity (``rr`` is the imported ``rerun`` module).

Static (no time):
    world                        view coordinates RDF (page4d's OpenCV axes) + the dynamic-mask legend
    world/axes                   world x, y, z arrows at the origin (camera 0 at t = 0)
    world/trajectories/camXX     each camera's centre over all instants (line strip)
    notes                        what is shown (subsampling, missing parts), as a text document
Per instant, on the timelines ``time`` (the instant's timestamp, seconds) and ``instant`` (t):
    world/points                 the fused point cloud of the PLY (at most ``max_points``, uniform subsample)
    world/cameras/camXX          camera pose (camera_from_world, logged as child-from-parent)
    world/cameras/camXX/image    pinhole: K from cameras.json and the original resolution
        .../image/rgb            the input frame (preview JPEG, when the run wrote previews)
        .../image/depth          the depth map (raw 16-bit with its scale as ``meter``, or float32)
        .../image/mask           the dynamic mask (class 1 = dynamic)

One instant is read, logged and flushed at a time, so memory stays at one instant's files whatever the
length. ``blueprint`` lays the viewer out (3D world + notes, one 2D view per camera).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from page4d_cli.view.folder import ReconstructionFolder

MASK_CLASSES = ((0, "static", (0, 0, 0, 0)), (1, "dynamic", (255, 40, 40, 150)))
AXIS_COLOURS = np.array([[230, 40, 40], [40, 200, 40], [40, 80, 230]], dtype=np.uint8)


def scene_size(folder: ReconstructionFolder) -> float:
    """A length for the axes and frustums: the spread of the camera centres (1 when they coincide)."""
    from page4d_cli.pipeline.geometry import camera_centers

    centres = camera_centers(folder.all_camera_from_world()).reshape(-1, 3)
    extent = float(np.ptp(centres, axis=0).max())
    return extent if extent > 1e-9 else 1.0


def subsample(points: np.ndarray, colours: Optional[np.ndarray], max_points: Optional[int],
              seed: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """At most ``max_points`` of the points, chosen uniformly at random (seeded: the same every run)."""
    if max_points is None or len(points) <= max_points:
        return points, colours
    keep = np.sort(np.random.default_rng(seed).choice(len(points), size=max_points, replace=False))
    return points[keep], None if colours is None else colours[keep]


def notes_text(folder: ReconstructionFolder, max_points: Optional[int]) -> str:
    lines = [f"# {folder.root.name}", "",
             f"{folder.num_instants} instants x {folder.num_cameras} cameras; world = camera 0 at t = 0, "
             "OpenCV axes (x right, y down, z forward), units = the network's.", ""]
    if max_points is not None:
        lines.append(f"* Point clouds: at most {max_points} points per instant (uniform random subsample of "
                     "the PLY, seeded; `--max-points`).")
    else:
        lines.append("* Point clouds: every point of the PLY files (confidence-filtered as written).")
    lines += [f"* {note}" for note in folder.notes]
    return "\n".join(lines)


def log_static(rr, rec, folder: ReconstructionFolder, max_points: Optional[int]) -> None:
    """Coordinates, axes, trajectories, notes."""
    from page4d_cli.pipeline.geometry import camera_centers

    size = scene_size(folder)
    rec.log("world", rr.ViewCoordinates.RDF, static=True)
    rec.log("world", rr.AnnotationContext([rr.AnnotationInfo(id=i, label=label, color=colour)
                                           for i, label, colour in MASK_CLASSES]), static=True)
    rec.log("world/axes", rr.Arrows3D(origins=np.zeros((3, 3)), vectors=np.eye(3) * 0.3 * size,
                                      colors=AXIS_COLOURS, labels=["x", "y", "z"]), static=True)
    centres = camera_centers(folder.all_camera_from_world())
    for v in range(folder.num_cameras):
        rec.log(f"world/trajectories/{folder.camera_name(v)}", rr.LineStrips3D([centres[:, v]]), static=True)
    rec.log("notes", rr.TextDocument(notes_text(folder, max_points), media_type=rr.MediaType.MARKDOWN), static=True)


def log_instant(rr, rec, folder: ReconstructionFolder, t: int, max_points: Optional[int],
                frustum_depth: float) -> int:
    """Everything of instant t; returns the number of points logged."""
    rec.set_time("time", duration=folder.timestamp(t))
    rec.set_time("instant", sequence=t)
    shown = 0
    if folder.has("points"):
        points, colours = folder.read_points(t)
        total = len(points)
        points, colours = subsample(points, colours, max_points, seed=t)
        shown = len(points)
        rec.log("world/points", rr.Points3D(points, colors=colours))
        if shown < total:
            rec.log("log", rr.TextLog(f"instant {t}: {shown} of {total} points shown (--max-points)"))
    for v in range(folder.num_cameras):
        base = f"world/cameras/{folder.camera_name(v)}"
        extrinsic = folder.camera_from_world(t, v)
        rec.log(base, rr.Transform3D(translation=extrinsic[:3, 3], mat3x3=extrinsic[:3, :3],
                                     relation=rr.TransformRelation.ChildFromParent))
        width, height = folder.image_size(v)
        rec.log(f"{base}/image", rr.Pinhole(image_from_camera=folder.intrinsics(t, v), resolution=[width, height],
                                            camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=frustum_depth))
        frame = folder.frame_path(t, v)
        if frame is not None:
            rec.log(f"{base}/image/rgb", rr.EncodedImage(path=frame))
        if folder.has("depth"):
            depth, meter = folder.read_depth(t, v)
            rec.log(f"{base}/image/depth", rr.DepthImage(depth, meter=meter))
        if folder.has("masks"):
            rec.log(f"{base}/image/mask", rr.SegmentationImage(folder.read_mask(t, v)))
    return shown


def blueprint(folder: ReconstructionFolder):
    """The viewer's layout: the 3D world (points, frustums, trajectories) with the notes below it, and one
    2D view per camera (its frame, with depth and mask as layers to toggle) in a grid beside it."""
    import rerun.blueprint as rrb

    cameras = [rrb.Spatial2DView(origin=f"world/cameras/{folder.camera_name(v)}/image", name=folder.camera_name(v))
               for v in range(folder.num_cameras)]
    world = rrb.Vertical(rrb.Spatial3DView(origin="world", name="world"), rrb.TextDocumentView(origin="notes"),
                         row_shares=[5, 1])
    return rrb.Blueprint(rrb.Horizontal(world, rrb.Grid(*cameras), column_shares=[3, 2]), collapse_panels=True)
