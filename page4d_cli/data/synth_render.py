"""Vectorised numpy ray casting of a ``SynthScene`` (room + static boxes + moving spheres/boxes).

One ray per pixel centre (no anti-aliasing), so depth, cameras and masks are exact. A frame renders all
V cameras at once: rays ``[V*H*W]``. Rays are built in camera coordinates with z = 1, so the ray parameter
of a hit IS its z-depth. Shading: procedural texture (tiles + two octaves of integer-hashed value noise, so
every patch is distinctive and rendering is bit-reproducible) times Lambert from one point light.

Object poses: ``R`` object-to-scene rotation ``[3, 3]``, ``c`` centre ``[3]``; a box has half extents
``[3]`` along its own axes, a sphere a radius. Textures live in object coordinates, so they move with
the object (what optical flow / tracking should see).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# ----------------------------------------------------------------------------------------- textures
def hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic lattice noise in [0, 1] from integer coordinates (no floating-point hashing).

    32-bit arithmetic that wraps (uint32), i.e. every product and shift taken modulo 2^32.
    """
    x = ix.astype(np.int32).view(np.uint32)  # floor()ed floats -> two's complement bits
    y = iy.astype(np.int32).view(np.uint32)
    h = (x * np.uint32(73856093)) ^ (y * np.uint32(19349663)) ^ np.uint32((seed * 83492791) & 0xFFFFFFFF)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    h ^= h >> np.uint32(16)
    return (h & np.uint32(0xFFFF)) / 65535.0


def value_noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] (smoothstep interpolation of ``hash01`` on the integer lattice)."""
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    n00, n10 = hash01(iu, iv, seed), hash01(iu + 1, iv, seed)
    n01, n11 = hash01(iu, iv + 1, seed), hash01(iu + 1, iv + 1, seed)
    return (n00 * (1 - fu) + n10 * fu) * (1 - fv) + (n01 * (1 - fu) + n11 * fu) * fv


def texture(u: np.ndarray, v: np.ndarray, base, seed: int, tile: float) -> np.ndarray:
    """``[N, 3]`` colour in [0, 1]: tiles of size ``tile`` plus two octaves of noise, tinted by ``base``."""
    checker = (np.floor(u / tile) + np.floor(v / tile)) % 2
    noise = 0.6 * value_noise(u * 3.0, v * 3.0, seed) + 0.4 * value_noise(u * 11.0, v * 11.0, seed + 1)
    shade = 0.45 + 0.25 * checker + 0.45 * noise
    return np.clip(np.asarray(base, dtype=np.float64)[None, :] * shade[:, None], 0.0, 1.0)


def lambert(points: np.ndarray, normals: np.ndarray, light: np.ndarray, ambient: float = 0.4) -> np.ndarray:
    """``[N]`` brightness: ambient + (1 - ambient) * max(0, n . l) for a point light at ``light``."""
    to_light = light - points
    to_light /= np.linalg.norm(to_light, axis=1, keepdims=True)
    return ambient + (1.0 - ambient) * np.clip(np.einsum("ij,ij->i", normals, to_light), 0.0, 1.0)


# --------------------------------------------------------------------------------------- intersect
def hit_room(origins: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Exit distance ``[N]`` from inside the box [lo, hi] and the face hit ``[N]`` (axis * 2 + high side)."""
    with np.errstate(divide="ignore"):
        to_hi = (hi - origins) / dirs
        to_lo = (lo - origins) / dirs
    exits = np.where(dirs > 0, to_hi, to_lo)
    exits[dirs == 0] = np.inf
    axis = np.argmin(exits, axis=1)
    rows = np.arange(len(dirs))
    return exits[rows, axis], axis * 2 + (dirs[rows, axis] > 0)


def hit_box(origins: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Entry distance ``[N]`` into the axis-aligned box [lo, hi] seen from outside (inf if missed) and the
    entry face's axis ``[N]``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - origins) / dirs
        t2 = (hi - origins) / dirs
    near = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    far = np.where(np.isnan(t2), np.inf, np.maximum(t1, t2))
    axis = np.argmax(near, axis=1)
    t_near = near.max(axis=1)
    t_far = far.min(axis=1)
    return np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf), axis


