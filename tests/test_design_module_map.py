"""docs/design.md's module map names every module of ``models`` and ``page4d_cli``, and only files that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def listed_paths() -> list[str]:
    """Paths of the "## Module map" table; a bare ``name.py`` is relative to the folder of the path before it."""
    text = (ROOT / "docs" / "design.md").read_text()
    table = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    paths = []
    for row in (line for line in table.splitlines() if line.startswith("| ") and "`" in line):
        folder = None
        for token in re.findall(r"`([^`]+)`", row.split("|")[2]):
            if "/" in token:
                paths.append(token)
                folder = token if token.endswith("/") else token.rsplit("/", 1)[0] + "/"
            elif token.endswith(".py"):
                assert folder is not None, f"{token}: a bare file name needs a path before it in its row"
                paths.append(folder + token)
    return paths


def test_every_listed_path_exists_and_every_module_is_listed():
    paths = listed_paths()
    missing = [p for p in paths if not list(ROOT.glob(p.rstrip("/")))]
    assert not missing, f"docs/design.md lists paths that do not exist: {missing}"
    covered = set()
    for p in paths:
        for match in ROOT.glob(p.rstrip("/")):
            covered |= {match} if match.is_file() else set(match.rglob("*.py"))
    modules = [m for package in ("models", "page4d_cli") for m in (ROOT / package).rglob("*.py")
               if m.name != "__init__.py" or m.parent.name == "commands"]
    unlisted = sorted(str(m.relative_to(ROOT)) for m in modules if m not in covered)
    assert not unlisted, f"modules missing from docs/design.md's module map: {unlisted}"
