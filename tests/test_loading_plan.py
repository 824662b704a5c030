"""The loading plan keeps structure (place, role, rule, cause) and makes gaps visible."""

from __future__ import annotations

import pickle

import pytest
import torch
from typer.testing import CliRunner

from models.loading import CheckpointError, inspect_load, load_model
from models.loading.checkpoint_io import open_checkpoint
from models.loading.checkpoint_reader import CheckpointReader
from models.loading.plan import MissingTensorsError
from models.loading.source_map import candidate_of
from models.loading.synthetic import TINY, synthetic_state_dict, write_checkpoint, write_synthetic
from page4d_cli.main import app

GAP = "depth_head.scratch.layer2_rn.weight"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    sd = synthetic_state_dict("page4d", device="cpu", **TINY)
    del sd[GAP]  # a truncated state dict: the layout has this tensor, the file does not
    return {
        "pi3": write_synthetic(folder / "model.safetensors", "pi3", **dict(TINY, depth=3)),
        "page4d": write_synthetic(folder / "checkpoint_mask.safetensors", "page4d", **TINY),
        "gap": write_checkpoint(sd, folder / "gap.pt", "torch"),
        "vggt": write_synthetic(folder / "vggt.safetensors", "vggt", **TINY),
    }


def test_records_carry_place_role_rule_and_cause(files):
    report = inspect_load(pi3=files["pi3"], page4d=files["page4d"], preset="tiny")
    pose = report.record("aggregator.pose_time_blocks.1.attn.qkv.weight")
    assert (pose.layer, pose.kind, pose.stream, pose.role, pose.rule, pose.stage) == (2, "time", "pose", "pi3",
                                                                                       "block", 1)
    view = report.record("aggregator.view_blocks.3.norm1.weight")
    assert (view.layer, view.kind, view.stream, view.role) == (4, "view", "shared", "page4d")
    registers = report.record("aggregator.register_token")
    assert candidate_of(registers.rule, registers.candidate).adaptation is not None  # Pi3's 5 -> 4 registers
    temporal = [r for r in report.records if r.name.startswith("aggregator.temporal_pos.0.")]
    assert temporal and all(r.layer == 1 and r.stage == 3 and r.cause == "new" for r in temporal)
    assert all(r.cause is None for r in report.records if r.stage in (1, 2))
    assert report.warnings == []


def test_a_file_lacking_a_tensor_of_its_layout_fails_naming_it(files):
    with pytest.raises(MissingTensorsError, match=rf"gap.pt: .*lacks 1 tensor.*{GAP}.*--allow-missing"):
        inspect_load(page4d=files["gap"], preset="tiny")
    with pytest.raises(MissingTensorsError):
        load_model(page4d=files["gap"], preset="tiny")


def test_allow_missing_initialises_the_gap_with_a_warning(files):
    model, report = load_model(page4d=files["gap"], preset="tiny", allow_missing=True)
    record = report.record(GAP)
    assert (record.stage, record.cause, record.source) == (3, "missing", [GAP])
    [warning] = report.warnings
    assert "gap.pt: lacks 1 tensor(s)" in warning and "depth head" in warning
    assert report.summary()["warnings"] == [warning]  # what run.json records
    assert torch.isfinite(dict(model.named_parameters())[GAP]).all()


def test_inspect_load_cli_gap_is_an_error_and_allow_missing_a_warning(files):
    runner = CliRunner()
    base = ["inspect-load", "--no-registry", "--preset", "tiny", "--page4d", str(files["gap"])]
    failed = runner.invoke(app, base)
    assert failed.exit_code == 1
    [line] = [ln for ln in failed.output.splitlines() if ln.startswith("error:")]
    assert GAP in line
    allowed = runner.invoke(app, [*base, "--allow-missing"], env={"COLUMNS": "250"})
    assert allowed.exit_code == 0, allowed.output
    assert "warning:" in allowed.output and "lacks 1 tensor(s)" in allowed.output


