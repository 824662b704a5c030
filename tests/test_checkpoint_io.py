"""Checkpoint file access: listing without reading data, per-tensor reads, and every bad-file case."""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models.loading.checkpoint_io import open_checkpoint
from models.loading.checkpoint_reader import CheckpointError
from models.loading.synthetic import (
    TINY,
    synthetic_specs,
    synthetic_state_dict,
    synthetic_tensor,
    write_checkpoint,
    write_synthetic,
)
from models.loading.torch_reader import StateDictReader
from tests.broken_checkpoints import truncated_copy, write_code_pickle
from tests.helpers import SHARED, needs_shared

FIXTURES = SHARED / "reference" / "fixtures"


def assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path, *words: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for word in words:
        assert word in msg, f"{word!r} not in: {msg}"
    return msg


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "st": write_synthetic(root / "pi3.safetensors", "pi3", **TINY),
        "pt": write_synthetic(root / "page4d.pt", "page4d", "torch", **TINY),
        "pt_opt": write_synthetic(root / "page4d_opt.pt", "page4d_ckpt150", "torch", optimizer=True, seed=3, **TINY),
    }


# ---- good files -----------------------------------------------------------------------------


def test_safetensors_lists_in_file_order_and_reads_values(tiny_files):
    specs = synthetic_specs("pi3", **TINY)
    with open_checkpoint(tiny_files["st"]) as r:
        assert r.format == "safetensors" and r.path == tiny_files["st"]
        assert r.keys() == [name for name, _ in specs]
        assert all(r.shape(n) == s and r.dtype(n) == torch.float32 for n, s in specs)
        assert r.numel_total == sum(int(np.prod(s)) for _, s in specs)
        assert r.metadata["page4d_synthetic"] == "pi3"
        assert "decoder.3.attn.qkv.weight" in r and "nope" not in r
        name, shape = specs[40]
        torch.testing.assert_close(r.get(name), synthetic_tensor(name, shape), rtol=0, atol=0)
        torch.testing.assert_close(r.get("image_mean").flatten(), torch.tensor([0.485, 0.456, 0.406]))
        with pytest.raises(KeyError, match="no tensor named"):
            r.get("not.a.key")


def test_our_safetensors_writer_matches_the_library(tiny_files):
    ref = load_file(str(tiny_files["st"]))
    sd = synthetic_state_dict("pi3", device="cpu", **TINY)
    assert ref.keys() == sd.keys()
    assert all(torch.equal(ref[k], sd[k]) for k in sd)


def test_torch_model_entry_is_used_and_extras_ignored(tiny_files):
    with open_checkpoint(tiny_files["pt_opt"]) as r:
        assert r.format == "torch"
        assert r.metadata["state_dict_entry"] == "model"
        assert "optimizer" in r.metadata["ignored"] and "epoch" in r.metadata["ignored"]
        specs = synthetic_specs("page4d_ckpt150", **TINY)
        assert r.keys() == [n for n, _ in specs]
        name, shape = "aggregator.spatial_mask_head.alpha_logit", ()
        assert r.shape(name) == shape
        assert torch.equal(r.get(name), synthetic_tensor(name, shape, seed=3))


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model"])
def test_torch_state_dict_locations(tmp_path, wrap):
    sd = {"a.weight": torch.randn(3, 2), "b": torch.arange(4)}
    obj = {"bare": sd, "state_dict": {"state_dict": sd, "step": 3}, "model": {"model": sd, "args": None}}[wrap]
    torch.save(obj, tmp_path / "x.pth")
    with open_checkpoint(tmp_path / "x.pth") as r:
        assert r.keys() == ["a.weight", "b"] and r.dtype("b") == torch.int64
        assert torch.equal(r.get("a.weight"), sd["a.weight"])


