"""A synthetic, exactly known 4D scene seen by a static camera rig: a numpy ray caster.

Scene (built in a Y-up "scene" frame, metres): a closed box room (x, z in [-2, 2], floor y = 0, ceiling
y = 2.5) with procedural textures on every face, a static pedestal box at the centre, and a textured
sphere (radius 0.25) that travels half-way around the pedestal over the clip. Cameras stand on a ring
of radius 1.7 at height 1.3, all looking at the pedestal. A fixed point light gives Lambert shading
(no shadows). Rendering is one ray per pixel centre (no anti-aliasing), so the ground truth is exact:

- ``intrinsics`` K ``[V, 3, 3]`` in page4d's pixel-centre convention (pixel (row i, column j) has its
  centre at (j + 0.5, i + 0.5)); principal point at the image centre;
- ``extrinsics`` ``[V, 4, 4]`` camera-from-world, OpenCV axes (x right, y down, z forward); the world
  frame is camera 0 (``extrinsics[0]`` is the identity);
- ``depth`` ``[T, V, H, W]`` z-depth, ``dynamic_mask`` ``[T, V, H, W]`` (sphere pixels),
  ``world_points`` ``[T, V, H, W, 3]`` in the world (camera 0) frame, ``images`` ``[T, V, H, W, 3]`` RGB.

Everything is deterministic (integer hashing for the noise, no random generator), so tests can import
``render_rig`` and re-render the ground truth that ``main`` wrote next to the videos. The textures and the
ray/solid intersections are the library's (``page4d_cli.data.synth_render``, which ``page4d data synth``
uses for its random scenes); this file only composes this one fixed scene.

Command line: ``python examples/make_synthetic_rig.py [--out examples]`` writes ``<out>/cams/camV.mp4``
(what ``page4d reconstruct`` reads) and the ground truth in the clip format of ``page4d_cli.data``:
``<out>/cams/gt/`` (cameras.json, 16-bit depth PNGs at 1 mm, dynamic masks), so ``examples/cams`` is a
ground-truth clip for ``page4d eval`` (``read_gt_clip``; camera discovery ignores ``gt/``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from page4d_cli.data import read_gt_clip, write_gt
from page4d_cli.data.synth_render import hit_box, hit_room, hit_sphere, texture
from page4d_cli.data.synth_scene import look_at

ROOM_LO = np.array([-2.0, 0.0, -2.0])
ROOM_HI = np.array([2.0, 2.5, 2.0])
PEDESTAL_LO = np.array([-0.25, 0.0, -0.25])
PEDESTAL_HI = np.array([0.25, 0.4, 0.25])
SPHERE_RADIUS = 0.25
LOOK_AT = np.array([0.0, 0.4, 0.0])
LIGHT = np.array([0.3, 2.3, -0.2])
RING_RADIUS, RING_HEIGHT = 1.7, 1.3
CAMERA_AZIMUTHS_DEG = (20.0, 105.0, 195.0, 280.0)  # irregular, so no two views mirror each other
FPS = 30.0
DEPTH_SCALE = 1e-3  # metres per level of the ground-truth depth PNGs (1 mm: small files; at most 65 m)


# ----------------------------------------------------------------------------------------- geometry
def rig_poses(cameras: int) -> np.ndarray:
    """[V, 4, 4] camera-from-scene for ``cameras`` cameras on the ring (first 4 use fixed azimuths)."""
    azimuths = list(CAMERA_AZIMUTHS_DEG[:cameras]) + [360.0 * k / cameras + 10.0
                                                      for k in range(len(CAMERA_AZIMUTHS_DEG), cameras)]
    poses = []
    for azimuth in np.radians(azimuths):
        eye = np.array([RING_RADIUS * np.cos(azimuth), RING_HEIGHT, RING_RADIUS * np.sin(azimuth)])
        poses.append(look_at(eye, LOOK_AT))
    return np.stack(poses)


def intrinsics(width: int, height: int) -> np.ndarray:
    """K with a 64 degree horizontal field of view, principal point at the image centre."""
    focal = 0.8 * width
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def sphere_centre(frame: int, frames: int) -> np.ndarray:
    """Scene position of the moving sphere: half a turn around the pedestal, rising a little."""
    phase = frame / max(frames - 1, 1)
    angle = np.pi * (0.15 + phase)
    return np.array([0.85 * np.cos(angle), 0.35 + 0.25 * phase, 0.85 * np.sin(angle)])


# ----------------------------------------------------------------------------------------- shading
FACE_STYLE = {  # face id (axis * 2 + high side) -> (base colour RGB, seed, tile size)
    0: ((0.9, 0.6, 0.4), 11, 0.5), 1: ((0.5, 0.8, 0.6), 12, 0.4),  # walls x = -2 / +2
    2: ((0.8, 0.8, 0.8), 13, 0.5), 3: ((0.9, 0.9, 0.7), 14, 1.0),  # floor / ceiling
    4: ((0.5, 0.6, 0.9), 15, 0.3), 5: ((0.9, 0.5, 0.7), 16, 0.6),  # walls z = -2 / +2
}


def _lambert(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    to_light = LIGHT - points
    to_light /= np.linalg.norm(to_light, axis=1, keepdims=True)
    return 0.4 + 0.6 * np.clip(np.einsum("ij,ij->i", normals, to_light), 0.0, 1.0)


def _shade(points, kind, room_face, box_axis, centre, dirs) -> np.ndarray:
    colour = np.zeros_like(points)
    normals = np.zeros_like(points)
    for face, (base, seed, tile) in FACE_STYLE.items():
        sel = (kind == 0) & (room_face == face)
        axis, high = divmod(face, 2)
        u, v = [points[sel, a] for a in range(3) if a != axis]
        colour[sel] = texture(u, v, base, seed, tile)
        normals[sel, axis] = -1.0 if high else 1.0  # facing into the room
    sel = kind == 1
    for axis in range(3):
        on_axis = sel & (box_axis == axis)
        u, v = [points[on_axis, a] for a in range(3) if a != axis]
        colour[on_axis] = texture(u * 2.0, v * 2.0, (0.7, 0.55, 0.3), 21 + axis, 0.1)
        normals[on_axis, axis] = -np.sign(dirs[on_axis, axis])
    sel = kind == 2
    local = points[sel] - centre
    normals[sel] = local / SPHERE_RADIUS
    longitude = np.arctan2(local[:, 2], local[:, 0]) * 3.0
    latitude = np.arcsin(np.clip(local[:, 1] / SPHERE_RADIUS, -1, 1)) * 3.0
    colour[sel] = texture(longitude, latitude, (1.0, 0.85, 0.2), 31, 0.5)
    return colour * _lambert(points, normals)[:, None]


# ---------------------------------------------------------------------------------------- renderer
def render_view(K: np.ndarray, camera_from_scene: np.ndarray, width: int, height: int, centre: np.ndarray):
    """One image: (rgb [H, W, 3] float in [0, 1], z-depth [H, W], sphere mask [H, W], scene points [H, W, 3])."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pixels = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1)
    rays_camera = pixels @ np.linalg.inv(K).T  # z = 1, so the ray parameter is the z-depth
    rotation, translation = camera_from_scene[:3, :3], camera_from_scene[:3, 3]
    origin = -rotation.T @ translation
    dirs = rays_camera @ rotation  # = (R^T d) per row
    t_room, room_face = hit_room(origin, dirs, ROOM_LO, ROOM_HI)
    t_box, box_axis = hit_box(origin, dirs, PEDESTAL_LO, PEDESTAL_HI)
    t_sphere = hit_sphere(np.broadcast_to(origin, dirs.shape), dirs, centre, SPHERE_RADIUS)
    hits = np.stack([t_room, t_box, t_sphere], axis=1)
    kind = np.argmin(hits, axis=1)  # 0 room, 1 pedestal, 2 sphere
    depth = hits[np.arange(len(kind)), kind]
    points = origin + depth[:, None] * dirs
    rgb = _shade(points, kind, room_face, box_axis, centre, dirs)
    shape = (height, width)
    return rgb.reshape(*shape, 3), depth.reshape(shape), (kind == 2).reshape(shape), points.reshape(*shape, 3)


