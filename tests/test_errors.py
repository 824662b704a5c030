"""One base class for the errors meant for the user, printed as one line by the CLI's root group."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from typer.testing import CliRunner

import models
import page4d_cli
from models.errors import Page4DError, one_line
from page4d_cli.main import app

# Exceptions that must NOT be user errors, each with the reason. Everything else defined in `models` or
# `page4d_cli` derives from Page4DError (the CLI catches that class alone).
NOT_USER_ERRORS = {
    "page4d_cli.signals.Terminated": "SIGTERM must unwind like Ctrl-C: stays a KeyboardInterrupt",
    "page4d_cli.weights.fetch_errors.FetchInterrupted": "Ctrl-C during a fetch: stays a KeyboardInterrupt",
    "page4d_cli.train.loop.TrainingInterrupted": "not a failure: a checkpoint was written; carries exit 130/143",
}
# Modules that may fail to import without their optional extra (none today: rerun-sdk is a dependency).
OPTIONAL_MODULES: dict[str, str] = {}


def _defined_exceptions() -> tuple[dict[str, type[BaseException]], list[str]]:
    """Every exception class (warnings aside) defined in a module of `models` or `page4d_cli`, by qualified
    name, and the modules that failed to import."""
    found, failed = {}, []
    for package in (models, page4d_cli):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            try:
                module = importlib.import_module(info.name)
            except ImportError:
                failed.append(info.name)
                continue
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and issubclass(obj, BaseException) and not issubclass(obj, Warning)
                        and obj.__module__ == info.name):
                    found[f"{info.name}.{name}"] = obj
    return found, failed


DEFINED, UNIMPORTABLE = _defined_exceptions()
USER_ERRORS = sorted(name for name in DEFINED if name not in NOT_USER_ERRORS)


def test_the_walk_finds_the_errors_and_the_allow_list_is_current():
    assert len(USER_ERRORS) >= 29 and "models.errors.Page4DError" in USER_ERRORS
    assert set(NOT_USER_ERRORS) <= set(DEFINED), "an allow-listed class no longer exists: drop it from the list"
    unexpected = sorted(set(UNIMPORTABLE) - set(OPTIONAL_MODULES))
    assert not unexpected, f"modules not walked (import failed; list them in OPTIONAL_MODULES with the extra): {unexpected}"


@pytest.mark.parametrize("name", USER_ERRORS)
def test_user_facing_errors_derive_from_page4derror_and_keep_one_line(name):
    cls = DEFINED[name]
    assert issubclass(cls, Page4DError), f"{name} is not a Page4DError (or add it to NOT_USER_ERRORS with a reason)"
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
