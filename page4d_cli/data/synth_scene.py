"""Random scenes for ``page4d data synth``: rooms, static furniture, 1-3 moving objects, static or
hand-held-like rigs, per-camera intrinsics. Everything is drawn from one ``numpy.random.Generator``, so
a (seed, clip index) pair always gives the same scene.

Scene frame: Y up, metres, floor at y = 0, room centred on the y axis. Cameras stand on a ring around the
centre, looking at it; moving objects travel within a disc inside the ring.
"""

from __future__ import annotations

import numpy as np

from page4d_cli.data.synth_render import Solid, Style, SynthScene

ROOM_HALF = (2.5, 4.0)  # half width / depth range of the room (m)
ROOM_HEIGHT = (2.4, 3.2)
HFOV_DEG = (50.0, 80.0)  # per-camera horizontal field of view
MOVING_DISPLACEMENT = (0.3, 1.0)  # metres travelled by a moving object over the clip
STOP_PROBABILITY = 0.35  # share of moving objects that stop part-way


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


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` of ``angle`` radians about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def intrinsics(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """K with a random field of view, slightly different fx/fy and an off-centre principal point."""
    focal = width / 2.0 / np.tan(np.radians(rng.uniform(*HFOV_DEG)) / 2.0)
    return np.array([[focal, 0.0, width * (0.5 + rng.uniform(-0.03, 0.03))],
                     [0.0, focal * rng.uniform(0.98, 1.02), height * (0.5 + rng.uniform(-0.03, 0.03))],
                     [0.0, 0.0, 1.0]])


def _style(rng: np.random.Generator, tile: tuple[float, float], bright: float = 0.55) -> Style:
    base = tuple(float(x) for x in np.clip(bright + rng.uniform(-0.35, 0.45, 3), 0.15, 1.0))
    return Style(base=base, seed=int(rng.integers(1, 1_000_000)), tile=float(rng.uniform(*tile)),
                 uv_scale=float(rng.uniform(0.8, 2.5)))


def _progress(num_frames: int, stop_at: float) -> np.ndarray:
    """[T] share of the path covered at each frame: linear in time, held at 1 after ``stop_at``."""
    time = np.arange(num_frames) / max(num_frames - 1, 1)
    return np.minimum(time / stop_at, 1.0)


def _static_box(rng: np.random.Generator, region: float, num_frames: int) -> Solid:
    half = rng.uniform([0.15, 0.1, 0.15], [0.45, 0.5, 0.45])
    radius, angle = region * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    centre = np.array([radius * np.cos(angle), half[1], radius * np.sin(angle)])
    rotation = axis_angle([0.0, 1.0, 0.0], rng.uniform(0, np.pi))
    return Solid(kind="box", R=np.broadcast_to(rotation, (num_frames, 3, 3)).copy(),
                 c=np.broadcast_to(centre, (num_frames, 3)).copy(), style=_style(rng, (0.05, 0.3)), half=half)


def _moving_solid(rng: np.random.Generator, region: float, ceiling: float, num_frames: int) -> Solid:
    """A sphere or box on a bent path (some stop part-way), spinning about a random axis."""
    kind = "sphere" if rng.uniform() < 0.5 else "box"
    size = rng.uniform(0.12, 0.3)
    half = rng.uniform(0.1, 0.25, 3) if kind == "box" else None
    extent = size if kind == "sphere" else float(np.linalg.norm(half))
    radius, angle = 0.8 * region * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    start = np.array([radius * np.cos(angle), rng.uniform(0.3, 1.2), radius * np.sin(angle)])
    heading = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(heading), rng.uniform(-0.3, 0.3), np.sin(heading)])
    direction /= np.linalg.norm(direction)
    side = np.cross(direction, [0.0, 1.0, 0.0])
    side /= max(np.linalg.norm(side), 1e-9)
    stop_at = rng.uniform(0.35, 0.7) if rng.uniform() < STOP_PROBABILITY else 1.0
    s = _progress(num_frames, stop_at)[:, None]
    travel = rng.uniform(*MOVING_DISPLACEMENT)
    bend = rng.uniform(-0.6, 0.6)
    path = start + travel * (s * direction + bend * 4 * s * (1 - s) * side)
    flat = np.linalg.norm(path[:, [0, 2]], axis=1, keepdims=True)
    path[:, [0, 2]] *= np.minimum(1.0, region / np.maximum(flat, 1e-9))  # stay inside the disc
    path[:, 1] = np.clip(path[:, 1], extent, ceiling - extent - 0.2)
    spin_axis = rng.normal(size=3)
    spin = rng.uniform(0.0, 1.5)
    start_rotation = axis_angle(rng.normal(size=3), rng.uniform(0, np.pi))
    rotations = np.stack([axis_angle(spin_axis, spin * float(k)) @ start_rotation for k in s[:, 0]])
    return Solid(kind=kind, R=rotations, c=path, style=_style(rng, (0.05, 0.25), bright=0.7), half=half,
                 radius=size if kind == "sphere" else 0.0, moving=True)


def _rig_poses(rng: np.random.Generator, num_cameras: int, num_frames: int, ring: float,
               moving: bool) -> np.ndarray:
    """camera_from_scene ``[T, V, 4, 4]``: a ring of cameras looking inwards; a moving rig drifts, turns
    and shakes smoothly (different for every camera)."""
    spread = rng.uniform(0.6, 1.0) * 2 * np.pi
    first = rng.uniform(0, 2 * np.pi)
    base = []
    for v in range(num_cameras):
        azimuth = first + spread * v / num_cameras + rng.uniform(-0.15, 0.15)
        distance = ring * rng.uniform(0.9, 1.0)
        eye = np.array([distance * np.cos(azimuth), rng.uniform(0.9, 1.9), distance * np.sin(azimuth)])
        target = np.array([rng.uniform(-0.3, 0.3), rng.uniform(0.4, 0.9), rng.uniform(-0.3, 0.3)])
        pose = look_at(eye, target)
        pose[:3, :3] = axis_angle([0.0, 0.0, 1.0], np.radians(rng.uniform(-4, 4))) @ pose[:3, :3]  # roll
        base.append(np.linalg.inv(pose))  # scene_from_camera
    time = np.arange(num_frames) / max(num_frames - 1, 1)
    poses = np.zeros((num_frames, num_cameras, 4, 4))
    if moving:
        amplitude = rng.uniform([0.1, 0.02, 0.1], [0.3, 0.08, 0.3])
        frequency, phase = rng.uniform(0.3, 0.9, 3), rng.uniform(0, 2 * np.pi, 3)
        yaw_total = rng.uniform(-0.3, 0.3)
        shake_phase = rng.uniform(0, 2 * np.pi, (num_cameras, 6))  # per camera: smooth, not shared
    for t in range(num_frames):
        rig = np.eye(4)
        if moving:
            rig[:3, :3] = axis_angle([0.0, 1.0, 0.0], yaw_total * time[t])
            rig[:3, 3] = amplitude * (np.sin(2 * np.pi * frequency * time[t] + phase) - np.sin(phase))
        for v in range(num_cameras):
            shake = np.eye(4)
            if moving:
                local = shake_phase[v]
                wobble = 0.02 * np.sin(2 * np.pi * 1.3 * time[t] + local[:3])
                shake[:3, :3] = axis_angle([1.0, 0.0, 0.0], wobble[0]) @ axis_angle([0.0, 1.0, 0.0], wobble[1])
                shake[:3, 3] = 0.02 * np.sin(2 * np.pi * 1.1 * time[t] + local[3:])
            poses[t, v] = np.linalg.inv(rig @ base[v] @ shake)
    return poses


def sample_scene(rng: np.random.Generator, width: int, height: int, num_cameras: int, num_frames: int,
                 moving_rig: bool) -> SynthScene:
    """A random scene (see the module docstring) with its cameras at every frame."""
    half_x, half_z = rng.uniform(*ROOM_HALF, 2)
    ceiling = rng.uniform(*ROOM_HEIGHT)
    ring = min(half_x, half_z) - 0.7
    solids = [_static_box(rng, ring - 1.2, num_frames) for _ in range(int(rng.integers(1, 4)))]
    solids += [_moving_solid(rng, ring - 1.1, ceiling, num_frames) for _ in range(int(rng.integers(1, 4)))]
    K = np.stack([intrinsics(rng, width, height) for _ in range(num_cameras)])
    return SynthScene(
        width=width, height=height, K=np.broadcast_to(K, (num_frames, num_cameras, 3, 3)).copy(),
        camera_from_scene=_rig_poses(rng, num_cameras, num_frames, ring, moving_rig),
        room_lo=np.array([-half_x, 0.0, -half_z]), room_hi=np.array([half_x, ceiling, half_z]),
        room_styles=[_style(rng, (0.3, 1.0)) for _ in range(6)], solids=solids,
        light=np.array([rng.uniform(-1, 1), ceiling - 0.2, rng.uniform(-1, 1)]), ambient=float(rng.uniform(0.3, 0.5)),
    )
