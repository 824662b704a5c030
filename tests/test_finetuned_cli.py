"""Stage 4 through the commands: reconstruct --finetuned (tiny, end to end), inspect-load --finetuned,
weights add --as finetuned (and its use by --weights auto)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from models.loading import load_model
from page4d_cli.main import app
from tests.finetuned_runs import write_run
from tests.helpers import CAMS

SMALL_RUN = ["--preset", "tiny", "--frames", "2", "--size", "56", "--quiet"]


@pytest.fixture
def run(tmp_path):
    """A tiny run holding the geometry stream, mask biases and depth head, shifted from the seed-0 init."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, _ = load_model(preset="tiny")
    names = [n for n, _ in model.named_parameters()]
    names = [n for n in names if "geo_" in n or "mask_bias" in n or n.startswith("depth_head")]
    write_run(tmp_path / "runs" / "t4", model, names, step=12, shift=0.01)
    return tmp_path / "runs" / "t4"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def stage4(provenance: dict) -> list[dict]:
    return [t for t in provenance["tensors"] if t["stage"] == 4]


@pytest.mark.slow
def test_reconstruct_with_finetuned_run(tmp_path, run):
    out = tmp_path / "out"
    result = invoke("reconstruct", CAMS, *SMALL_RUN, "--weights", "random", "--finetuned", run, "--out", out)
    assert result.exit_code == 0, result.output
    provenance = json.loads((out / "weights_provenance.json").read_text())
    overlaid = stage4(provenance)
    assert overlaid and all(t["adaptation"][0] == "fine-tuned, run t4, step 12" for t in overlaid)
    assert provenance["summary"]["files"]["finetuned"]["step"] == 12
    record = json.loads((out / "run.json").read_text())
    assert record["weights"]["provenance"]["per_stage"]["stage 4 (fine-tuned)"]["tensors"] == len(overlaid)
    assert "random weights" not in result.output  # a trained run is not a smoke run


def test_reconstruct_refuses_another_network_before_reading(tmp_path, run):
    out = tmp_path / "out"
    result = invoke("reconstruct", CAMS, "--preset", "small", "--frames", "2", "--size", "56", "--weights", "random",
                    "--finetuned", run, "--out", out)
    assert result.exit_code == 1
    line = result.output.strip()
    assert "config.json: the run trained a different network (depth: run 4, model 8" in line
    assert "--preset tiny" in line and not out.exists()


def test_inspect_load_shows_stage_4(run):
    result = invoke("inspect-load", "--preset", "tiny", "--no-registry", "--finetuned", run, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["summary"]["per_stage"]["stage 4 (fine-tuned)"]["tensors"] == len(stage4(data)) > 0
    table = invoke("inspect-load", "--preset", "tiny", "--no-registry", "--finetuned", run)
    assert "stage 4 (fine-tuned)" in table.output and "fine-tuned, run t4, step 12" in table.output


def test_weights_add_finetuned_is_used_when_it_fits(tmp_path, run):
    added = invoke("weights", "add", run, "--as", "finetuned")
    assert added.exit_code == 0, added.output
    assert "as finetuned (layout page4d-train-run" in added.output
    listed = json.loads(invoke("weights", "list", "--json").output)
    entry = next(e for e in listed["entries"] if e["role"] == "finetuned")
    assert entry["selected"] and entry["path"].endswith("t4/weights.safetensors")
    plan = json.loads(invoke("inspect-load", "--preset", "tiny", "--json").output)
    assert stage4(plan)  # the registered run overlays the tiny network
    other = json.loads(invoke("inspect-load", "--preset", "small", "--json").output)
    assert not stage4(other)  # ... and is left out of another network
    bad = invoke("weights", "add", tmp_path, "--as", "finetuned")
    assert bad.exit_code == 1 and "config.json: missing" in bad.output
