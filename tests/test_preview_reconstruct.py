"""``reconstruct`` writes the previews into its output (listed in run.json) unless told not to, and
``--view`` fails before the run when the viewer cannot open."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from page4d_cli.main import app
from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct
from tests.helpers import CAMS, TINY_RUN, reconstruct_cli, tiny_run
from tests.preview_fixtures import read_recording

TINY = {"frames": 2, "size": 56, "preset": "tiny", "weights": "random"}


@pytest.mark.slow
def test_previews_are_part_of_the_output_and_listed_in_run_json(tmp_path):
    result = reconstruct(CAMS, ReconstructOptions(out=tmp_path / "out", **TINY))
    run = json.loads((result.out_dir / "run.json").read_text())
    preview = run["export"]["preview"]
    for key in ("overview", "trajectory", "video"):
        assert (result.out_dir / preview[key]).is_file()
    assert (result.out_dir / preview["frames"].format(t=1, v=3)).is_file()
    assert "preview" in run["timings_s"]

    # ... and `page4d view --save` on that output: read back with Rerun's reader, checked against cameras.json
    pytest.importorskip("rerun", reason="rerun-sdk is the optional extra page4d[view]")
    rrd = tmp_path / "example.rrd"
    shown = CliRunner().invoke(app, ["view", str(result.out_dir), "--save", str(rrd), "--max-points", "0", "-q"])
    assert shown.exit_code == 0, shown.output
    cameras = json.loads((result.out_dir / "cameras.json").read_text())
    entities, table = read_recording(rrd, ["/world/points", "/world/cameras/**"])
    assert {f"/world/cameras/cam{v:02d}/image/rgb" for v in range(4)} <= entities
    assert table["instant"].tolist() == [0, 1]
    counts = [len(points) for points in table["/world/points:Points3D:positions"]]
    assert counts == cameras["files"]["points"]["num_points"]
    for v in range(4):
        K = np.asarray(table[f"/world/cameras/cam{v:02d}/image:Pinhole:image_from_camera"][1][0]).reshape(3, 3).T
        assert np.allclose(K, cameras["cameras"][v]["frames"][1]["K"], rtol=1e-5)


@pytest.mark.slow
def test_no_preview_writes_none(tmp_path):
    out = tmp_path / "out"
    run = tiny_run(CAMS, out, "--frames", 2, "--size", 56, "-q")
    assert not (out / "preview").exists()
    assert "preview" not in run["export"] and "--no-preview" in run["command_line"]


def test_view_without_a_display_fails_before_the_run(tmp_path, monkeypatch):
    pytest.importorskip("rerun")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    out = tmp_path / "out"
    result = reconstruct_cli(CAMS, "--frames", 2, "--size", 56, *TINY_RUN, "--view", "--out", out)
    assert result.exit_code == 1
    assert "no display found" in result.output and not out.exists()


def test_view_without_rerun_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rerun", None)
    out = tmp_path / "out"
    result = reconstruct_cli(CAMS, "--frames", 2, "--size", 56, *TINY_RUN, "--view", "--out", out)
    assert result.exit_code == 1
    assert "pip install 'page4d[view]'" in result.output and not out.exists()