def hit_sphere(origins: np.ndarray, dirs: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Nearest positive hit distance ``[N]`` with a sphere (inf if missed)."""
    offset = origins - centre
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = 2.0 * np.einsum("ij,ij->i", dirs, offset)
    c = np.einsum("ij,ij->i", offset, offset) - radius**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    return np.where((disc >= 0) & (t > 0), t, np.inf)


# ----------------------------------------------------------------------------------------- scene parts
@dataclass
class Style:
    """Surface look: tint (RGB in [0, 1]), noise seed, tile size and a scale of the texture coordinates."""

    base: tuple[float, float, float]
    seed: int
    tile: float
    uv_scale: float = 1.0


@dataclass
class Solid:
    """A box (``half`` extents) or sphere (``radius``) with a pose per frame: R ``[T, 3, 3]``, c ``[T, 3]``."""

    kind: str  # "box" | "sphere"
    R: np.ndarray
    c: np.ndarray
    style: Style
    half: np.ndarray | None = None
    radius: float = 0.0
    moving: bool = False  # part of the dynamic mask


def _local(solid: Solid, t: int, origins: np.ndarray, dirs: np.ndarray):
    """Rays in the solid's frame at frame t (row vectors: x_local = (x - c) @ R)."""
    R, c = solid.R[t], solid.c[t]
    return (origins - c) @ R, dirs @ R


def _bounding_candidates(origins: np.ndarray, dirs: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Indices of the rays whose line meets the sphere (centre, radius) ahead of the origin."""
    offset = origins - centre
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = np.einsum("ij,ij->i", dirs, offset)
    c = np.einsum("ij,ij->i", offset, offset) - radius**2
    disc = b * b - a * c
    return np.flatnonzero((disc >= 0) & (-b + np.sqrt(np.maximum(disc, 0.0)) > 0))


def hit_solid(solid: Solid, t: int, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Hit distance ``[N]`` of every ray with ``solid`` at frame ``t`` (inf if missed).

    Boxes are tested only on the rays that meet their bounding sphere (a small share of the image).
    """
    if solid.kind == "sphere":
        return hit_sphere(origins, dirs, solid.c[t], solid.radius)
    distance = np.full(len(dirs), np.inf)
    rows = _bounding_candidates(origins, dirs, solid.c[t], float(np.linalg.norm(solid.half)) * 1.0001)
    if rows.size:
        local_o, local_d = _local(solid, t, origins[rows], dirs[rows])
        distance[rows] = hit_box(local_o, local_d, -solid.half, solid.half)[0]
    return distance


def shade_solid(solid: Solid, t: int, points: np.ndarray, dirs: np.ndarray):
    """(colour ``[N, 3]``, normal ``[N, 3]`` in the scene frame) at hit ``points`` on ``solid``."""
    R, c = solid.R[t], solid.c[t]
    local = (points - c) @ R
    style = solid.style
    if solid.kind == "sphere":
        normals_local = local / solid.radius
        longitude = np.arctan2(local[:, 2], local[:, 0]) * 3.0 * style.uv_scale
        latitude = np.arcsin(np.clip(local[:, 1] / solid.radius, -1, 1)) * 3.0 * style.uv_scale
        return texture(longitude, latitude, style.base, style.seed, style.tile), normals_local @ R.T
    # the entry face: the axis where the local point lies on the box surface (largest relative coordinate)
    axis = np.argmax(np.abs(local) / solid.half, axis=1)
    colour = np.zeros_like(points)
    normals_local = np.zeros_like(points)
    for a in range(3):
        sel = axis == a
        u, v = [local[sel, b] * style.uv_scale for b in range(3) if b != a]
        colour[sel] = texture(u, v, style.base, style.seed + a, style.tile)
        normals_local[sel, a] = np.sign(local[sel, a])
    return colour, normals_local @ R.T


@dataclass
class SynthScene:
    """Everything needed to render a clip, in a Y-up "scene" frame (metres).

    K ``[T, V, 3, 3]`` (pixel-centre convention) and camera_from_scene ``[T, V, 4, 4]`` (OpenCV axes) give
    each camera at each frame; the room is the box [room_lo, room_hi] seen from inside.
    """

    width: int
    height: int
    K: np.ndarray
    camera_from_scene: np.ndarray
    room_lo: np.ndarray
    room_hi: np.ndarray
    room_styles: list[Style]  # one per face id (axis * 2 + high side)
    solids: list[Solid]
    light: np.ndarray
    ambient: float = 0.4

    @property
    def num_frames(self) -> int:
        return self.camera_from_scene.shape[0]

    @property
    def num_cameras(self) -> int:
        return self.camera_from_scene.shape[1]


def camera_rays(scene: SynthScene, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(origins ``[V*H*W, 3]``, directions ``[V*H*W, 3]``) in the scene frame; each direction is the scene
    image of the camera-frame ray (x, y, 1), so hit distances are z-depths."""
    cols, rows = np.meshgrid(np.arange(scene.width) + 0.5, np.arange(scene.height) + 0.5)
    pixels = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1)
    origins, dirs = [], []
    for v in range(scene.num_cameras):
        pose = scene.camera_from_scene[t, v]
        rays = pixels @ np.linalg.inv(scene.K[t, v]).T
        rotation, translation = pose[:3, :3], pose[:3, 3]
        dirs.append(rays @ rotation)  # R^T d per row
        origins.append(np.broadcast_to(-rotation.T @ translation, rays.shape))
    return np.concatenate(origins), np.concatenate(dirs)


def _groups(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, bounds): ``labels[order]`` is sorted and label k occupies ``order[bounds[k]:bounds[k+1]]``.

    One gather per array and contiguous slices are much cheaper than a boolean mask per label.
    """
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=count))])
    return order, bounds


