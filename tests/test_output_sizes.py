"""Sensible sizes. PLY coordinates are float32, and ``--size`` never upsamples a
camera narrower than the network's 518 pixels unless asked."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from page4d_cli.pipeline.read_clip import read_clip
from tests.helpers import CAMS, tiny_run
from tests.test_pipeline_reading import video_rig


@pytest.mark.slow
def test_smoke_run_keeps_the_input_size_and_writes_float32_ply(tmp_path):
    out = tmp_path / "out"
    run = tiny_run(CAMS, out, "--frames", 2)  # CAMS are 224 x 168
    assert run["input"]["network_size"] == [224, 168]  # not upsampled to 518 x 392
    ply = out / "points" / "frame_0000.ply"
    data = ply.read_bytes()
    header = data[: data.index(b"end_header\n") + len(b"end_header\n")].decode("ascii")
    assert "property float x" in header and "double" not in header
    count = int(next(line.split()[-1] for line in header.splitlines() if line.startswith("element vertex")))
    assert count > 0 and len(data) == len(header) + count * (3 * 4 + 3)
    points = np.asarray(o3d.io.read_point_cloud(str(ply)).points)
    assert points.shape == (count, 3) and np.all(np.isfinite(points))


def test_size_default_is_518_for_wide_cameras_and_upsampling_only_when_asked(tmp_path):
    assert read_clip(CAMS, frames=1).images.shape[-2:] == (168, 224)
    assert read_clip(CAMS, frames=1, size=518).images.shape[-2:] == (392, 518)  # asked for: upsampled
    wide = video_rig(tmp_path / "wide", names=("cam0",), count=2, size=(640, 480))
    assert read_clip(wide, frames=1).images.shape[-2:] == (392, 518)
    odd = video_rig(tmp_path / "odd", names=("cam0",), count=2, size=(250, 100))
    assert read_clip(odd, frames=1).images.shape[-1] == 238  # rounded DOWN to a multiple of 14
