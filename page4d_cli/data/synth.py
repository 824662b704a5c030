"""``page4d data synth``: procedural multi-camera dynamic scenes written as ground-truth clips.

    from page4d_cli.data.synth import SynthOptions, synth_clips
    paths = synth_clips("synth/", SynthOptions(clips=64, cameras=4, frames=8, width=112, height=84, seed=0))

Each clip ``OUT/clip_NNNN`` is an input folder (``camVV/frame_TTTT.png``, lossless) plus ``gt/`` (see
``gt_clip``): exact z-depth, K, camera-from-world and dynamic masks (pixels of the objects that move during
the clip, also while they pause). Scenes: a textured room, 1-3 static boxes, 1-3 moving spheres/boxes
(bent paths, different speeds, some stop part-way, spinning), a ring of cameras with different intrinsics;
with ``rig="mixed"`` even clips have a static rig and odd clips a hand-held-like moving one. The GT world
frame is camera 0 at frame 0 (as in ``reconstruct``'s outputs), in metres.

Clip ``i`` depends only on (seed, i): the same seed always writes identical files, and clip 3 of a
64-clip run equals clip 3 of a 4-clip run.
"""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from models.checks import Checks
from page4d_cli.data.errors import DataFormatError
from page4d_cli.data.gt_write import write_gt_clip
from page4d_cli.data.synth_render import SynthScene, render_frame
from page4d_cli.data.synth_scene import sample_scene
from page4d_cli.pipeline.output_dir import check_writable

RIG_CHOICES = ("mixed", "static", "moving")
IMAGE_FORMATS = ("png", "mp4")
PNG_LEVEL = 3  # zlib level of the written PNGs: writing speed matters more than size for training data
check = Checks(DataFormatError)


@dataclass(frozen=True)
class SynthOptions:
    """What ``synth_clips`` makes; checked at construction (``DataFormatError`` naming the option)."""

    clips: int = 8
    cameras: int = 4
    frames: int = 8
    width: int = 112
    height: int = 84
    seed: int = 0
    rig: str = "mixed"  # mixed (even clips static, odd moving) | static | moving
    fps: float = 30.0
    image_format: str = "png"  # png (lossless image folders) | mp4 (videos, lossy)
    overwrite: bool = False
    workers: int = 1  # processes rendering clips in parallel (results do not depend on it)

    def __post_init__(self) -> None:
        for name, low in (("clips", 1), ("cameras", 1), ("frames", 1), ("width", 8), ("height", 8), ("workers", 1)):
            value = getattr(self, name)
            check.option(isinstance(value, (int, np.integer)) and value >= low, f"--{name}", value,
                         f"must be an integer >= {low}")
        check.option(self.cameras <= 99, "--cameras", self.cameras, "at most 99 (camera folders are cam00..cam98)")
        check.option_choice("--rig", self.rig, RIG_CHOICES)
        check.option_choice("--image-format", self.image_format, IMAGE_FORMATS)
        check.option(self.fps > 0, "--fps", self.fps, "must be > 0")

    def moving_rig(self, index: int) -> bool:
        return self.rig == "moving" or (self.rig == "mixed" and index % 2 == 1)


def parse_size(text: str) -> tuple[int, int]:
    """``"112x84"`` -> (112, 84); ``DataFormatError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise DataFormatError(f"--size {text}: expected WIDTHxHEIGHT in pixels, e.g. 112x84")
    return int(match.group(1)), int(match.group(2))


def clip_name(index: int) -> str:
    return f"clip_{index:04d}"


def camera_names(count: int) -> list[str]:
    return [f"cam{v:02d}" for v in range(count)]


def make_scene(options: SynthOptions, index: int) -> SynthScene:
    """The scene of clip ``index`` (deterministic in (seed, index))."""
    rng = np.random.default_rng([options.seed, index])
    return sample_scene(rng, options.width, options.height, options.cameras, options.frames,
                        options.moving_rig(index))


def render_clip(scene: SynthScene) -> dict:
    """Render every frame. Returns images ``[T, V, H, W, 3]`` uint8, depth ``[T, V, H, W]`` float32,
    masks ``[T, V, H, W]`` bool, K ``[T, V, 3, 3]`` and camera_from_world ``[T, V, 4, 4]`` (world = camera 0
    at frame 0)."""
    T, V, H, W = scene.num_frames, scene.num_cameras, scene.height, scene.width
    images = np.zeros((T, V, H, W, 3), dtype=np.uint8)
    depth = np.zeros((T, V, H, W), dtype=np.float32)
    masks = np.zeros((T, V, H, W), dtype=bool)
    for t in range(T):
        rgb, depth[t], masks[t] = render_frame(scene, t)
        images[t] = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    scene_from_world = np.linalg.inv(scene.camera_from_scene[0, 0])
    return {"images": images, "depth": depth, "masks": masks, "K": scene.K.copy(),
            "camera_from_world": scene.camera_from_scene @ scene_from_world}


def check_output(out: Path, options: SynthOptions) -> None:
    """Fail before any rendering when the clips cannot be written: ``out`` is a file, lies under a file,
    cannot be created (``/proc/x``, a read-only mount: ``output_dir.check_writable``'s probe), or already
    holds the clips (without ``overwrite``). One-line ``Page4DError``s naming ``out``."""
    if out.exists() and not out.is_dir():
        raise DataFormatError(f"{out}: is a file; choose a folder for the clips")
    check_writable(out / clip_name(0), name=str(out))  # where the clips' temporary folders will be made
    if not options.overwrite:
        existing = [clip_name(i) for i in range(options.clips) if (out / clip_name(i)).exists()]
        if existing:
            raise DataFormatError(f"{out / existing[0]}: already exists ({len(existing)} of the clips do); "
                                  f"pass --overwrite or choose another folder")


def synth_one(out: Path, options: SynthOptions, index: int) -> Path:
    """Render clip ``index`` and write it to ``out/clip_NNNN`` (atomically); return the folder."""
    scene = make_scene(options, index)
    clip = render_clip(scene)
    rig = "moving" if options.moving_rig(index) else "static"
    about = (f"page4d data synth: seed {options.seed}, clip {index}, {rig} rig, "
             f"{sum(s.moving for s in scene.solids)} moving and {sum(not s.moving for s in scene.solids)} "
             f"static objects; metres")
    return write_gt_clip(out / clip_name(index), camera_names(options.cameras), clip["images"], clip["K"],
                         clip["camera_from_world"], clip["depth"], clip["masks"], fps=options.fps,
                         image_format=options.image_format, about=about, overwrite=options.overwrite,
                         png_level=PNG_LEVEL)


def synth_clips(out, options: Optional[SynthOptions] = None,
                progress: Optional[Callable[[int, int], None]] = None) -> list[Path]:
    """Render and write ``options.clips`` clips into ``out``; return their folders (clip order).

    progress(done, total) is called after each clip. Each clip is written atomically; with
    ``options.workers > 1`` clips are rendered by that many processes (same files either way).
    """
    options = SynthOptions() if options is None else options
    out = Path(out)
    check_output(out, options)
    indices = range(options.clips)
    if options.workers == 1:
        paths = []
        for index in indices:
            paths.append(synth_one(out, options, index))
            if progress is not None:
                progress(index + 1, options.clips)
        return paths
    with ProcessPoolExecutor(max_workers=options.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(synth_one, out, options, index) for index in indices]
        for done, _ in enumerate(as_completed(futures), start=1):
            if progress is not None:
                progress(done, options.clips)
        return [future.result() for future in futures]
