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
``render_rig`` and re-render the ground truth that ``main`` wrote next to the videos.

Command line: ``python examples/make_synthetic_rig.py [--out examples]`` writes ``<out>/cams/camV.mp4``
(what ``page4d reconstruct`` reads) and ``<out>/cams_gt/`` (``cameras.json`` and ``ground_truth.npz``;
see ``load_ground_truth``). ``cams_gt`` sits beside ``cams``, not inside, so it is not read as a camera.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

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
DEPTH_SCALE = 1e-3  # metres per depth unit in ground_truth.npz (1 mm; at most 32.7 m)


# ----------------------------------------------------------------------------------------- geometry
def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """4 x 4 camera-from-scene with OpenCV axes: z towards ``target``, y pointing down."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward])
    pose[:3, 3] = -pose[:3, :3] @ eye
    return pose


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


# --------------------------------------------------------------------------------------- intersect
def _hit_room(origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance from inside the room box and the face hit (axis * 2 + (1 if the high side))."""
    with np.errstate(divide="ignore"):
        to_hi = (ROOM_HI - origin) / dirs
        to_lo = (ROOM_LO - origin) / dirs
    exits = np.where(dirs > 0, to_hi, to_lo)
    exits[dirs == 0] = np.inf
    axis = np.argmin(exits, axis=1)
    t = exits[np.arange(len(dirs)), axis]
    high = dirs[np.arange(len(dirs)), axis] > 0
    return t, axis * 2 + high


def _hit_box(origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Entry distance into a box seen from outside (inf if missed) and the entry face's axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - origin) / dirs
        t2 = (hi - origin) / dirs
    near = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    far = np.where(np.isnan(t2), np.inf, np.maximum(t1, t2))
    axis = np.argmax(near, axis=1)
    t_near = near.max(axis=1)
    t_far = far.min(axis=1)
    t = np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)
    return t, axis


def _hit_sphere(origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray) -> np.ndarray:
    offset = origin - centre
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = 2.0 * dirs @ offset
    c = offset @ offset - SPHERE_RADIUS**2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (-b - root) / (2 * a)
    return np.where((disc >= 0) & (t > 0), t, np.inf)


# ----------------------------------------------------------------------------------------- shading
def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic lattice noise in [0, 1] from integer coordinates (no floating-point hashing)."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (seed * 83492791)
    h &= 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h ^= h >> 16
    return (h & 0xFFFF) / 65535.0


def _value_noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    n00, n10 = _hash01(iu, iv, seed), _hash01(iu + 1, iv, seed)
    n01, n11 = _hash01(iu, iv + 1, seed), _hash01(iu + 1, iv + 1, seed)
    return (n00 * (1 - fu) + n10 * fu) * (1 - fv) + (n01 * (1 - fu) + n11 * fu) * fv


def _texture(u: np.ndarray, v: np.ndarray, base: tuple, seed: int, tile: float) -> np.ndarray:
    """[N, 3] colour in [0, 1]: tiles plus two octaves of noise, so every patch is distinctive."""
    checker = (np.floor(u / tile) + np.floor(v / tile)) % 2
    noise = 0.6 * _value_noise(u * 3.0, v * 3.0, seed) + 0.4 * _value_noise(u * 11.0, v * 11.0, seed + 1)
    shade = 0.45 + 0.25 * checker + 0.45 * noise
    return np.clip(np.asarray(base)[None, :] * shade[:, None], 0.0, 1.0)


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
        colour[sel] = _texture(u, v, base, seed, tile)
        normals[sel, axis] = -1.0 if high else 1.0  # facing into the room
    sel = kind == 1
    for axis in range(3):
        on_axis = sel & (box_axis == axis)
        u, v = [points[on_axis, a] for a in range(3) if a != axis]
        colour[on_axis] = _texture(u * 2.0, v * 2.0, (0.7, 0.55, 0.3), 21 + axis, 0.1)
        normals[on_axis, axis] = -np.sign(dirs[on_axis, axis])
    sel = kind == 2
    local = points[sel] - centre
    normals[sel] = local / SPHERE_RADIUS
    longitude = np.arctan2(local[:, 2], local[:, 0]) * 3.0
    latitude = np.arcsin(np.clip(local[:, 1] / SPHERE_RADIUS, -1, 1)) * 3.0
    colour[sel] = _texture(longitude, latitude, (1.0, 0.85, 0.2), 31, 0.5)
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
    t_room, room_face = _hit_room(origin, dirs)
    t_box, box_axis = _hit_box(origin, dirs, PEDESTAL_LO, PEDESTAL_HI)
    t_sphere = _hit_sphere(origin, dirs, centre)
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


