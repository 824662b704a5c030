"""``page4d inspect-load``: the loading plan as tables and JSON, from file headers only."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.loading.synthetic import TINY, synthetic_specs, write_synthetic
from page4d_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    return (write_synthetic(folder / "model.safetensors", "pi3", **dict(TINY, depth=3)),
            write_synthetic(folder / "checkpoint_mask.pt", "page4d", "torch", **dict(TINY, track_head=True)))


def invoke(*args):
    result = runner.invoke(app, ["inspect-load", *map(str, args)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_table_shows_stages_sources_and_unused(tiny_files):
    pi3, page4d = tiny_files
    out = invoke("--pi3", pi3, "--page4d", page4d, "--preset", "tiny")
    assert "layout pi3" in out and "layout page4d" in out
    assert "decoder.0.norm1.weight" in out  # source of layer 1 / Time-SA
    assert "aggregator.frame_blocks.3" in out  # layer 4 from PAGE-4D
    assert "slice Pi3 registers 1-4" in out
    assert "stage 1 (Pi3)" in out and "stage 3 (initialised)" in out
    assert "Unused tensors of the page4d file" in out and "track_head" in out
    assert "Unused tensors of the pi3 file" in out and "point_head.* (2)" in out and "image_mean (1)" in out
    assert "aggregator.frame_blocks.{0-2}.*" in out  # PAGE-4D layers 1-3 come from Pi3


def test_json_output_filters_by_layer_and_tensor(tiny_files):
    pi3, page4d = tiny_files
    data = json.loads(invoke("--pi3", pi3, "--page4d", page4d, "--preset", "tiny", "--json", "--layer", "2"))
    groups = {g["group"] for g in data["groups"]}
    assert groups and all("layer 2" in g or g == "temporal encoding" for g in groups)
    assert {"layer 2 / Time-SA / pose", "layer 2 / View-SA / geo"} <= groups
    assert data["summary"]["per_stage"]["stage 1 (Pi3)"]["tensors"] > 0
    data = json.loads(invoke("--pi3", pi3, "--page4d", page4d, "--preset", "tiny", "--json", "--tensor",
                             "camera_head.trunk.0.attn.*"))
    names = {t["name"] for t in data["tensors"]}
    assert names == {"camera_head.trunk.0.attn.qkv.weight", "camera_head.trunk.0.attn.qkv.bias",
                     "camera_head.trunk.0.attn.proj.weight", "camera_head.trunk.0.attn.proj.bias"}
    assert all(t["stage"] == 2 and t["source"] == [t["name"]] for t in data["tensors"])


def test_without_files_everything_is_stage_3_and_the_plan_says_who_would_fill_it():
    data = json.loads(invoke("--preset", "tiny", "--json"))
    assert {t["stage"] for t in data["tensors"]} == {3}
    assert "encoder" in data["would_fill"]["pi3"]
    assert "camera head" in data["would_fill"]["page4d"]
    assert "Which files would fill what" in invoke("--preset", "tiny")


def test_bad_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    result = runner.invoke(app, ["inspect-load", "--pi3", str(bad), "--preset", "tiny"])
    assert result.exit_code == 1
    assert "model.safetensors" in result.output and len(result.output.strip().splitlines()) == 1


def write_sparse_safetensors(path: Path, specs) -> Path:
    """A full-size safetensors file whose data region is a hole: real header, no data written."""
    header, offset = {}, 0
    for name, shape in specs:
        nbytes = 4
        for s in shape:
            nbytes *= s
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return path


def read_bytes_of_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise OSError("no rchar")


def test_full_size_files_are_inspected_from_headers(tmp_path):
    if not Path("/proc/self/io").exists():
        pytest.skip("needs /proc/self/io to count bytes read")
    pi3 = write_sparse_safetensors(tmp_path / "model.safetensors", synthetic_specs("pi3"))
    page4d = write_sparse_safetensors(tmp_path / "checkpoint_mask.safetensors", synthetic_specs("page4d"))
    total = pi3.stat().st_size + page4d.stat().st_size
    assert total > 8e9  # the real sizes: ~3.8 GB + ~5 GB
    before, start = read_bytes_of_this_process(), time.perf_counter()
    data = json.loads(invoke("--pi3", pi3, "--page4d", page4d, "--preset", "full", "--json"))
    elapsed, read = time.perf_counter() - start, read_bytes_of_this_process() - before
    print(f"inspect-load on {total / 1e9:.1f} GB of checkpoints: {elapsed:.1f} s, {read / 1e6:.1f} MB read")
    assert read < 0.01 * total  # headers only (and Python's own imports)
    per_stage = data["summary"]["per_stage"]
    assert per_stage["stage 1 (Pi3)"]["tensors"] > 0 and per_stage["stage 2 (PAGE-4D)"]["tensors"] > 0
    assert per_stage["stage 3 (initialised)"]["parameters"] < 1000
