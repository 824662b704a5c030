"""``page4d reconstruct`` end to end (tiny network, random or synthetic weights, small sizes).

The CLI runs in-process through Typer's CliRunner; the library entry point ``reconstruct()`` is
called directly where the test is about the pipeline rather than the shell around it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest
import torch

from page4d_cli.data import read_gt_clip
from page4d_cli.pipeline import predict
from page4d_cli.pipeline.preprocess import resize_mask
from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct
from page4d_cli.pipeline.records import RUN_REQUIRED, validate_cameras_json
from page4d_cli.pipeline.types import ImageTransform
from tests.helpers import CAMS, TINY_RUN, reconstruct_cli, shared_path

TINY_70PX = [*TINY_RUN, "--size", 70, "--no-preview"]  # previews: tests/test_preview_reconstruct.py


def leftovers(parent: Path) -> list[str]:
    """Temporary folders of the atomic output dir that a run left next to its target."""
    return sorted(p.name for p in parent.glob(".*tmp-*")) if parent.exists() else []


def write_gt_masks(folder: Path) -> Path:
    """The synthetic rig's ground-truth dynamic masks as ``folder/camV/000.png ...`` (255 = dynamic)."""
    gt = read_gt_clip(CAMS)  # examples/cams/gt
    for v, name in enumerate(gt.camera_names):
        (folder / name).mkdir(parents=True)
        for t in range(gt.num_frames):
            cv2.imwrite(str(folder / name / f"{t:03d}.png"), gt.mask(v, t).astype(np.uint8) * np.uint8(255))
    return folder


# ----------------------------------------------------------------------------- one full CLI run

T_CLI, V_CLI = 4, 4


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_run")
    masks = write_gt_masks(tmp / "masks")
    out = tmp / "parent" / "recon"
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAGE4D_HOME", str(home))
        result = reconstruct_cli(CAMS, "--frames", T_CLI, "--size", 112, *TINY_RUN, "--masks", masks, "--confidence",
                                 "--colmap", "--colmap-frame", 1, "--out", out)
    return result, out, masks


def test_cli_run_succeeds_and_prints_a_summary(cli_run):
    result, out, _ = cli_run
    assert result.exit_code == 0, result.output
    assert f"done: {out}" in result.stdout
    assert "4 instants x 4 cameras" in result.stdout
    assert "random weights" in result.stderr  # yellow warning
    assert leftovers(out.parent) == []