def test_notes_say_why_the_mask_head_or_the_heads_were_initialised(files):
    vggt = inspect_load(pi3=files["pi3"], page4d=files["vggt"], preset="tiny")
    assert all(r.cause == "not_in_layout" for r in vggt.records if r.group == "mask head")
    assert any("vggt.safetensors" in note and "has no mask head" in note for note in vggt.notes)
    ckpt150 = write_synthetic(files["pi3"].parent / "checkpoint_150.safetensors", "page4d_ckpt150", **TINY)
    pinned = inspect_load(page4d=ckpt150, preset="tiny", mask_head_layout="official")
    assert any("mask head initialised as a whole (the file has the other layout variant)" in note
               for note in pinned.notes)
    only_pi3 = inspect_load(pi3=files["pi3"], preset="tiny")
    heads = [r for r in only_pi3.records if r.group in ("camera head", "depth head", "point head")]
    assert heads and all((r.cause, r.cause_role) == ("no_file", "page4d") for r in heads)
    [note] = [n for n in only_pi3.notes if n.startswith("no page4d file")]
    assert "camera head" in note and "mask head" in note


def test_inspect_load_layer_out_of_range_is_an_error(files):
    runner = CliRunner()
    base = ["inspect-load", "--no-registry", "--preset", "tiny", "--pi3", str(files["pi3"])]
    assert runner.invoke(app, [*base, "--layer", "4", "--json"]).exit_code == 0
    for bad in ("0", "5"):
        result = runner.invoke(app, [*base, "--layer", bad])
        assert result.exit_code == 1
        assert "--layer" in result.output and "layers 1 to 4" in result.output


def test_readers_are_closed_also_when_a_later_file_fails(files, monkeypatch):
    closed = []
    real_close = CheckpointReader.close

    def close(self):
        closed.append(self.path.name)
        real_close(self)

    monkeypatch.setattr(CheckpointReader, "close", close)
    for subclass in CheckpointReader.__subclasses__():
        monkeypatch.setattr(subclass, "close", close, raising=False)
    with pytest.raises(CheckpointError, match="not PAGE-4D"):
        inspect_load(pi3=files["pi3"], page4d=files["pi3"], preset="tiny")  # a Pi3 file as --page4d
    assert closed.count("model.safetensors") == 2  # the Pi3 reader and the refused one
    closed.clear()
    inspect_load(pi3=files["pi3"], page4d=files["page4d"], preset="tiny")
    assert sorted(closed) == ["checkpoint_mask.safetensors", "model.safetensors"]


class NeedsCode:
    """Unpickling an instance imports this module: a file holding one must be refused."""


def test_a_raw_pickle_is_refused_in_one_line_naming_the_global_without_torch_warnings(tmp_path, recwarn):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"model": {"w": torch.ones(2)}, "extra": NeedsCode()}, fh, protocol=4)
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and "weights.pkl: refused" in message
    assert "NeedsCode" in message and "an unknown global" not in message
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_a_missing_mask_head_tensor_takes_the_whole_mask_head_with_it(tmp_path):
    sd = synthetic_state_dict("page4d", device="cpu", **TINY)
    del sd["aggregator.spatial_mask_head.head0.4.bias"]
    path = write_checkpoint(sd, tmp_path / "no_bias.safetensors", "safetensors")
    with pytest.raises(MissingTensorsError, match="head0.4.bias"):
        inspect_load(page4d=path, preset="tiny")
    report = inspect_load(page4d=path, preset="tiny", allow_missing=True)
    mask = [r for r in report.records if r.group == "mask head"]
    assert all(r.stage == 3 for r in mask)  # never half loaded
    assert {r.cause for r in mask} == {"missing", "unit"}
    assert any("mask head initialised as a whole (some of its tensors are missing" in note for note in report.notes)
    assert any("lacks 1 tensor(s)" in warning for warning in report.warnings)


@pytest.mark.slow
def test_reconstruct_refuses_a_gap_and_allow_missing_warns_in_terminal_and_run_json(files, tmp_path):
    import json

    from page4d_cli.main import app as cli
    from tests.helpers import CAMS

    out = tmp_path / "o"
    args = ["reconstruct", str(CAMS), "--preset", "tiny", "--page4d", str(files["gap"]), "--frames", "2",
            "--size", "70", "--out", str(out), "--no-preview"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and GAP in refused.output and not out.exists()
    allowed = CliRunner().invoke(cli, [*args, "--allow-missing"])
    assert allowed.exit_code == 0, allowed.output
    assert "warning:" in allowed.output and "lacks 1 tensor(s)" in allowed.output
    run = json.loads((out / "run.json").read_text())
    assert any("lacks 1 tensor(s)" in w for w in run["warnings"])
    assert any("lacks 1 tensor(s)" in w for w in run["weights"]["provenance"]["warnings"])
    assert "--allow-missing" in run["command_line"] and run["options"]["allow_missing"] is True
