"""Set-up shared by every test.

- ``page4d_home`` (autouse): each test gets its own empty ``PAGE4D_HOME``, so no test reads or writes
  the weights registry of the machine it runs on. Tests that need the folder take the fixture.
- Material from ``../shared`` (only present in the project's workspace and CI) is reached through
  ``tests.helpers.shared_path`` / ``needs_shared``, which skip cleanly when it is absent. The checkpoint
  key lists are copied into ``tests/data/keys`` (``tests.helpers.reference_keys``), so the key-grammar
  tests never skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def page4d_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``PAGE4D_HOME`` for this test (a test may still point it elsewhere with monkeypatch)."""
    home = tmp_path_factory.mktemp("page4d_home")
    monkeypatch.setenv("PAGE4D_HOME", str(home))
    return home
