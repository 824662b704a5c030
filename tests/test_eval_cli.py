"""``page4d eval`` on files: the oracle through the real export path, mismatches, a tiny random-weights
reconstruct followed by eval, --list and --json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from page4d_cli.data.synth import SynthOptions, synth_clips
from page4d_cli.eval import EvalError, evaluate
from page4d_cli.main import app
from tests.eval_helpers import export_gt_as_prediction

W, H = 56, 42


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_clips")
    return synth_clips(root / "clips", SynthOptions(clips=2, cameras=3, frames=6, width=W, height=H, seed=11))


@pytest.fixture(scope="module")
def oracle(clips, tmp_path_factory):
    return export_gt_as_prediction(clips[1], tmp_path_factory.mktemp("oracle") / "pred", frames=4, size=W)


def test_oracle_through_the_export_path_scores_perfectly(oracle, clips):
    result = evaluate(oracle, clips[1])
    summary = result.summary()
    for key in ("ate", "rpe_trans", "rpe_rot_deg", "rig_trans", "rig_rot_deg"):
        assert summary[key] == pytest.approx(0.0, abs=1e-9), key
    scale = json.loads((oracle / "cameras.json").read_text())["depth"]["scale"]
    assert summary["abs_rel"] < scale  # only the 16-bit quantisation of the exported depth
    assert summary["delta_1_25"] == 1.0 and summary["mask_iou"] == 1.0
    assert summary["chamfer"] < 10 * scale
    assert sorted(result.missing_frames) == ["cam00", "cam01", "cam02"]  # 4 of 6 frames reconstructed
    assert all(len(frames) == 2 for frames in result.missing_frames.values())


def test_cli_writes_eval_json_and_prints_tables(oracle, clips):
    result = CliRunner().invoke(app, ["eval", str(oracle), str(clips[1])])
    assert result.exit_code == 0, result.output
    for words in ("ATE (RMSE of camera centres)", "per camera", "per instant", "GT frames covered", "eval.json"):
        assert words in result.stdout
    data = json.loads((oracle / "eval.json").read_text())
    assert data["format"] == "page4d-eval" and data["summary"]["mask_iou"] == 1.0
    assert len(data["per_camera"]) == 3 and len(data["per_instant"]) == 4
    as_json = CliRunner().invoke(app, ["eval", str(oracle), str(clips[1]), "--json", "--align", "scale-shift"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["depth"]["alignment"]["mode"] == "scale-shift"
    assert json.loads((oracle / "eval.json").read_text())["depth"]["alignment"]["mode"] == "scale-shift"  # replaced
    (oracle / "eval.json").write_text("my notes")  # not page4d's: never overwritten
    refused = CliRunner().invoke(app, ["eval", str(oracle), str(clips[1])])
    assert refused.exit_code == 1 and "not written by page4d eval" in refused.output
    assert (oracle / "eval.json").read_text() == "my notes"
    (oracle / "eval.json").unlink()


def test_mismatched_clip_and_renamed_camera_are_one_line_errors(oracle, clips, tmp_path):
    bad = export_gt_as_prediction(clips[0], tmp_path / "pred", frames=6, size=W)
    data = json.loads((bad / "cameras.json").read_text())
    data["cameras"][0]["frames"][5]["source_frame"] = 17
    (bad / "cameras.json").write_text(json.dumps(data))
    with pytest.raises(EvalError, match="instant 5 of camera cam00 is source frame 17"):
        evaluate(bad, clips[0])
    data = json.loads((oracle / "cameras.json").read_text())
    data["cameras"][2]["name"] = "camXY"
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "cameras.json").write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["eval", str(renamed), str(clips[1])])
    assert result.exit_code == 1
    assert "only in the prediction: camXY; only in the ground truth: cam02" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_list_of_pairs(oracle, clips, tmp_path):
    listing = tmp_path / "pairs.txt"
    listing.write_text(f"# pred gt\n{oracle} {clips[1]}\n{oracle} {clips[1]}\n")
    result = CliRunner().invoke(app, ["eval", "--list", str(listing), "--no-details", "--no-points"])
    assert result.exit_code == 0, result.output
    assert "mean" in result.stdout and "Chamfer" not in result.stdout
    bad = CliRunner().invoke(app, ["eval", "--list", str(tmp_path / "nowhere.txt")])
    assert bad.exit_code == 1 and "nowhere.txt: not found" in bad.output


@pytest.mark.slow
def test_tiny_random_weights_reconstruct_then_eval(clips, tmp_path):
    from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct

    out = tmp_path / "recon"
    reconstruct(clips[0], ReconstructOptions(frames=3, size=W, preset="tiny", weights="random", out=out,
                                             preview=False, device="cpu"))
    result = CliRunner().invoke(app, ["eval", str(out), str(clips[0])])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "eval.json").read_text())
    summary = data["summary"]
    assert np.isfinite(summary["ate"]) and summary["ate"] >= 0
    assert 0 <= summary["delta_1_25"] <= 1 and summary["abs_rel"] >= 0
    assert len(data["per_instant"]) == 3 and all(len(c["gt_frames"]) == 3 for c in data["per_camera"])
