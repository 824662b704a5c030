"""``page4d train`` end to end on generated ground-truth clips: torchrun launch (--nproc 2), held-out
evaluation with page4d eval's metrics, the run folder, progress lines in a log from rank 0 only; bad input
(page4d_cli/commands/train.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from page4d_cli.data.synth import SynthOptions, synth_clips

    out = tmp_path_factory.mktemp("train_clips") / "clips"
    synth_clips(out, SynthOptions(clips=2, cameras=2, frames=3, width=56, height=56, seed=0))
    return out


@pytest.mark.slow
def test_train_two_processes_with_evaluation(clips, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "page4d_cli.main", "train", str(clips), "--out", str(run), "--preset", "tiny",
           "--steps", "2", "--size", "28", "--frames", "2", "--cameras", "2", "--workers", "0",
           "--eval-data", str(clips), "--eval-every", "2", "--nproc", "2", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert len(evals) == 1 and evals[0]["step"] == 2 and evals[0]["clips"] == 2
    assert evals[0]["ate"] >= 0 and evals[0]["abs_rel"] >= 0
    config = json.loads((run / "config.json").read_text())
    assert len(config["data"]) == 2 and config["training"]["eval_every"] == 2

    # stderr is a pipe: plain progress lines (no bars), notices; rank 0 speaks for both processes
    lines = proc.stderr.splitlines()
    assert [line.split(" in ")[0] for line in lines if line.startswith("page4d: ")] == [
        "page4d: training done (2 steps)", "page4d: evaluating done"], proc.stderr
    assert lines.count("note: parameter groups:") == 1 and "new_no_decay" in proc.stderr
    held_out = [line for line in lines if line.startswith("note: step 2 held-out: ")]
    assert len(held_out) == 1 and "clips 2" in held_out[0] and "ate " in held_out[0]
    assert "━" not in proc.stderr and "FutureWarning" not in proc.stderr
    assert proc.stdout.strip() == f"{run}: 2 steps done (0 skipped); weights.safetensors written"


def test_bad_data_folder_is_one_line_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from page4d_cli.main import app

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["train", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and str(tmp_path / "empty") in result.output
    assert not (tmp_path / "run").exists()


def test_missing_out_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from page4d_cli.main import app

    result = CliRunner().invoke(app, ["train", str(tmp_path)])
    assert result.exit_code == 1 and "--out" in result.output


@pytest.mark.slow
def test_held_out_evaluation_reports_clips_done(clips, tmp_path):
    import torch

    from page4d_cli.train.config import TrainConfig
    from page4d_cli.train.distributed import DistContext
    from page4d_cli.train.evaluation import evaluate_model
    from page4d_cli.train.session import build_model

    cfg = TrainConfig(out=str(tmp_path / "run"), preset="tiny", size=28, frames=2, cameras=2,
                      eval_data=str(clips), eval_every=1, workers=0, device="cpu")
    model = build_model(cfg, None)[0].eval()
    seen: list[tuple[int, int]] = []
    with torch.no_grad():
        metrics = evaluate_model(model, cfg, DistContext(0, 1, 0, torch.device("cpu")),
                                 progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 2), (1, 2), (2, 2)] and metrics["clips"] == 2
