"""Stage 4: a training run's tensors overlay stages 1-3, with provenance and clear refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from models.config import Page4DConfig
from models.loading import inspect_load, load_model
from models.loading.finetuned import FinetunedError
from models.vggt import VGGT
from tests.finetuned_runs import write_run

# Geometry-stream blocks are stage-3 copies of the pose stream when no file is given: the overlay must win.
TRAINED = ("aggregator.geo_time_blocks.1.", "aggregator.geo_view_blocks.1.", "aggregator.mask_bias.lambda")


def trained_names(model) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.startswith(TRAINED)]


@pytest.fixture(scope="module")
def tiny():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return VGGT.from_preset("tiny")


def load(seed=0, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return load_model(preset="tiny", **kwargs)


def test_overlay_values_and_provenance(tmp_path, tiny):
    names = trained_names(tiny)
    assert any("geo_time" in n for n in names) and any("lambda" in n for n in names)
    tensors = write_run(tmp_path / "demo", tiny, names, step=7)
    base, _ = load()
    model, report = load(finetuned=tmp_path / "demo")
    params, base_params = dict(model.named_parameters()), dict(base.named_parameters())
    for name, value in params.items():
        expected = tensors[name] if name in tensors else base_params[name]
        assert torch.equal(value, expected), name
    record = report.record(names[0])
    assert record.stage == 4 and record.source == [names[0]] and record.file.endswith("weights.safetensors")
    assert record.adaptation[0] == "fine-tuned, run demo, step 7"
    assert record.adaptation[1] == "over stage 3 (initialised)"
    counts = report.counts()
    assert counts[4]["tensors"] == len(names)
    assert counts[4]["parameters"] == sum(t.numel() for t in tensors.values())
    assert report.files["finetuned"]["step"] == 7 and report.files["finetuned"]["run"] == "demo"
    summary = report.summary()
    assert summary["per_stage"]["stage 4 (fine-tuned)"]["tensors"] == len(names)
    assert any(note.startswith("stage 4 (fine-tuned, run demo, step 7)") for note in report.notes)
    json.dumps(report.to_json())  # serialisable for weights_provenance.json


def test_weights_file_path_and_header_only_plan_agree(tmp_path, tiny):
    write_run(tmp_path / "demo", tiny, trained_names(tiny))
    planned = inspect_load(preset="tiny", finetuned=tmp_path / "demo" / "weights.safetensors")
    _, loaded = load(finetuned=tmp_path / "demo")
    assert [(r.name, r.stage, r.source, r.adaptation) for r in planned.records] == \
        [(r.name, r.stage, r.source, r.adaptation) for r in loaded.records]


def test_bfloat16_load_casts_and_says_so(tmp_path, tiny):
    names = trained_names(tiny)
    tensors = write_run(tmp_path / "demo", tiny, names)
    model, report = load(finetuned=tmp_path / "demo", dtype="bfloat16")
    name = next(n for n in names if "geo_time" in n)
    assert torch.equal(dict(model.named_parameters())[name], tensors[name].to(torch.bfloat16))
    assert "dtype float32 -> bfloat16" in report.record(name).adaptation


def test_network_mismatch_names_the_fields(tmp_path, tiny):
    write_run(tmp_path / "demo", tiny, trained_names(tiny))
    with pytest.raises(FinetunedError, match=r"config\.json: the run trained a different network \(depth: run 4, "
                                             r"model 8.*--preset tiny"):
        load_model(preset="small", finetuned=tmp_path / "demo")
    with pytest.raises(FinetunedError, match=r"\(temporal_encoding: run 'rope', model 'alibi'\)"):
        load_model(preset="tiny", temporal_encoding="alibi", finetuned=tmp_path / "demo")
    with pytest.raises(FinetunedError, match="different network"):
        inspect_load(preset="small", finetuned=tmp_path / "demo")


def test_custom_network_loads_with_its_config(tmp_path):
    config = Page4DConfig.preset("tiny", temporal_encoding="alibi")
    model = VGGT(config=config)
    write_run(tmp_path / "alibi", model, trained_names(model))
    with pytest.raises(FinetunedError, match="load_model\\(config=...\\)"):
        load_model(preset="tiny", finetuned=tmp_path / "alibi")
    _, report = load_model(config=config, finetuned=tmp_path / "alibi")
    assert report.counts()[4]["tensors"] == len(trained_names(model))


def test_run_started_from_another_run(tmp_path, tiny):
    everything = [n for n, _ in tiny.named_parameters()]
    first = write_run(tmp_path / "t1", tiny, everything, step=100, shift=0.25)
    names = trained_names(tiny)
    second = write_run(tmp_path / "t4", tiny, names, step=20, shift=1.0,
                       init={"pi3": None, "page4d": None, "init": str(tmp_path / "t1")})
    model, report = load(finetuned=tmp_path / "t4")
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], second[n]) for n in names)
    assert all(torch.equal(params[n], first[n]) for n in everything if n not in second)
    assert report.counts()[4]["tensors"] == len(everything)
    assert report.record(names[0]).adaptation == ["fine-tuned, run t4, step 20", "over run t1"]
    other = next(n for n in everything if n not in second)
    assert report.record(other).adaptation == ["fine-tuned, run t1, step 100", "over stage 3 (initialised)"]
    shutil.rmtree(tmp_path / "t1")
    with pytest.raises(FinetunedError, match=r"t4/config\.json: the run started from .*t1, which is missing"):
        load(finetuned=tmp_path / "t4")


def test_unusable_runs_are_refused_with_one_line(tmp_path, tiny):
    run = tmp_path / "run"
    with pytest.raises(FinetunedError, match="no such run folder"):
        load(finetuned=run)
    run.mkdir()
    with pytest.raises(FinetunedError, match=r"run/config\.json: missing; .* is not a `page4d train` run folder"):
        load(finetuned=run)
    (run / "config.json").write_text(json.dumps({"format": "page4d-cameras"}))
    with pytest.raises(FinetunedError, match="format is 'page4d-cameras'"):
        load(finetuned=run)
    (run / "config.json").write_text(json.dumps({"format": "page4d-train-run", "version": 1,
                                                 "network": tiny.config.to_dict()}))
    with pytest.raises(FinetunedError, match=r"weights\.safetensors: missing; the run has not written a checkpoint"):
        load(finetuned=run)
    (run / "weights.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(FinetunedError, match="truncated"):
        load(finetuned=run)
    from safetensors.torch import save_file

    save_file({"not.a.tensor.of.ours": torch.zeros(2)}, str(run / "weights.safetensors"))
    with pytest.raises(FinetunedError, match="'not.a.tensor.of.ours' .* is not in this network"):
        load(finetuned=run)
    name = trained_names(tiny)[0]
    save_file({name: torch.zeros(3)}, str(run / "weights.safetensors"))
    with pytest.raises(FinetunedError, match=f"{name} has shape \\[3\\] but the model needs"):
        load(finetuned=run)
    save_file({name: torch.full(tuple(dict(tiny.named_parameters())[name].shape), float("nan"))},
              str(run / "weights.safetensors"))
    with pytest.raises(FinetunedError, match=f"tensor {name} holds NaN/Inf"):
        load(finetuned=run)
    for error in (FinetunedError,):
        message = str(pytest.raises(error, load, finetuned=run).value)
        assert "\n" not in message