def test_harmless_training_extras_are_accepted(tmp_path):
    """Training checkpoints carry argparse args and numpy metrics; those need no code to unpickle."""
    sd = {"w": torch.ones(2)}
    obj = {"model": sd, "args": argparse.Namespace(lr=1e-4, name="x"), "best": np.float64(0.5), "hist": np.zeros(3)}
    torch.save(obj, tmp_path / "train.pt")
    with open_checkpoint(tmp_path / "train.pt") as r:
        assert r.keys() == ["w"]


def test_legacy_torch_format_opens(tmp_path):
    torch.save({"model": {"w": torch.ones(2, 2)}}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    with open_checkpoint(tmp_path / "old.pt") as r:
        assert r.metadata["mmap"] == "False" and torch.equal(r.get("w"), torch.ones(2, 2))


def test_misnamed_file_is_sniffed_by_content(tmp_path, tiny_files):
    (tmp_path / "weights.bin").write_bytes(tiny_files["st"].read_bytes())
    with open_checkpoint(tmp_path / "weights.bin") as r:
        assert r.format == "safetensors"


def test_bf16_round_trip(tmp_path):
    sd = {"x": torch.randn(5, 3).to(torch.bfloat16), "s": torch.tensor(2.0, dtype=torch.float16)}
    write_checkpoint(sd, tmp_path / "h.safetensors")
    with open_checkpoint(tmp_path / "h.safetensors") as r:
        assert r.dtype("x") == torch.bfloat16 and r.shape("s") == ()
        assert torch.equal(r.get("x"), sd["x"]) and torch.equal(r.get("s"), sd["s"])


def test_state_dict_reader_on_meta():
    r = StateDictReader(synthetic_state_dict("page4d"))
    assert r.numel_total == 1_256_810_413 and r.format == "memory"


# ---- bad files ------------------------------------------------------------------------------


def test_truncated_safetensors_data(tmp_path, tiny_files):
    bad = truncated_copy(tiny_files["st"], tmp_path / "cut.safetensors", keep=0.6)
    (n,) = struct.unpack("<Q", bad.read_bytes()[:8])
    full, have = tiny_files["st"].stat().st_size - 8 - n, bad.stat().st_size - 8 - n
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(bad)
    assert_one_line_naming(exc, bad, f"truncated: header says {full} bytes of data, file has {have}",
                           "page4d weights fetch")


@pytest.mark.parametrize("keep", [0, 5, 100])
def test_truncated_safetensors_header(tmp_path, tiny_files, keep):
    bad = truncated_copy(tiny_files["st"], tmp_path / "cut.safetensors", keep=keep)
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(bad)
    assert_one_line_naming(exc, bad, "truncated")


def test_corrupt_safetensors_header(tmp_path):
    raw = b'{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}'
    (tmp_path / "c.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(16))
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(tmp_path / "c.safetensors")
    assert_one_line_naming(exc, tmp_path / "c.safetensors", "corrupt", "shape [2, 2] but 12 bytes")
    (tmp_path / "j.safetensors").write_bytes(struct.pack("<Q", 6) + b"{nope}")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        open_checkpoint(tmp_path / "j.safetensors")


@pytest.mark.parametrize("keep", [0.999, 0.5, 64, 0])
def test_truncated_torch_file(tmp_path, tiny_files, keep):
    bad = truncated_copy(tiny_files["pt"], tmp_path / "cut.pt", keep=keep)
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(bad)
    assert_one_line_naming(exc, bad, "truncated or corrupt", "page4d weights fetch")


def test_code_requiring_pickle_is_refused(tmp_path):
    bad = write_code_pickle(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(bad)
    assert_one_line_naming(exc, bad, "refused", "execute code", "never unpickles", "safetensors",
                           "UntrustedPayload")


def test_missing_directory_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(tmp_path / "absent.pt")
    assert_one_line_naming(exc, tmp_path / "absent.pt", "no such file")
    with pytest.raises(CheckpointError, match="is a directory"):
        open_checkpoint(tmp_path)
    (tmp_path / "notes.txt").write_text("hello, not weights\n")
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(tmp_path / "notes.txt")
    assert_one_line_naming(exc, tmp_path / "notes.txt", "not a checkpoint")


def test_torch_file_without_state_dict(tmp_path):
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(tmp_path / "meta.pt")
    assert_one_line_naming(exc, tmp_path / "meta.pt", "no state dict found", "epoch")
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        open_checkpoint(tmp_path / "tensor.pt")


# ---- header-only opening of a big file ---------------------------------------------------------


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _page_faults() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt + usage.ru_majflt


def _read_bytes() -> int:
    lines = Path("/proc/self/io").read_text().splitlines()
    return int(next(line for line in lines if line.startswith("rchar")).split()[1])


BIG = dict(embed_dim=384, encoder_depth=12, depth=12, num_heads=6, dpt_features=128,
           dpt_out_channels=(96, 192, 384, 384), track_head=False)  # ~ 430 MB in float32


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc to count reads")
@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_open_big_file_reads_only_the_header(tmp_path, fmt):
    path = write_synthetic(tmp_path / f"big.{'safetensors' if fmt == 'safetensors' else 'pt'}", "page4d", fmt, **BIG)
    size = path.stat().st_size
    assert size > 250e6
    rss0, read0, faults0 = _rss_bytes(), _read_bytes(), _page_faults()
    with open_checkpoint(path) as r:
        keys = r.keys()
        shapes = [r.shape(k) for k in keys]
        read, grown = _read_bytes() - read0, _rss_bytes() - rss0
        touched = (_page_faults() - faults0) * resource.getpagesize()
        # A reader that loads the data reads it (rchar), keeps it (RSS) or maps it in (page faults,
        # even when it drops it again); the header is well under 1 MB.
        assert read < 0.02 * size, f"read {read} of {size} bytes"
        assert grown < 0.1 * size, f"RSS grew {grown} bytes for a {size}-byte file"
        assert touched < 0.05 * size, f"{touched} bytes of pages faulted in for a {size}-byte file"
        assert len(keys) == len(shapes) == len(synthetic_specs("page4d", **BIG))
        name = "aggregator.global_blocks.11.mlp.fc1.weight"
        assert torch.equal(r.get(name), synthetic_tensor(name, r.shape(name)))
    path.unlink()


# ---- the shared fixtures ----------------------------------------------------------------------


@needs_shared("reference", "fixtures")
@pytest.mark.parametrize("name", ["vggt_layout_tiny", "pi3_layout_tiny"])
def test_fixture_weights_open(name):
    path = FIXTURES / name / "weights.safetensors"
    with open_checkpoint(path) as r:
        ref = load_file(str(path))
        assert set(r.keys()) == set(ref)
        key = sorted(ref)[7]
        assert torch.equal(r.get(key), ref[key]) and r.shape(key) == tuple(ref[key].shape)
    cfg = json.loads((FIXTURES / name / "config.json").read_text())
    assert cfg["encoder"]["embed_dim"] == 64


# ---- format corner cases ----------------------------------------------------------------------


def test_header_length_that_looks_like_a_pickle_opcode(tmp_path):
    """A safetensors header length whose first byte is 0x80 must not be taken for a torch pickle."""
    sd = {"w": torch.arange(6, dtype=torch.int64).reshape(2, 3), "m": torch.ones(2, dtype=torch.bool)}
    for pad in range(0, 256):
        path = write_checkpoint(sd, tmp_path / "odd.safetensors", metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("could not make a header length with low byte 0x80")
    with open_checkpoint(path) as r:
        assert r.format == "safetensors" and torch.equal(r.get("w"), sd["w"]) and r.dtype("m") == torch.bool


def test_unsupported_dtype_is_named(tmp_path):
    raw = b'{"a":{"dtype":"F4_WEIRD","shape":[2],"data_offsets":[0,2]}}'
    (tmp_path / "d.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(2))
    with pytest.raises(CheckpointError) as exc:
        open_checkpoint(tmp_path / "d.safetensors")
    assert_one_line_naming(exc, tmp_path / "d.safetensors", "F4_WEIRD", "convert")
