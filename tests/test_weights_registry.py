"""The weights registry, ``resolve_weights``, and ``page4d weights add | list``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import page4d_cli.weights.registry as registry_mod
from page4d_cli.main import app
from page4d_cli.weights import (
    Registry,
    RegistryEntry,
    RegistryError,
    WeightsError,
    WeightsNotFound,
    add_local,
    resolve_weights,
)
from page4d_cli.weights.registry import LayoutError
from tests.hub_server import write_page4d_pt, write_pi3_safetensors


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PAGE4D_HOME", str(tmp_path / "page4d"))
    return tmp_path / "page4d"


def _file(tmp_path: Path, name: str, size: int = 10) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\0" * size)
    return path


def _entry(path: Path, role: str = "pi3", layout: str = "pi3", **kw) -> RegistryEntry:
    fields = dict(role=role, path=str(path), size=path.stat().st_size if path.exists() else 0,
                  layout=layout, layout_checked=True, verified=False, verified_how="layout only",
                  source="local")
    return RegistryEntry(**{**fields, **kw})


def _cli(*args: str):
    return CliRunner().invoke(app, ["weights", *args])


# --- registry file -------------------------------------------------------------------------------

def test_registry_lives_under_page4d_home_and_newest_entry_wins(tmp_path, home):
    reg = Registry()
    assert reg.path == home / "registry.json"
    a, b = _file(tmp_path, "a.safetensors"), _file(tmp_path, "b.safetensors")
    reg.add(_entry(a))
    reg.add(_entry(b))
    assert reg.current("pi3").path == str(b)
    reg.add(_entry(a, verified=True, verified_how="size+sha256"))  # re-adding moves it to the end
    assert [e.path for e in reg.entries("pi3")] == [str(b), str(a)]
    assert reg.current("pi3").verified
    data = json.loads(reg.path.read_text())
    assert data["version"] == 1 and set(data["entries"]) == {"pi3", "page4d", "finetuned"}


def test_current_skips_files_that_no_longer_exist(tmp_path):
    reg = Registry()
    a, b = _file(tmp_path, "a.pt"), _file(tmp_path, "b.pt")
    reg.add(_entry(a, role="page4d", layout="page4d"))
    reg.add(_entry(b, role="page4d", layout="page4d"))
    b.unlink()
    assert reg.current("page4d").path == str(a)
    assert [e.status() for e in reg.entries("page4d")] == ["ok", "missing"]
    a.write_bytes(b"changed size")
    assert reg.entries("page4d")[0].status() == "size changed"


def test_unreadable_registry_is_a_one_line_error(home):
    home.mkdir(parents=True)
    (home / "registry.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"registry\.json is unreadable .* fix or delete it"):
        Registry().entries()
    result = _cli("list")
    assert result.exit_code == 1 and result.output.startswith("error: weights registry")
    assert len(result.output.strip().splitlines()) == 1


# --- resolve_weights -----------------------------------------------------------------------------

def test_nothing_available_gives_one_line_naming_fetch_and_random():
    with pytest.raises(WeightsNotFound) as info:
        resolve_weights()
    message = str(info.value)
    assert "\n" not in message
    assert "page4d weights fetch" in message and "--weights random" in message


def test_registered_files_that_vanished_count_as_nothing(tmp_path):
    a = _file(tmp_path, "a.safetensors")
    Registry().add(_entry(a))
    a.unlink()
    with pytest.raises(WeightsNotFound):
        resolve_weights("auto")


def test_random_needs_nothing_and_ignores_the_registry(tmp_path):
    Registry().add(_entry(_file(tmp_path, "a.safetensors")))
    sel = resolve_weights("random")
    assert sel.random and sel.pi3_path is None and sel.page4d_path is None
    assert any("random init" in note for note in sel.notes)


def test_auto_uses_the_registry_and_notes_a_missing_part(tmp_path):
    pt = _file(tmp_path, "ckpt150.pt")
    Registry().add(_entry(pt, role="page4d", layout="page4d_ckpt150"))
    sel = resolve_weights("auto")
    assert sel.page4d_path == pt and sel.page4d_layout == "page4d_ckpt150"
    assert sel.pi3_path is None and not sel.random
    assert any(n.startswith("pi3: random init") for n in sel.notes)


def test_explicit_paths_win_over_the_registry(tmp_path):
    Registry().add(_entry(_file(tmp_path, "registered.safetensors")))
    mine = _file(tmp_path, "mine.safetensors")
    sel = resolve_weights("auto", pi3=mine)
    assert sel.pi3_path == mine and sel.pi3_layout is None
    sel = resolve_weights("random", page4d=_file(tmp_path, "p.pt"))
    assert sel.page4d_path == tmp_path / "p.pt" and sel.pi3_path is None and not sel.random


def test_bad_explicit_path_and_bad_spec_are_clear_errors(tmp_path):
    with pytest.raises(WeightsNotFound, match=r"--page4d .*nope\.pt does not exist"):
        resolve_weights(page4d=tmp_path / "nope.pt")
    with pytest.raises(WeightsError, match="use auto or random"):
        resolve_weights("pretrained")


# --- add (role rules, with the layout reader stubbed) --------------------------------------------

def test_add_records_the_layout_and_checks_the_role(tmp_path, monkeypatch):
    layouts = {"a.safetensors": "pi3", "x.safetensors": "pi3x", "c.pt": "page4d_ckpt150", "v.pt": "vggt"}
    monkeypatch.setattr(registry_mod, "detect_file_layout", lambda p: layouts[Path(p).name])
    for name in layouts:
        _file(tmp_path, name)
    entry = add_local(tmp_path / "a.safetensors", "pi3")
    assert (entry.layout, entry.verified, entry.source) == ("pi3", False, "local")
    with pytest.raises(LayoutError, match="Pi3X"):
        add_local(tmp_path / "x.safetensors", "pi3")
    with pytest.raises(LayoutError, match="did you mean --as page4d"):
        add_local(tmp_path / "c.pt", "pi3")
    assert add_local(tmp_path / "c.pt", "page4d").layout == "page4d_ckpt150"
    assert add_local(tmp_path / "v.pt", "page4d").layout == "vggt"
    assert Registry().current("page4d").layout == "vggt"


def test_add_missing_file(tmp_path):
    result = _cli("add", str(tmp_path / "absent.pt"), "--as", "page4d")
    assert result.exit_code == 1 and "absent.pt does not exist" in result.output


# --- add with the real layout reader (models.loading.checkpoint_io) ------------------------------

def test_cli_add_real_layouts(tmp_path):
    pi3 = write_pi3_safetensors(tmp_path / "model.safetensors")
    ckpt = write_page4d_pt(tmp_path / "checkpoint_150.pt", "page4d_ckpt150")
    assert _cli("add", str(pi3), "--as", "pi3").exit_code == 0
    result = _cli("add", str(ckpt), "--as", "page4d")
    assert result.exit_code == 0, result.output
    assert "layout page4d_ckpt150" in result.output
    wrong = _cli("add", str(pi3), "--as", "page4d")
    assert wrong.exit_code == 1 and "did you mean --as pi3" in wrong.output
    sel = resolve_weights()
    assert (sel.pi3_path, sel.page4d_path, sel.page4d_layout) == (pi3, ckpt, "page4d_ckpt150")


@pytest.mark.parametrize("layout", ["page4d", "vggt"])
def test_cli_add_page4d_family(tmp_path, layout):
    path = write_page4d_pt(tmp_path / f"{layout}.pt", layout)
    result = _cli("add", str(path), "--as", "page4d")
    assert result.exit_code == 0, result.output
    assert Registry().current("page4d").layout == layout


def test_cli_add_garbage_file_is_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint" * 10)
    result = _cli("add", str(junk), "--as", "page4d")
    assert result.exit_code == 1 and result.output.startswith("error: ")
    assert "junk.pt" in result.output
    assert Registry().entries() == []


# --- list ----------------------------------------------------------------------------------------

def test_list_empty_table_and_json(tmp_path, home):
    empty = _cli("list")
    assert empty.exit_code == 0 and "No weights registered" in empty.output
    a = _file(tmp_path, "a.safetensors", 2_000_000)
    p = _file(tmp_path, "p.pt", 3_000)
    Registry().add(_entry(a, verified=True, verified_how="size+sha256"))
    Registry().add(_entry(p, role="page4d", layout="page4d_ckpt150"))
    p.unlink()
    table = CliRunner().invoke(app, ["weights", "list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "size+sha256" in table.output and "page4d_ckpt150" in table.output
    assert "missing" in table.output and "2.0 MB" in table.output
    listed = json.loads(_cli("list", "--json").output)
    assert listed["registry"] == str(home / "registry.json")
    by_role = {e["role"]: e for e in listed["entries"]}
    assert by_role["pi3"]["status"] == "ok" and by_role["pi3"]["selected"] is True
    assert by_role["page4d"]["status"] == "missing" and by_role["page4d"]["selected"] is False
