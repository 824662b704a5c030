"""Fixtures of the ``page4d weights fetch`` tests (tests/test_weights_fetch*.py), loaded with
``pytest_plugins = ("tests.fetch_fixtures",)``: ``env`` isolates the homes and hub settings, ``hub``
starts the fake hub of tests/hub_server.py and points HF_ENDPOINT at it."""

from __future__ import annotations

import huggingface_hub.constants
import pytest

import page4d_cli.weights.fetch as fetch_mod
from tests.hub_server import FakeHub


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated homes and hub settings; the HF download chunk is made small so a broken transfer
    has written some bytes to resume from (the real chunk is 10 MB)."""
    monkeypatch.setenv("PAGE4D_HOME", str(tmp_path / "page4d"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_TOKEN", "hf_env_token")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never the real hub, even by mistake
    for name in ("HF_OIDC_RESOURCE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    # The fake hub serves stand-in bytes, not checkpoints: their layout is taken from the file name.
    monkeypatch.setattr(fetch_mod, "detect_file_layout", layout_from_name)
    return tmp_path


def layout_from_name(path) -> str:
    path = str(path)
    return "pi3" if path.endswith(".safetensors") else ("vggt" if "VGGT" in path else "page4d")


@pytest.fixture
def hub(env, monkeypatch):
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
