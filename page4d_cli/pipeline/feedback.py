"""What a run tells the user about results that came out empty, and the auto masks it used.

An empty result is not an error (the files are valid and the run may be one of many), but it must
not pass silently: each function here returns one-line warnings that ``reconstruct`` shows in the
terminal and records in run.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from page4d_cli.pipeline import export, geometry, preprocess
from page4d_cli.pipeline.types import ClipBatch, Prediction

AUTO_MASKS_DIR = "masks/auto"  # next to the network's masks/camXX, same naming


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _instants_listed(instants: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(t) for t in instants[:limit])
    return shown + (", ..." if len(instants) > limit else "")


def empty_point_warnings(points_record: Optional[dict], pred: Prediction, batch: ClipBatch,
                         point_filter: export.PointFilter) -> list[str]:
    """Warnings when point clouds came out empty: all of them (say which filter did it and the range of
    confidences to choose from) or some instants."""
    if not points_record:
        return []
    counts = list(points_record.get("num_points", []))
    empty = [t for t, count in enumerate(counts) if count == 0]
    if not empty:
        return []
    if len(empty) < len(counts):
        return [f"{_plural(len(empty), 'point cloud')} of {len(counts)} kept no points (instant"
                f"{'' if len(empty) == 1 else 's'} {_instants_listed(empty)}): every point there was filtered out; "
                "the PLY files are valid but empty"]
    conf = export.point_confidence(pred, point_filter.points_from)
    values = np.concatenate([conf[:, v][:, geometry.content_mask(tr)].ravel() for v, tr in enumerate(batch.transforms)])
    values = values[np.isfinite(values)]
    spread = f"confidences range {values.min():.3g} to {values.max():.3g}" if values.size else "no finite confidence"
    if point_filter.conf_threshold is not None:
        cause = (f"--conf-threshold {point_filter.conf_threshold:g} filtered every point ({spread}); "
                 "lower it, or use --conf-percentile")
    else:
        cause = (f"the point filters removed every point ({spread}); lower --conf-percentile or pass "
                 "--no-edge-filter")
    return [f"all {len(counts)} point clouds are empty: {cause}"]


def auto_mask_warnings(batch: ClipBatch) -> list[str]:
    """A warning when ``--auto-masks`` marked nothing as moving (one instant, or a static scene)."""
    if batch.ext_masks is None or np.any(batch.ext_masks > 0.5):
        return []
    num_t = batch.ext_masks.shape[0]
    why = ("one instant shows no motion" if num_t == 1
           else "the background subtraction saw no motion at the sampled instants")
    return [f"--auto-masks found no moving pixels in {_plural(num_t, 'instant')} ({why}); every pixel is treated as "
            "static; use more --frames, or give --masks"]


def write_auto_masks(out_dir: Path, batch: ClipBatch) -> dict:
    """``masks/auto/camXX/frame_TTTT.png`` (255 = dynamic) at each camera's original resolution.

    The masks the network was given, so they can be inspected (and passed back with ``--masks``).
    Parts of the original frame the network never saw (crop mode) are 0.
    """
    assert batch.ext_masks is not None, "write_auto_masks needs the clip's masks"
    folder = Path(out_dir) / AUTO_MASKS_DIR
    for v, transform in enumerate(batch.transforms):
        for t in range(batch.ext_masks.shape[0]):
            network_mask = batch.ext_masks[t, v].astype(np.float32)
            mask = preprocess.network_map_to_original(network_mask, transform, fill=0.0)
            export.write_map_file(folder / export.camera_dir(v) / export.frame_name(t, "png"),
                                  np.where(mask > 0.5, 255, 0).astype(np.uint8), "png")
    return {"pattern": AUTO_MASKS_DIR + "/cam{v:02d}/frame_{t:04d}.png", "source": "--auto-masks (input of the network)",
            "decode": "255 = dynamic, 0 = static", "resolution": "original"}