def test_cli_point_clouds_depth_confidence_and_masks(cli_run):
    _, out, _ = cli_run
    for t in range(T_CLI):
        cloud = o3d.io.read_point_cloud(str(out / "points" / f"frame_{t:04d}.ply"))
        assert len(cloud.points) > 100 and cloud.has_colors()
        assert np.isfinite(np.asarray(cloud.points)).all()
    assert len(list((out / "points").iterdir())) == T_CLI
    cameras = json.loads((out / "cameras.json").read_text())
    scale = cameras["depth"]["scale"]
    for v in range(V_CLI):
        for kind in ("depth", "confidence", "masks"):
            files = sorted((out / kind / f"cam{v:02d}").iterdir())
            assert [f.name for f in files] == [f"frame_{t:04d}.png" for t in range(T_CLI)]
        depth = cv2.imread(str(out / "depth" / f"cam{v:02d}" / "frame_0000.png"), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and depth.shape == (168, 224)  # original resolution
        assert 0 < depth.max() and np.isfinite(depth * scale).all()
        mask = cv2.imread(str(out / "masks" / f"cam{v:02d}" / "frame_0000.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}


def test_cli_trajectories_are_tum(cli_run):
    _, out, _ = cli_run
    for v in range(V_CLI):
        lines = (out / "trajectory" / f"cam{v:02d}.txt").read_text().split("\n")
        rows = [np.array(line.split(), dtype=float) for line in lines if line and not line.startswith("#")]
        assert len(rows) == T_CLI and all(len(row) == 8 for row in rows)
        stamps = [row[0] for row in rows]
        assert all(b > a for a, b in zip(stamps, stamps[1:]))
        assert all(np.isclose(np.linalg.norm(row[4:]), 1.0, atol=1e-6) for row in rows)  # unit quaternions


def test_cli_records_are_complete(cli_run):
    _, out, masks = cli_run
    cameras = json.loads((out / "cameras.json").read_text())
    validate_cameras_json(cameras)
    assert (cameras["num_instants"], cameras["num_cameras"]) == (T_CLI, V_CLI)
    assert [c["name"] for c in cameras["cameras"]] == ["cam0", "cam1", "cam2", "cam3"]
    run = json.loads((out / "run.json").read_text())
    assert set(RUN_REQUIRED) <= set(run)
    assert run["command_line"].startswith("page4d reconstruct ") and "--colmap" in run["command_line"]
    assert run["device"] == "cpu" and run["dtype"] == "float32"
    assert run["weights"]["source"] == "random" and run["weights"]["provenance"] is None
    assert set(run["timings_s"]) == {"read", "load", "network", "stitch", "export", "preview", "total"}
    assert all(seconds >= 0 for seconds in run["timings_s"].values())
    assert run["peak_memory"]["cpu_peak_rss_bytes"] > 50e6
    assert run["versions"]["torch"] and run["versions"]["page4d"]
    assert run["network"]["windows"] == [[0, T_CLI]] and len(run["network"]["alignments"]) == 1
    # Random init starts both streams equal, lambdas and temporal frequencies 0: the neutral work was skipped.
    skipped = run["network"]["skipped as neutral"]
    assert skipped["streams identical"] == "yes" and len(skipped["zero mask biases skipped"]) == 4
    assert np.array(run["input"]["frame_indices"]).shape == (T_CLI, V_CLI)
    # The external masks reached the clip: their dynamic share is the resized ground truth's.
    assert run["input"]["masks"]["source"] == "external" and run["input"]["masks"]["dir"] == str(masks)
    expected = []
    for v, camera in enumerate(cameras["cameras"]):
        transform = ImageTransform(**{k: tuple(x) if isinstance(x, list) else x
                                      for k, x in camera["image_transform"].items()})
        for t, frame in enumerate(camera["frames"]):
            gt = cv2.imread(str(masks / f"cam{v}" / f"{frame['source_frame']:03d}.png"), cv2.IMREAD_GRAYSCALE)
            expected.append(resize_mask(gt, transform).mean())
    assert run["input"]["masks"]["dynamic_fraction"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert run["input"]["masks"]["dynamic_fraction"] > 0.01


def test_cli_colmap_model(cli_run):
    _, out, _ = cli_run
    sparse = out / "colmap" / "sparse" / "0"
    cameras = [line for line in (sparse / "cameras.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(cameras) == V_CLI and all(line.split()[1] == "PINHOLE" for line in cameras)
    images = [line for line in (sparse / "images.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(images) == 2 * V_CLI  # pose line + empty POINTS2D line per image
    points = [line for line in (sparse / "points3D.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(points) > 100
    for v in range(V_CLI):
        image = cv2.imread(str(out / "colmap" / "images" / f"cam{v:02d}.png"))
        assert image.shape == (168, 224, 3)


# ----------------------------------------------------------------------------- library: windows, npy


@pytest.mark.slow
def test_long_clip_runs_in_stitched_windows(tmp_path):
    out = tmp_path / "windows"
    options = ReconstructOptions(frames=6, size=70, preset="tiny", weights="random", out=out,
                                 max_images_per_pass=12, overlap=2, depth_format="npy")
    result = reconstruct(CAMS, options)
    assert result.windows == [(0, 3), (1, 4), (2, 5), (3, 6)]  # 12 // 4 cameras = 3 instants per pass
    run = json.loads((out / "run.json").read_text())
    assert run["network"]["windows"] == [list(w) for w in result.windows]
    alignments = run["network"]["alignments"]
    assert len(alignments) == 4 and alignments[0]["scale"] == 1.0
    assert all(a["num_points"] > 100 and a["scale"] > 0 for a in alignments[1:])
    assert "--max-images-per-pass 12" in run["command_line"] and "--depth-format npy" in run["command_line"]
    assert json.loads((out / "cameras.json").read_text())["num_instants"] == 6
    assert len(list((out / "points").glob("*.ply"))) == 6
    for v in range(4):
        files = sorted((out / "depth" / f"cam{v:02d}").iterdir())
        assert [f.name for f in files] == [f"frame_{t:04d}.npy" for t in range(6)]
        depth = np.load(files[-1])
        assert depth.dtype == np.float32 and depth.shape == (168, 224) and (depth > 0).any()


def test_too_few_images_per_pass_for_the_overlap_is_an_input_error(tmp_path):
    result = reconstruct_cli(CAMS, *TINY_70PX, "--frames", 6, "--max-images-per-pass", 8, "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "--max-images-per-pass 8" in result.stderr and "at least 12" in result.stderr
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- weights and cameras


def test_synthetic_pi3_weights_write_provenance(tmp_path):
    from models.loading.synthetic import TINY, write_synthetic

    pi3 = write_synthetic(tmp_path / "pi3.safetensors", "pi3", **TINY)
    out = tmp_path / "o"
    result = reconstruct_cli(CAMS, "--preset", "tiny", "--pi3", pi3, "--frames", 2, "--size", 70, "--no-preview", "--out", out,
                            "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ""  # --quiet: no summary
    run = json.loads((out / "run.json").read_text())
    assert run["weights"]["source"] == "pretrained" and run["weights"]["pi3"] == str(pi3)
    assert run["weights"]["provenance"]["files"]["pi3"]["layout"] == "pi3"
    assert run["weights"]["provenance_file"] == "weights_provenance.json"
    provenance = json.loads((out / "weights_provenance.json").read_text())
    stages = {record["stage"] for record in provenance["tensors"]}
    assert stages == {1, 3}  # Pi3 parts loaded, the rest initialised


def test_single_camera_runs_with_a_notice(tmp_path):
    clip = tmp_path / "mono"
    clip.mkdir()
    shutil.copy(CAMS / "cam2.mp4", clip / "cam2.mp4")
    out = tmp_path / "o"
    result = reconstruct_cli(clip, *TINY_70PX, "--frames", 3, "--out", out)
    assert result.exit_code == 0, result.output
    assert "only one camera (cam2)" in result.stderr
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["cam00"]
    assert json.loads((out / "cameras.json").read_text())["num_cameras"] == 1


@pytest.mark.slow
def test_default_output_folder_and_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = reconstruct_cli(CAMS, *TINY_70PX, "--frames", 2, "-q")
    assert first.exit_code == 0, first.output
    out = tmp_path / "page4d_out" / "cams"
    assert json.loads((out / "run.json").read_text())["input"]["masks"] is None
    again = reconstruct_cli(CAMS, *TINY_70PX, "--frames", 2, "-q")
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    replaced = reconstruct_cli(CAMS, *TINY_70PX, "--frames", 2, "--auto-masks", "--overwrite", "-q")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "run.json").read_text())["input"]["masks"]["source"] == "auto"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cams"]  # no temporary or old folders left


# ----------------------------------------------------------------------------- the real clip


@pytest.mark.slow
def test_real_dexycb_clip_with_external_masks(tmp_path):
    clip = shared_path("data", "dexycb-4view")
    out = tmp_path / "dexycb"
    result = reconstruct_cli(clip, *TINY_RUN, "--size", 56, "--no-preview", "--masks", clip / "masks", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert [c["name"] for c in run["input"]["cameras"]] == ["cam0", "cam1", "cam2", "cam3"]
    assert all(c["size"] == [640, 480] for c in run["input"]["cameras"])
    frames = np.array(run["input"]["frame_indices"])
    assert frames.shape == (24, 4) and (frames == np.arange(24)[:, None]).all()  # default --frames 24
    assert run["input"]["masks"]["source"] == "external" and 0.005 < run["input"]["masks"]["dynamic_fraction"] < 0.9
    assert run["input"]["network_size"] == [56, 42]
    cameras = json.loads((out / "cameras.json").read_text())
    assert (cameras["num_instants"], cameras["num_cameras"]) == (24, 4)
    assert len(list((out / "points").glob("*.ply"))) == 24


# ----------------------------------------------------------------------------- errors: one line, exit 1, no output


def corrupt_copy(tmp_path: Path) -> Path:
    clip = tmp_path / "corrupt"
    shutil.copytree(CAMS, clip)
    (clip / "cam1.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    return clip


def empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


BAD_INPUTS = {
    "missing folder": (lambda tmp: [tmp / "nope", *TINY_70PX], "camera folder not found"),
    "empty folder": (lambda tmp: [empty_folder(tmp), *TINY_70PX], "no cameras found"),
    "corrupt video": (lambda tmp: [corrupt_copy(tmp), *TINY_70PX], "cam1.mp4: cannot open the video"),
    "too many frames": (lambda tmp: [CAMS, *TINY_70PX, "--frames", 99], "--frames 99: only 24 frames"),
    "no weights": (lambda tmp: [CAMS, "--preset", "tiny", "--size", 70], "page4d weights fetch"),
    "both confidence filters": (lambda tmp: [CAMS, *TINY_70PX, "--conf-percentile", 5, "--conf-threshold", 2],
                                "choose one"),
    "colmap instant out of range": (lambda tmp: [CAMS, *TINY_70PX, "--frames", 2, "--colmap", "--colmap-frame", 5],
                                    "--colmap-frame 5"),
    "bad network width": (lambda tmp: [CAMS, *TINY_70PX, "--size", 100], "--size 100"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_and_no_output(case, tmp_path):
    make_args, expected = BAD_INPUTS[case]
    out = tmp_path / "outputs" / "recon"
    result = reconstruct_cli(*make_args(tmp_path), "--out", out)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # handled: no traceback
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() and leftovers(out.parent) == []
    if case == "no weights":
        assert "--weights random" in lines[0]


def test_existing_output_is_refused_before_any_work(tmp_path, monkeypatch):
    out = tmp_path / "recon"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    monkeypatch.setattr("page4d_cli.pipeline.reconstruct.read_clip",
                        lambda *a, **k: pytest.fail("read the clip despite an existing output folder"))
    result = reconstruct_cli(CAMS, *TINY_70PX, "--out", out)
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and "--overwrite" in result.stderr and len(result.stderr.splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_exr_without_codec_fails_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(cv2, "haveImageWriter", lambda ext: ext.lower() != ".exr")
    monkeypatch.setattr("page4d_cli.pipeline.reconstruct.read_clip",
                        lambda *a, **k: pytest.fail("read the clip although EXR cannot be written"))
    result = reconstruct_cli(CAMS, *TINY_70PX, "--depth-format", "exr", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "--depth-format exr" in result.stderr and "npy" in result.stderr


def test_device_that_does_not_exist_is_an_input_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = reconstruct_cli(CAMS, *TINY_70PX, "--device", "cuda:0", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "CUDA is not available" in result.stderr


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_the_network_exits_130_without_output(tmp_path, monkeypatch):
    def interrupted(self, batch, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict.NetworkPredictor, "__call__", interrupted)
    out = tmp_path / "outputs" / "recon"
    result = reconstruct_cli(CAMS, *TINY_70PX, "--frames", 2, "--out", out)
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    assert not out.exists() and leftovers(out.parent) == []


def test_ctrl_c_while_writing_removes_the_half_written_folder(tmp_path, monkeypatch):
    from page4d_cli.pipeline import reconstruct as module

    seen = []
    real_export = module.export_reconstruction

    def export_then_interrupt(tmp, *args, **kwargs):
        real_export(tmp, *args, **kwargs)
        seen.append(sorted(p.name for p in Path(tmp).iterdir()))
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "export_reconstruction", export_then_interrupt)
    out = tmp_path / "outputs" / "recon"
    result = reconstruct_cli(CAMS, *TINY_70PX, "--frames", 2, "--out", out)
    assert result.exit_code == 130
    assert seen and "cameras.json" in seen[0]  # files had been written ...
    assert not out.exists() and leftovers(out.parent) == []  # ... and are gone
