"""``page4d data check`` finds each planted defect, one line naming the file."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from page4d_cli.data.check import check_clip, check_clips
from page4d_cli.data.synth import SynthOptions, synth_clips
from page4d_cli.main import app


@pytest.fixture()
def clip(tmp_path):
    return synth_clips(tmp_path / "set", SynthOptions(clips=1, cameras=2, frames=3, width=32, height=24))[0]


def edit_cameras(clip, edit):
    path = clip / "gt" / "cameras.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def reflect(data):
    pose = np.array(data["cameras"][1]["frames"][2]["camera_from_world"])
    pose[:3, 0] *= -1
    data["cameras"][1]["frames"][2]["camera_from_world"] = pose.tolist()


def scale_rotation(data):
    pose = np.array(data["cameras"][0]["frames"][1]["camera_from_world"])
    pose[:3, :3] *= 1.1
    data["cameras"][0]["frames"][1]["camera_from_world"] = pose.tolist()


DEFECTS = {
    "missing frame image": (lambda c: (c / "cam01" / "frame_0002.png").unlink(), "cam01: has 2 frames"),
    "missing depth": (lambda c: (c / "gt" / "depth" / "cam00" / "frame_0001.png").unlink(),
                      "cam00/frame_0001.png: depth map missing"),
    "missing mask": (lambda c: (c / "gt" / "masks" / "cam01" / "frame_0000.png").unlink(),
                     "cam01/frame_0000.png: mask missing"),
    "depth of another size": (lambda c: cv2.imwrite(str(c / "gt" / "depth" / "cam01" / "frame_0002.png"),
                                                    np.ones((10, 10), np.uint16)), "frame_0002.png: is 10x10"),
    "mask of another size": (lambda c: cv2.imwrite(str(c / "gt" / "masks" / "cam00" / "frame_0002.png"),
                                                   np.zeros((5, 7), np.uint8)), "frame_0002.png: is 7x5"),
    "all-invalid depth": (lambda c: cv2.imwrite(str(c / "gt" / "depth" / "cam00" / "frame_0000.png"),
                                                np.zeros((24, 32), np.uint16)), "no valid depth"),
    "reflection": (lambda c: edit_cameras(c, reflect), "camera cam01 frame 2: camera_from_world's rotation has det -1"),
    "not a rotation": (lambda c: edit_cameras(c, scale_rotation),
                       "camera cam00 frame 1: camera_from_world's rotation is not orthonormal"),
    "infinite K": (lambda c: edit_cameras(c, lambda d: d["cameras"][0]["frames"][0]["K"][0].__setitem__(0, 1e400)),
                   "camera cam00 frame 0: K is not finite"),
    "negative focal": (lambda c: edit_cameras(c, lambda d: d["cameras"][1]["frames"][1]["K"][1].__setitem__(1, -5)),
                       "camera cam01 frame 1: K needs fx, fy > 0"),
    "camera renamed": (lambda c: (c / "cam01").rename(c / "camXY"), "only in the input: camXY"),
    "broken json": (lambda c: (c / "gt" / "cameras.json").write_text("{"), "not readable JSON"),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_check_finds_each_planted_defect(clip, defect):
    assert check_clip(clip).ok
    damage, words = DEFECTS[defect]
    damage(clip)
    report = check_clip(clip)
    assert not report.ok
    assert any(words in problem for problem in report.problems), report.problems
    assert all("\n" not in problem and str(clip) in problem for problem in report.problems)


def test_npy_depth_with_nan_is_reported(tmp_path):
    from page4d_cli.data import write_gt_clip

    depth = np.ones((2, 1, 6, 8), np.float32)
    clip = write_gt_clip(tmp_path / "c", ["cam0"], np.zeros((2, 1, 6, 8, 3), np.uint8),
                         np.array([[[8.0, 0, 4], [0, 8, 3], [0, 0, 1]]]), np.eye(4)[None], depth, depth_format="npy")
    np.save(clip / "gt" / "depth" / "cam00" / "frame_0001.npy", np.full((6, 8), np.nan, np.float32))
    problems = check_clip(clip).problems
    assert len(problems) == 1 and "frame_0001.npy: 48 non-finite depth values" in problems[0]


def test_cli_check_reports_problems_and_exits_1(clip):
    (clip / "gt" / "depth" / "cam00" / "frame_0001.png").unlink()
    (clip.parent / "clip_broken" / "gt").mkdir(parents=True)  # a gt/ without cameras.json is reported too
    assert len(check_clips(clip.parent)) == 2
    result = CliRunner().invoke(app, ["data", "check", str(clip.parent)])
    assert result.exit_code == 1
    assert "frame_0001.png: depth map missing" in result.stdout and "clip_broken/gt/cameras.json: not found" in result.stdout
    assert "2 clips checked: 2 with problems" in result.stdout
    as_json = CliRunner().invoke(app, ["data", "check", str(clip), "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)[0]["ok"] is False
