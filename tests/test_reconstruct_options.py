"""One definition per ``reconstruct`` option: defaults, choices and checks in options.py;
every option checked before any work; run.json's command re-runs the same reconstruction."""

from __future__ import annotations

import inspect
import json
import os
import shlex
from enum import Enum
from pathlib import Path

import pytest
from typer.testing import CliRunner

from page4d_cli.commands.reconstruct import reconstruct_cmd
from page4d_cli.main import app
from page4d_cli.pipeline import options as opt
from page4d_cli.pipeline.errors import InputError
from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct
from tests.helpers import CAMS, TINY_RUN, reconstruct_cli

TINY = [*TINY_RUN, "--size", 70, "--frames", 2]


def test_the_command_line_takes_its_defaults_and_choices_from_options_py():
    from models.config import PRESETS

    assert opt.PRESET_NAMES == tuple(PRESETS)
    library = ReconstructOptions()
    compared = 0
    for name, parameter in inspect.signature(reconstruct_cmd).parameters.items():
        if not hasattr(library, name) or parameter.default is inspect.Parameter.empty:
            continue
        default = parameter.default
        default = default.value if isinstance(default, Enum) else default
        if name == "frames":
            default = opt.parse_frames(default)
        assert default == getattr(library, name), name
        compared += 1
    assert compared >= 20
    hints = inspect.signature(reconstruct_cmd).parameters
    for name, choices in {"mode": opt.MODES, "preset": opt.PRESET_NAMES, "weights": opt.WEIGHT_SOURCES,
                          "points_from": opt.POINTS_FROM, "depth_format": opt.MAP_FORMATS}.items():
        enum = hints[name].annotation.__origin__ if hasattr(hints[name].annotation, "__origin__") else None
        enum = enum or type(hints[name].default)
        assert tuple(member.value for member in enum) == choices, name


def test_size_and_mode_have_one_rule_and_one_wording_wherever_they_are_checked():
    """Reading, preprocessing, training samples and the training config share options.py's checks."""
    from models.config import PRESETS, Page4DConfig
    from page4d_cli.pipeline.preprocess import make_transform, network_size_for
    from page4d_cli.train.config import TrainConfig, TrainConfigError
    from page4d_cli.train.dataset import DatasetError, SampleSpec

    assert (opt.PATCH, opt.NETWORK_WIDTH) == (Page4DConfig.patch_size, Page4DConfig.img_size)
    assert all(config.patch_size == opt.PATCH for config in PRESETS.values())
    assert SampleSpec().size == TrainConfig().size == opt.NETWORK_WIDTH and SampleSpec().mode == opt.DEFAULT_MODE
    for bad_size in (50, 14):
        words = set()
        for make, error in ((lambda: ReconstructOptions(size=bad_size), InputError),
                            (lambda: network_size_for((640, 480), bad_size), InputError),
                            (lambda: SampleSpec(size=bad_size), DatasetError),
                            (lambda: TrainConfig(size=bad_size), TrainConfigError)):
            with pytest.raises(error) as caught:
                make()
            words.add(str(caught.value))
        assert len(words) == 1 and words.pop().startswith(f"--size {bad_size}: the network width must be"), words
    words = set()
    for make, error in ((lambda: ReconstructOptions(mode="zoom"), InputError),
                        (lambda: make_transform((64, 48), (56, 42), "zoom"), InputError),
                        (lambda: SampleSpec(mode="zoom"), DatasetError)):
        with pytest.raises(error) as caught:
            make()
        words.add(str(caught.value))
    assert words == {"--mode zoom: use one of crop, pad"}


def test_every_library_option_has_its_command_line_flag():
    """What makes run.json's equivalent command possible: field ``x`` is ``--x`` (or ``--no-x`` when on by default)."""
    import dataclasses

    parameters = inspect.signature(reconstruct_cmd).parameters
    for field in dataclasses.fields(ReconstructOptions):
        if field.name == "command_line":
            continue
        assert field.name in parameters or (field.default is True and f"no_{field.name}" in parameters), field.name