def render_rig(width: int = 224, height: int = 168, frames: int = 24, cameras: int = 4) -> dict:
    """Render every camera at every frame; returns the ground truth described in the module docstring.

    Keys: images [T, V, H, W, 3] uint8 RGB, depth [T, V, H, W] float32, dynamic_mask [T, V, H, W] bool,
    world_points [T, V, H, W, 3] float32, intrinsics [V, 3, 3], extrinsics [V, 4, 4] (camera-from-world,
    world = camera 0), sphere_centres [T, 3] (world), fps (float).
    """
    K = intrinsics(width, height)
    camera_from_scene = rig_poses(cameras)
    scene_from_world = np.linalg.inv(camera_from_scene[0])
    extrinsics = camera_from_scene @ scene_from_world
    images = np.zeros((frames, cameras, height, width, 3), dtype=np.uint8)
    depth = np.zeros((frames, cameras, height, width), dtype=np.float32)
    mask = np.zeros((frames, cameras, height, width), dtype=bool)
    world = np.zeros((frames, cameras, height, width, 3), dtype=np.float32)
    centres = np.zeros((frames, 3))
    for t in range(frames):
        centre = sphere_centre(t, frames)
        centres[t] = (camera_from_scene[0] @ np.append(centre, 1.0))[:3]
        for v in range(cameras):
            rgb, depth[t, v], mask[t, v], points = render_view(K, camera_from_scene[v], width, height, centre)
            images[t, v] = np.round(rgb * 255.0).astype(np.uint8)
            world[t, v] = points @ camera_from_scene[0][:3, :3].T + camera_from_scene[0][:3, 3]
    return {"images": images, "depth": depth, "dynamic_mask": mask, "world_points": world,
            "intrinsics": np.repeat(K[None], cameras, axis=0), "extrinsics": extrinsics,
            "sphere_centres": centres, "fps": FPS}


