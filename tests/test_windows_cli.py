"""Windows as a user meets them: a long clip run in windows computes each instant once, except
exactly ``--overlap`` instants per window boundary, and the stitched output is one consistent clip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import CAMS, tiny_run


@pytest.mark.slow
def test_windows_repeat_only_the_overlap_and_stitch_into_one_clip(tmp_path):
    out = tmp_path / "out"
    run = tiny_run(CAMS, out, "--frames", 8, "--size", 42, "--max-images-per-pass", 12, "--overlap", 1)
    windows = run["network"]["windows"]
    # 3 instants per pass (12 images / 4 cameras), overlap 1: ceil(7 / 2) = 4 windows over 8 + 3 instants.
    assert windows == [[0, 3], [2, 5], [4, 7], [6, 8]]
    assert all(prev[1] - nxt[0] == 1 for prev, nxt in zip(windows, windows[1:]))
    assert len(run["network"]["alignments"]) == 4
    assert set(run["timings_s"]) >= {"network", "stitch"}
    cameras = json.loads((out / "cameras.json").read_text())
    assert cameras["num_instants"] == 8
    assert cameras["cameras"][0]["frames"][0]["camera_from_world"] == np.eye(4).tolist()
    assert len(list((out / "points").glob("frame_*.ply"))) == 8
    assert len((out / "trajectory" / "cam03.txt").read_text().splitlines()) == 1 + 8
