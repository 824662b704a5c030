"""``page4d --help`` (of every command) and ``page4d weights list`` must not import torch or other
heavy libraries: they run in a fresh interpreter here, so a command module that imports torch at
its top level fails this test by name (see the docstring of ``page4d_cli/main.py``). ``page4d --help``
itself imports no command module: the root group lists them from ``page4d_cli.commands.COMMANDS``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.main import get_command

from page4d_cli.commands import COMMANDS
from page4d_cli.main import ListedCommand, app, load_command

# Libraries that cost from 0.1 s (numpy) to seconds (torch) to import; commands import them when run.
HEAVY = ("torch", "numpy", "cv2", "open3d", "huggingface_hub", "safetensors", "matplotlib", "rerun",
         "imageio", "scipy", "models.vggt", "models.loading.checkpoint_io", "models.loading.loader")

_RUNNER = """
import json, sys
from page4d_cli.main import app
heavy, found = json.loads(sys.argv[1]), {}
for argv in json.loads(sys.argv[2]):
    try:
        app(argv, prog_name="page4d")
    except SystemExit as exc:
        if exc.code not in (0, None):
            found[" ".join(argv)] = f"exit code {exc.code}"
    new = [m for m in heavy if m in sys.modules and m not in found.values()]
    if new:
        found[" ".join(argv)] = new
        break
print("RESULT " + json.dumps(found))
"""


def command_paths(command, prefix: tuple = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the CLI, as argument tuples (``("weights", "fetch")``)."""
    if isinstance(command, ListedCommand):  # the root lists its commands without importing them
        command = load_command(command.spec)
    paths = [prefix]
    for name, sub in (getattr(command, "commands", None) or {}).items():  # Typer groups are not click.Group
        paths += command_paths(sub, prefix + (name,))
    return paths


def test_root_help_imports_no_command_module_and_lists_every_command(tmp_path):
    code = ("import sys\nfrom page4d_cli.main import app\ntry:\n    app(['--help'], prog_name='page4d')\n"
            "except SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in sys.modules if m.startswith('page4d_cli.commands.')))")
    env = dict(os.environ, PAGE4D_HOME=str(tmp_path), COLUMNS="200")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "LOADED []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    for spec in COMMANDS:  # every command is listed with its summary
        assert any(line.split()[1:2] == [spec.name] and spec.summary[:40] in line for line in done.stdout.splitlines()
                   if line.startswith("│")), spec.name


def test_each_command_module_defines_the_listed_command_and_starts_its_help_with_the_summary():
    for spec in COMMANDS:
        command = load_command(spec)
        assert command.name == spec.name
        assert (command.help or "").startswith(spec.summary), spec.name


def test_help_of_every_command_and_weights_list_import_no_heavy_library(tmp_path):
    paths = command_paths(get_command(app))
    assert ("weights", "list") in paths and ("reconstruct",) in paths  # the walk found the commands
    runs = [[*path, "--help"] for path in paths] + [["weights", "list"]]
    env = dict(os.environ, PAGE4D_HOME=str(tmp_path), COLUMNS="120")
    done = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(HEAVY), json.dumps(runs)],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-2000:]
    found = json.loads(lines[-1][len("RESULT "):])
    assert found == {}, f"these invocations imported heavy modules or failed: {found}"