@pytest.mark.parametrize("field, value, words", [
    ("voxel", -1.0, "--voxel -1"), ("conf_percentile", 100.0, "--conf-percentile 100"),
    ("mode", "stretch", "--mode stretch"), ("size", 100, "--size 100"), ("overlap", 0, "--overlap 0"),
    ("preset", "huge", "--preset huge"), ("depth_format", "tiff", "--depth-format tiff"),
    ("frames", 0, "--frames 0"), ("stride", 0, "--stride 0"), ("points_from", "sky", "--points-from sky"),
])
def test_every_option_is_checked_when_the_options_are_made(field, value, words):
    with pytest.raises(InputError, match=words.replace("+", r"\+")):
        ReconstructOptions(**{field: value})


def test_a_bad_voxel_is_rejected_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr("page4d_cli.pipeline.reconstruct.read_clip",
                        lambda *a, **k: pytest.fail("the clip was read although --voxel is invalid"))
    result = reconstruct_cli(CAMS, *TINY, "--voxel", -0.5, "--out", tmp_path / "o")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--voxel -0.5: must be > 0" in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_frames_all_and_a_typo(tmp_path):
    result = reconstruct_cli(CAMS, *TINY[:-2], "--frames", "lots", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "--frames lots: give a number of instants" in result.stderr
    assert opt.parse_frames("all") is None and opt.parse_frames("7") == 7 and opt.format_frames(None) == "all"


def test_the_recorded_command_has_absolute_paths_however_they_were_given(tmp_path, monkeypatch):
    from page4d_cli.pipeline.records import equivalent_command, recorded_options

    monkeypatch.chdir(tmp_path)
    for spelled in (str, Path):
        options = ReconstructOptions(out=spelled("rel/o"), pi3=spelled("w/m.safetensors"), masks=spelled("../m"))
        args = shlex.split(equivalent_command("cams", options))
        assert args[2] == str(tmp_path / "cams")
        for flag, path in (("--out", tmp_path / "rel/o"), ("--pi3", tmp_path / "w/m.safetensors"),
                           ("--masks", tmp_path.parent / "m")):
            assert args[args.index(flag) + 1] == str(path), flag
        assert recorded_options(options)["pi3"] == str(tmp_path / "w/m.safetensors")


@pytest.mark.slow
def test_run_json_command_reproduces_the_run(tmp_path, monkeypatch):
    """Paths given as relative ``str``s are recorded absolute: the command re-runs from another folder."""
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    first = tmp_path / "here" / "first"
    options = ReconstructOptions(frames=None, stride=9, size=70, preset="tiny", weights="random", out="first",
                                 preview=False, edge_filter=False, seed=3)
    reconstruct(os.path.relpath(CAMS), options)  # the library run: no command line typed
    record = json.loads((first / "run.json").read_text())
    args = shlex.split(record["command_line"])
    assert args[:2] == ["page4d", "reconstruct"] and "--frames" in args and args[args.index("--frames") + 1] == "all"
    assert args[2] == str(CAMS.absolute()) and args[args.index("--out") + 1] == str(first)
    assert record["options"]["out"] == str(first)
    monkeypatch.chdir(tmp_path / "elsewhere")
    second = tmp_path / "second"
    args[args.index("--out") + 1] = str(second)
    result = CliRunner().invoke(app, args[1:])
    assert result.exit_code == 0, result.output
    assert json.loads((second / "cameras.json").read_text())["num_instants"] == 3  # frames 0, 9, 18
    produced = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file() and p.name != "run.json")
    assert produced == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file() and p.name != "run.json")
    assert len(produced) > 20
    for relative in produced:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    rerun = json.loads((second / "run.json").read_text())
    assert rerun["options"]["frames"] is None and rerun["options"]["stride"] == 9 and rerun["options"]["seed"] == 3
    assert Path(rerun["input"]["folder"]) == CAMS.absolute()