def _shade_room(scene: SynthScene, points: np.ndarray, faces: np.ndarray):
    colour = np.empty_like(points)
    normals = np.zeros_like(points)
    order, bounds = _groups(faces, 6)
    sorted_points = points[order]
    for face, style in enumerate(scene.room_styles):
        lo, hi = bounds[face], bounds[face + 1]
        if lo == hi:
            continue
        axis, high = divmod(face, 2)
        rows = order[lo:hi]
        u, v = [sorted_points[lo:hi, a] * style.uv_scale for a in range(3) if a != axis]
        colour[rows] = texture(u, v, style.base, style.seed, style.tile)
        normals[rows, axis] = -1.0 if high else 1.0  # facing into the room
    return colour, normals


def render_frame(scene: SynthScene, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``t`` of every camera: (rgb ``[V, H, W, 3]`` float in [0, 1], z-depth ``[V, H, W]`` float64,
    dynamic mask ``[V, H, W]`` bool = pixels of moving solids)."""
    origins, dirs = camera_rays(scene, t)
    t_room, faces = hit_room(origins, dirs, scene.room_lo, scene.room_hi)
    hits = np.stack([t_room] + [hit_solid(solid, t, origins, dirs) for solid in scene.solids], axis=1)
    which = np.argmin(hits, axis=1)  # 0 = room, k = solids[k - 1]
    depth = np.take_along_axis(hits, which[:, None], axis=1)[:, 0]
    points = origins + depth[:, None] * dirs
    colour = np.empty_like(points)
    normals = np.empty_like(points)
    dynamic = np.zeros(len(which), dtype=bool)
    order, bounds = _groups(which, len(scene.solids) + 1)
    room_rows = order[bounds[0]:bounds[1]]
    colour[room_rows], normals[room_rows] = _shade_room(scene, points[room_rows], faces[room_rows])
    for k, solid in enumerate(scene.solids, start=1):
        rows = order[bounds[k]:bounds[k + 1]]
        if rows.size:
            colour[rows], normals[rows] = shade_solid(solid, t, points[rows], dirs[rows])
            dynamic[rows] = solid.moving
    rgb = colour * lambert(points, normals, scene.light, scene.ambient)[:, None]
    shape = (scene.num_cameras, scene.height, scene.width)
    return rgb.reshape(*shape, 3), depth.reshape(shape), dynamic.reshape(shape)
