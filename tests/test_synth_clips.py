"""``page4d data synth``: deterministic per seed, varied, exact (depth, cameras and masks agree)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from page4d_cli.data import read_gt_clip
from page4d_cli.data.check import check_clips
from page4d_cli.data.errors import DataFormatError
from page4d_cli.data.synth import SynthOptions, make_scene, render_clip, synth_clips
from page4d_cli.main import app

SMALL = dict(clips=2, cameras=3, frames=4, width=48, height=36)


def files_of(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    paths = synth_clips(out, SynthOptions(seed=5, **SMALL))
    return out, paths


def test_same_seed_same_files_other_seed_other_files(synth_set, tmp_path):
    out, paths = synth_set
    assert [p.name for p in paths] == ["clip_0000", "clip_0001"]
    synth_clips(tmp_path / "again", SynthOptions(seed=5, **SMALL))
    first = files_of(out)
    assert len(first) == 2 * (3 * 4 * 3 + 1)  # per clip: V*T images, depth maps, masks + cameras.json
    assert files_of(tmp_path / "again") == first
    other = synth_clips(tmp_path / "other", SynthOptions(seed=6, **{**SMALL, "clips": 1}))
    assert files_of(other[0]) != files_of(paths[0])


def test_clip_depends_only_on_seed_and_index(synth_set, tmp_path):
    _, paths = synth_set
    one = render_clip(make_scene(SynthOptions(seed=5, **{**SMALL, "clips": 9}), 1))
    gt = read_gt_clip(paths[1])
    np.testing.assert_array_equal(gt.image(2, 3), one["images"][3, 2])


def test_variety_objects_move_masks_non_empty_moving_rig_moves(synth_set):
    _, paths = synth_set
    static, moving = read_gt_clip(paths[0]), read_gt_clip(paths[1])
    for clip in (static, moving):
        masks = np.stack([[clip.mask(v, t) for v in range(3)] for t in range(4)])
        assert masks.any(axis=(2, 3)).sum() >= 6  # the moving objects are seen in most views
        changed = [np.mean(clip.mask(v, 0) != clip.mask(v, 3)) for v in range(3)]
        assert max(changed) > 0.002  # objects move between the first and the last frame
        Ks = [clip.K(v, 0) for v in range(3)]
        assert len({round(K[0, 0], 6) for K in Ks}) == 3 and len({round(K[0, 2], 6) for K in Ks}) == 3
        np.testing.assert_allclose(clip.cam_from_world(0, 0), np.eye(4), atol=1e-9)  # world = camera 0, frame 0
    for v in range(3):
        np.testing.assert_array_equal(static.cam_from_world(v, 0), static.cam_from_world(v, 3))
        centre = [-(p[:3, :3].T @ p[:3, 3]) for p in (moving.cam_from_world(v, 0), moving.cam_from_world(v, 3))]
        assert np.linalg.norm(centre[1] - centre[0]) > 0.01  # metres: a hand-held rig really moves
    for scene in (make_scene(SynthOptions(seed=s, **SMALL), 0) for s in range(6)):
        moving_solids = [s for s in scene.solids if s.moving]
        assert 1 <= len(moving_solids) <= 3 and len(scene.solids) > len(moving_solids)
        assert all(np.linalg.norm(s.c[-1] - s.c[0]) > 0.05 for s in moving_solids)


def test_depth_and_cameras_are_exact_across_views(synth_set):
    """Camera a's depth unprojected and projected into camera b lands on b's depth where b sees it."""
    _, paths = synth_set
    clip = read_gt_clip(paths[1])
    t = 2
    points, valid = clip.world_points(0, t)
    points = points[valid]
    E, K = clip.cam_from_world(1, t), clip.K(1, t)
    in_b = points @ E[:3, :3].T + E[:3, 3]
    uv = in_b @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    cols, rows = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (in_b[:, 2] > 0) & (cols >= 0) & (cols < 48) & (rows >= 0) & (rows < 36)
    depth_b = clip.depth(1, t)[rows[inside], cols[inside]]
    visible = np.abs(depth_b - in_b[inside, 2]) < 0.05 * depth_b  # not hidden behind something else
    assert visible.sum() > 100 and visible.mean() > 0.5
    points_b, _ = clip.world_points(1, t)
    distance = np.linalg.norm(points_b[rows[inside], cols[inside]][visible] - points[inside][visible], axis=1)
    footprint = depth_b[visible] / K[0, 0]  # one pixel of camera b at that depth
    assert np.median(distance / footprint) < 1.0
    assert np.percentile(distance / footprint, 90) < 3.0


def test_synth_clips_pass_check_and_options_are_validated(synth_set, tmp_path):
    out, _ = synth_set
    assert all(report.ok for report in check_clips(out))
    with pytest.raises(DataFormatError, match="--rig sideways"):
        SynthOptions(rig="sideways")
    with pytest.raises(DataFormatError, match="--clips 0"):
        SynthOptions(clips=0)
    with pytest.raises(DataFormatError, match="already exists"):
        synth_clips(out, SynthOptions(seed=5, **SMALL))


def test_cli_synth_then_check(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "synth", str(tmp_path / "s"), "--clips", "1", "--cameras", "2",
                                 "--frames", "2", "--size", "32x24", "-q"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 clips" in result.stdout
    result = runner.invoke(app, ["data", "check", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output and "1 clip checked: ok" in result.stdout
    bad = runner.invoke(app, ["data", "synth", str(tmp_path / "t"), "--size", "big"])
    assert bad.exit_code == 1 and "--size big" in bad.output



def synth_cli(out) -> object:
    return CliRunner().invoke(app, ["data", "synth", str(out), "--clips", "1", "--cameras", "1", "--frames", "1",
                                    "--size", "16x16", "-q"])


def refused_in_one_line(result, *words: str) -> None:
    errors = result.stderr.splitlines()  # the whole of stderr: one line, no blank line left by a progress bar
    assert result.exit_code == 1, result.output
    assert len(errors) == 1 and errors[0].startswith("error:") and all(word in errors[0] for word in words), \
        result.stderr
    assert "Traceback" not in result.output


def test_an_output_folder_that_cannot_be_made_is_one_line_before_rendering(tmp_path, monkeypatch):
    monkeypatch.setattr("page4d_cli.data.synth.render_clip",
                        lambda *a, **k: pytest.fail("rendered although the output folder is unusable"))
    refused_in_one_line(synth_cli("/proc/page4d_synth"), "/proc/page4d_synth", "cannot create folders in /proc")
    assert not Path("/proc/page4d_synth").exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    refused_in_one_line(synth_cli(a_file), str(a_file), "is a file")
    refused_in_one_line(synth_cli(a_file / "clips"), str(a_file / "clips"), f"{a_file} is a file")
    assert a_file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_read_only_parent_is_one_line_before_rendering(tmp_path, monkeypatch):
    from tests.test_reconstruct_safety import tmpfs  # root only: root writes through chmod 555 folders

    with tmpfs(tmp_path / "ro", "1m", "ro") as mount:
        monkeypatch.setattr("page4d_cli.data.synth.render_clip",
                            lambda *a, **k: pytest.fail("rendered although the output folder is read-only"))
        refused_in_one_line(synth_cli(mount / "clips"), str(mount / "clips"), "cannot create folders", "Read-only")
        assert list(mount.iterdir()) == []


@pytest.mark.slow
def test_parallel_workers_write_the_same_files(synth_set, tmp_path):
    out, _ = synth_set
    synth_clips(tmp_path / "par", SynthOptions(seed=5, workers=2, **SMALL))
    assert files_of(tmp_path / "par") == files_of(out)
