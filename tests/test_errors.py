"""One base class for the errors meant for the user, printed as one line by the CLI's root group."""

from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

from models.errors import Page4DError, one_line
from page4d_cli.main import app

USER_ERRORS = [
    ("models.config", "ConfigError"), ("models.inputs", "InputShapeError"),
    ("models.loading.checkpoint_reader", "CheckpointError"), ("models.loading.plan", "SizeMismatchError"),
    ("models.loading.plan", "MissingTensorsError"), ("page4d_cli.pipeline.errors", "InputError"),
    ("page4d_cli.pipeline.device", "DeviceError"), ("page4d_cli.pipeline.export", "ExportError"),
    ("page4d_cli.pipeline.align", "AlignmentError"), ("page4d_cli.pipeline.output_dir", "OutputExistsError"),
    ("page4d_cli.weights.registry", "WeightsError"), ("page4d_cli.weights.registry", "RegistryError"),
    ("page4d_cli.weights.registry", "LayoutError"), ("page4d_cli.weights.registry", "WeightsNotFound"),
    ("page4d_cli.weights.fetch_errors", "FetchError"), ("page4d_cli.weights.fetch_errors", "LicenceNotAccepted"),
    ("page4d_cli.weights.fetch_errors", "NotEnoughDiskSpace"), ("page4d_cli.weights.fetch_errors", "VerificationError"),
]


@pytest.mark.parametrize("module, name", USER_ERRORS)
def test_user_facing_errors_derive_from_page4derror_and_keep_one_line(module, name):
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Page4DError)
    assert str(cls("a.pt: bad\n  header;\tfix it")) == "a.pt: bad header; fix it"


def test_standard_bases_are_kept_for_callers_that_catch_them():
    from models.config import ConfigError
    from page4d_cli.pipeline.output_dir import OutputExistsError

    assert issubclass(ConfigError, ValueError) and issubclass(OutputExistsError, FileExistsError)
    assert one_line("x\n y") == "x y"


def test_the_root_group_prints_a_page4derror_as_one_line_with_exit_code_1(tmp_path):
    result = CliRunner().invoke(app, ["weights", "add", str(tmp_path / "missing.pt"), "--as", "pi3"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    [line] = [ln for ln in result.output.splitlines() if ln.strip()]
    assert line.startswith("error:") and "missing.pt" in line