# ---------------------------------------------------------------------------------------- files
def write_videos(images: np.ndarray, folder: Path, fps: float = FPS) -> list[Path]:
    """``images`` [T, V, H, W, 3] RGB uint8 -> ``folder/cam{v}.mp4`` (MPEG-4 part 2, 'mp4v')."""
    folder.mkdir(parents=True, exist_ok=True)
    T, V, H, W, _ = images.shape
    paths = []
    for v in range(V):
        path = folder / f"cam{v}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
        if not writer.isOpened():
            raise RuntimeError(f"{path}: OpenCV cannot write mp4v video here")
        for t in range(T):
            writer.write(cv2.cvtColor(images[t, v], cv2.COLOR_RGB2BGR))
        writer.release()
        paths.append(path)
    return paths


def check_videos_decode(paths: list[Path], frames: int, size: tuple[int, int]) -> None:
    """Re-open every written video with OpenCV and insist on ``frames`` frames of ``size`` (w, h)."""
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if (frame.shape[1], frame.shape[0]) != tuple(size):
                raise RuntimeError(f"{path}: decoded frame is {frame.shape[1]}x{frame.shape[0]}")
            count += 1
        capture.release()
        if count != frames:
            raise RuntimeError(f"{path}: decodes to {count} frames, expected {frames}")


def write_ground_truth(rig: dict, clip: Path, video_names: list[str]) -> Path:
    """``clip/gt/`` in the ground-truth clip format (replacing an earlier gt/ written by page4d)."""
    names = [Path(name).stem for name in video_names]
    about = ("Synthetic rig rendered by examples/make_synthetic_rig.py (metres; world = cam0). "
             "Dynamic masks = the moving sphere.")
    return write_gt(clip, names, rig["intrinsics"], rig["extrinsics"], rig["depth"], rig["dynamic_mask"],
                    fps=rig["fps"], sources=video_names, depth_scale=DEPTH_SCALE, about=about, overwrite=True)


def load_ground_truth(clip: Path) -> dict:
    """Read the ground truth of ``clip`` (e.g. examples/cams) with ``read_gt_clip``: intrinsics [V, 3, 3],
    extrinsics [V, 4, 4], depth [T, V, H, W] float32 (metres), dynamic_mask [T, V, H, W] bool,
    image_size (w, h), fps, camera names."""
    gt = read_gt_clip(clip)
    V, T = len(gt.camera_names), gt.num_frames
    depth = np.stack([np.stack([gt.depth(v, t) for v in range(V)]) for t in range(T)])
    mask = np.stack([np.stack([gt.mask(v, t) for v in range(V)]) for t in range(T)])
    return {"names": gt.camera_names, "intrinsics": np.stack([gt.K(v, 0) for v in range(V)]),
            "extrinsics": np.stack([gt.cam_from_world(v, 0) for v in range(V)]),
            "depth": depth, "dynamic_mask": mask, "image_size": gt.image_size(0), "fps": gt.fps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder that receives cams/ (videos + gt/) (default: this examples folder)")
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=168)
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    rig = render_rig(args.width, args.height, args.frames, cameras=4)
    videos = write_videos(rig["images"], args.out / "cams", rig["fps"])
    check_videos_decode(videos, args.frames, (args.width, args.height))
    gt = write_ground_truth(rig, args.out / "cams", [path.name for path in videos])
    print(f"wrote {len(videos)} videos to {args.out / 'cams'} and ground truth to {gt}")


if __name__ == "__main__":
    main()
