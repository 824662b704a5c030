"""Make the README's preview pictures from a ground-truth-driven output (no network weights needed).

A hand-held 4-camera clip is synthesised (``page4d data synth --rig moving``, 24 frames, 224 x 168); its
exact ground truth (depth, cameras, dynamic masks) is passed, as if it were the network's prediction,
through the same export (``write_outputs.export_reconstruction``) and preview code (``preview.write_previews``)
that ``page4d reconstruct`` runs. Ground truth has no confidence, so the confidence column is uniform.

    python docs/images/make_readme_pictures.py [--keep OUT]    # writes docs/images/{overview,trajectory}.png

``--keep OUT`` also keeps the whole output folder (``page4d view OUT`` opens it).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from page4d_cli.data import read_gt_clip
from page4d_cli.data.synth import SynthOptions, synth_clips
from page4d_cli.pipeline.preprocess import intrinsics_to_network, resize_map_nearest
from page4d_cli.pipeline.read_clip import read_clip
from page4d_cli.pipeline.types import Prediction
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction
from page4d_cli.preview import PreviewOptions, write_previews

HERE = Path(__file__).resolve().parent
T, V, WIDTH, HEIGHT, SEED = 24, 4, 224, 168, 3


def ground_truth_prediction(clip: Path):
    """(Prediction, ClipBatch): the clip read as ``reconstruct`` reads it, and its GT at the network size."""
    batch = read_clip(clip, frames=T, size=WIDTH, mode="crop")
    gt = read_gt_clip(clip)
    num_t, num_v = batch.frame_indices.shape
    H, W = batch.images.shape[-2:]
    depth = np.zeros((num_t, num_v, H, W), np.float32)
    mask = np.zeros_like(depth)
    K = np.zeros((num_t, num_v, 3, 3))
    extrinsic = np.zeros((num_t, num_v, 4, 4))
    for t in range(num_t):
        for v, transform in enumerate(batch.transforms):
            frame = gt.frame_of_source(v, int(batch.frame_indices[t, v]))
            depth[t, v] = resize_map_nearest(gt.depth(v, frame), transform)
            mask[t, v] = resize_map_nearest(gt.mask(v, frame).astype(np.float32), transform)
            K[t, v] = intrinsics_to_network(gt.K(v, frame), transform)
            extrinsic[t, v] = gt.cam_from_world(v, frame)
    return Prediction(extrinsic=extrinsic, intrinsic=K, depth=depth, depth_conf=np.ones_like(depth),
                      dynamic_mask=mask), batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="also keep the output folder here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        options = SynthOptions(clips=1, cameras=V, frames=T, width=WIDTH, height=HEIGHT, seed=SEED, rig="moving")
        clip = synth_clips(Path(tmp) / "synth", options)[0]
        prediction, batch = ground_truth_prediction(clip)
        out = Path(tmp) / "out"
        export_reconstruction(out, prediction, batch, ExportOptions())
        write_previews(out, prediction, batch, PreviewOptions(overview_instants=2, tile_width=150))
        for name in ("overview.png", "trajectory.png"):
            # 256-colour palette: a third of the size, at the cost of slight banding in the colour maps
            image = Image.open(out / "preview" / name).convert("RGB")
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                HERE / name, optimize=True)
            print(f"{HERE / name}: {image.width}x{image.height}, {(HERE / name).stat().st_size // 1024} KB")
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=False)
            print(f"output folder kept at {args.keep}")


if __name__ == "__main__":
    main()