def write_ground_truth(rig: dict, folder: Path) -> None:
    """``cameras.json`` (K, camera-from-world, size, fps) and ``ground_truth.npz`` (depth, masks).

    Arrays are stored time-innermost ([V, H, W, T]) because the scene is mostly static: each pixel's
    values repeat over time, which deflate compresses to almost nothing. Depth is quantized to
    ``DEPTH_SCALE`` and stored as differences along each image row (walls and floor are smooth, so the
    differences are small numbers that compress well): ``depth = cumsum(depth_dx, axis=W) * depth_scale``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    T, V, H, W = rig["depth"].shape
    if rig["depth"].max() >= 32767 * DEPTH_SCALE:
        raise RuntimeError("depth exceeds the int16 range; raise DEPTH_SCALE")
    cameras = {f"cam{v}": {"K": rig["intrinsics"][v].tolist(), "camera_from_world_4x4": rig["extrinsics"][v].tolist()}
               for v in range(V)}
    about = ("Synthetic rig rendered by examples/make_synthetic_rig.py. K uses the pixel-centre convention "
             "(pixel row i, column j has its centre at (j + 0.5, i + 0.5)). camera_from_world_4x4 maps world "
             "points to OpenCV camera coordinates; the world frame is cam0. ground_truth.npz: depth_dx_vhwt "
             "(int16, z-depth in metres = cumsum over W (axis 2) * depth_scale) and dynamic_mask_vhwt "
             "(uint8, 1 = moving sphere), both [V, H, W, T]; load with load_ground_truth().")
    meta = {"_about": about, "image_size_wh": [W, H], "frames": T, "fps": rig["fps"], "depth_scale": DEPTH_SCALE,
            "cameras": cameras}
    (folder / "cameras.json").write_text(json.dumps(meta, indent=1))
    depth_units = np.round(rig["depth"] / DEPTH_SCALE).astype(np.int64)
    depth_dx = np.diff(depth_units, axis=3, prepend=0).astype(np.int16)  # [T, V, H, W]
    mask = rig["dynamic_mask"].astype(np.uint8)
    np.savez_compressed(folder / "ground_truth.npz",
                        depth_dx_vhwt=np.ascontiguousarray(depth_dx.transpose(1, 2, 3, 0)),
                        dynamic_mask_vhwt=np.ascontiguousarray(mask.transpose(1, 2, 3, 0)))


def load_ground_truth(folder: Path) -> dict:
    """Read ``cams_gt``: intrinsics [V, 3, 3], extrinsics [V, 4, 4], depth [T, V, H, W] float32 (metres),
    dynamic_mask [T, V, H, W] bool, image_size (w, h), fps, camera names."""
    folder = Path(folder)
    meta = json.loads((folder / "cameras.json").read_text())
    names = sorted(meta["cameras"], key=lambda name: int(name[3:]))
    with np.load(folder / "ground_truth.npz") as data:
        depth_units = np.cumsum(data["depth_dx_vhwt"].astype(np.int64), axis=2)  # [V, H, W, T]
        depth = depth_units.transpose(3, 0, 1, 2).astype(np.float32) * np.float32(meta["depth_scale"])
        mask = data["dynamic_mask_vhwt"].transpose(3, 0, 1, 2).astype(bool)
    return {"names": names, "intrinsics": np.array([meta["cameras"][n]["K"] for n in names]),
            "extrinsics": np.array([meta["cameras"][n]["camera_from_world_4x4"] for n in names]),
            "depth": depth, "dynamic_mask": mask, "image_size": tuple(meta["image_size_wh"]), "fps": meta["fps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder that receives cams/ and cams_gt/ (default: this examples folder)")
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=168)
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    rig = render_rig(args.width, args.height, args.frames, cameras=4)
    videos = write_videos(rig["images"], args.out / "cams", rig["fps"])
    check_videos_decode(videos, args.frames, (args.width, args.height))
    write_ground_truth(rig, args.out / "cams_gt")
    print(f"wrote {len(videos)} videos to {args.out / 'cams'} and ground truth to {args.out / 'cams_gt'}")


if __name__ == "__main__":
    main()
