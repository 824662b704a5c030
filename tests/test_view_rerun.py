"""``page4d view``: the recording read back with Rerun's own dataframe reader matches cameras.json; bad
folders and a missing rerun-sdk give one clear line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.errors import Page4DError
from page4d_cli.pipeline.export import PointFilter
from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction
from page4d_cli.preview import PreviewOptions, write_previews
from page4d_cli.view import ReconstructionFolder, ViewError, ViewOptions, view
from page4d_cli.view.ply import read_ply
from tests.preview_fixtures import known_clip, read_recording


def needs_rerun() -> None:
    pytest.importorskip("rerun", reason="rerun-sdk is the optional extra page4d[view]")

T, V = 3, 2


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    pred, batch = known_clip(num_instants=T, num_cameras=V)
    out = tmp_path_factory.mktemp("view") / "out"
    options = ExportOptions(point_filter=PointFilter(conf_percentile=0.0, edge_rel_threshold=None))
    export_reconstruction(out, pred, batch, options)
    write_previews(out, pred, batch, PreviewOptions(tile_width=32, video=False))
    return out


@pytest.mark.slow
def test_saved_recording_matches_cameras_json(output, tmp_path):
    needs_rerun()
    rrd = tmp_path / "out.rrd"
    result = view(output, ViewOptions(save=rrd, max_points=None))
    cameras = json.loads((output / "cameras.json").read_text())
    counts = cameras["files"]["points"]["num_points"]
    assert result.points_shown == counts and min(counts) > 0
    rerun_cli = shutil.which("rerun") or shutil.which("rerun", path=str(Path(sys.executable).parent))
    if rerun_cli:  # the viewer's own loader accepts the file (data and the layout blueprint)
        verified = subprocess.run([rerun_cli, "rrd", "verify", str(rrd)], capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0, verified.stderr
    entities, table = read_recording(rrd, ["/world/points", "/world/cameras/**"])
    expected = {"/world", "/world/axes", "/world/points", "/notes"}
    for v in range(V):
        base = f"/world/cameras/cam{v:02d}"
        expected |= {base, f"{base}/image", f"{base}/image/rgb", f"{base}/image/depth", f"{base}/image/mask",
                     f"/world/trajectories/cam{v:02d}"}
    assert expected <= entities
    assert table["instant"].tolist() == list(range(T))
    for t in range(T):
        row = table.iloc[t]
        assert len(row["/world/points:Points3D:positions"]) == counts[t]
        for v in range(V):
            frame = cameras["cameras"][v]["frames"][t]
            base = f"/world/cameras/cam{v:02d}"
            K = np.asarray(row[f"{base}/image:Pinhole:image_from_camera"][0]).reshape(3, 3).T  # column-major
            assert np.allclose(K, frame["K"], atol=1e-4)
            assert list(row[f"{base}/image:Pinhole:resolution"][0]) == cameras["cameras"][v]["image_size"]
            E = np.asarray(frame["camera_from_world"])
            assert np.allclose(np.asarray(row[f"{base}:Transform3D:mat3x3"][0]).reshape(3, 3).T, E[:3, :3], atol=1e-6)
            assert np.allclose(row[f"{base}:Transform3D:translation"][0], E[:3, 3], atol=1e-6)
            meter = row[f"{base}/image/depth:DepthImage:meter"][0]
            assert meter == pytest.approx(1.0 / cameras["depth"]["scale"], rel=1e-6)


@pytest.mark.slow
def test_max_points_subsamples_each_instant(output, tmp_path):
    needs_rerun()
    rrd = tmp_path / "few.rrd"
    result = view(output, ViewOptions(save=rrd, max_points=100))
    assert result.points_shown == [100] * T
    _, table = read_recording(rrd, ["/world/points"])
    assert [len(p) for p in table["/world/points:Points3D:positions"]] == [100] * T


@pytest.mark.slow  # importing open3d takes seconds
def test_ply_reader_matches_what_the_export_wrote(output):
    o3d = pytest.importorskip("open3d")
    cloud = o3d.io.read_point_cloud(str(output / "points" / "frame_0001.ply"))
    xyz, rgb = read_ply(output / "points" / "frame_0001.ply")
    assert np.allclose(xyz, np.asarray(cloud.points), atol=1e-5)
    assert np.abs(rgb.astype(float) / 255 - np.asarray(cloud.colors)).max() <= 0.5 / 255 + 1e-6


def test_ascii_ply(tmp_path):
    path = tmp_path / "a.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                    "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
                    "1 2 3 255 0 0\n4 5 6 0 0 255\n")
    xyz, rgb = read_ply(path)
    assert np.allclose(xyz, [[1, 2, 3], [4, 5, 6]]) and rgb.tolist() == [[255, 0, 0], [0, 0, 255]]


def _copy(output, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(output, target)
    return target


def test_missing_folder_and_missing_cameras_json(output, tmp_path):
    with pytest.raises(ViewError, match=r"nowhere: no such folder; give the output folder"):
        ReconstructionFolder.open(tmp_path / "nowhere")
    copy = _copy(output, tmp_path)
    (copy / "cameras.json").unlink()
    with pytest.raises(ViewError, match=r"cameras\.json: not found"):
        ReconstructionFolder.open(copy)


def test_partial_folder_names_the_first_missing_file(output, tmp_path):
    copy = _copy(output, tmp_path)
    (copy / "points" / "frame_0001.ply").unlink()
    (copy / "depth" / "cam01" / "frame_0002.png").unlink()
    with pytest.raises(ViewError) as caught:
        ReconstructionFolder.open(copy)
    message = str(caught.value)
    assert "points/frame_0001.ply: missing and 1 more" in message and "\n" not in message


def test_folder_without_previews_is_viewable_with_a_note(output, tmp_path):
    copy = _copy(output, tmp_path)
    shutil.rmtree(copy / "preview")
    folder = ReconstructionFolder.open(copy)
    assert not folder.has_frames and any("--no-preview" in note for note in folder.notes)


def test_missing_rerun_names_the_extra(output, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "rerun", None)  # makes `import rerun` raise ImportError
    with pytest.raises(ViewError, match=r"pip install 'page4d\[view\]'"):
        view(output, ViewOptions(save=tmp_path / "x.rrd"))


def test_no_display_and_bad_save_path_fail_before_logging(output, monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(ViewError, match="no display found"):
        view(output, ViewOptions())
    with pytest.raises(ViewError, match=r"must end in \.rrd"):
        view(output, ViewOptions(save=tmp_path / "x.txt"))
    with pytest.raises(ViewError, match="--max-points 0"):
        ViewOptions(max_points=0)


def test_cli_error_is_one_line(tmp_path):
    from page4d_cli.main import app

    result = CliRunner().invoke(app, ["view", str(tmp_path / "missing"), "--save", str(tmp_path / "x.rrd")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no such folder" in lines[0]


def test_cli_defaults_are_the_librarys():
    from page4d_cli.commands import view as command
    from page4d_cli.view import session

    assert command.DEFAULT_MAX_POINTS == session.DEFAULT_MAX_POINTS
    assert command.DEFAULT_WEB_PORT == session.DEFAULT_WEB_PORT


@pytest.mark.parametrize("fmt", ["npy", "png"])
def test_depth_is_read_back_in_world_units(tmp_path, fmt):
    pred, batch = known_clip(num_instants=2, num_cameras=2)
    out = tmp_path / "out"
    export_reconstruction(out, pred, batch, ExportOptions(depth_format=fmt, write_points=False))
    folder = ReconstructionFolder.open(out)
    depth, meter = folder.read_depth(1, 1)
    world = depth.astype(np.float64) / meter
    assert world.shape == (60, 80)  # the original resolution
    assert np.allclose(world[:, :40], 2.0, atol=1e-3) and np.allclose(world[:, 40:], 5.0, atol=1e-3)
    assert any("no point clouds" in note for note in folder.notes)


def test_save_never_replaces_a_file_silently_and_leaves_nothing_half_written(output, tmp_path):
    needs_rerun()
    existing = tmp_path / "mine.rrd"
    existing.write_bytes(b"someone's recording")
    with pytest.raises(ViewError, match="already exists; pass --overwrite"):
        view(output, ViewOptions(save=existing))
    assert existing.read_bytes() == b"someone's recording"
    copy = _copy(output, tmp_path)
    (copy / "points" / "frame_0002.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\n")  # truncated
    target = tmp_path / "new.rrd"
    with pytest.raises(Page4DError, match="frame_0002.ply: the PLY header has no end_header"):
        view(copy, ViewOptions(save=target))
    assert not target.exists() and not list(tmp_path.glob(".new.rrd.tmp-*"))
