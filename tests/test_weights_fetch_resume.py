"""Interrupted ``page4d weights fetch`` runs and what the next run makes of them (fake hub, no network).

A transfer that breaks, a killed process, Ctrl-C and SIGTERM all leave ``blobs/<etag>.incomplete``;
the next fetch resumes it with a Range request, and nothing is registered until a file is complete.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from page4d_cli.main import app
from page4d_cli.weights import Registry, select
from page4d_cli.weights.fetch import fetch_weights
from tests.hub_server import PI3, Recorder, fake_bytes, pi3_blobs

# The fixtures ``env`` and ``hub``.
pytest_plugins = ("tests.fetch_fixtures",)


def _fetch_cli(*args: str):
    return CliRunner().invoke(app, ["weights", "fetch", *args])


def test_broken_transfer_resumes_with_a_range_request(hub):
    data = fake_bytes(300_000)
    hub.add(*PI3, data, drop_after=100_000)
    entries = fetch_weights(select("pi3"), accept_licence=True, reporter=Recorder())
    gets = hub.requests("GET")
    assert len(gets) == 2 and "range" not in gets[0].headers
    resumed_at = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 100_000  # resumed from the bytes already on disk, not from zero
    assert Path(entries[0].path).read_bytes() == data
    assert entries[0].verified


def test_partial_file_of_a_killed_fetch_is_resumed_and_tidied(hub, env):
    data = fake_bytes(300_000)
    hub.add(*PI3, data)
    etag = hashlib.sha256(data).hexdigest()
    blobs = pi3_blobs(env)
    blobs.mkdir(parents=True)
    (blobs / f"{etag}.1a2b3c4d.incomplete").write_bytes(data[:120_000])  # huggingface_hub's name
    (blobs / f"{etag}.5e6f7a8b.incomplete").write_bytes(data[:50_000])  # an older, shorter one
    reporter = Recorder()
    [entry] = fetch_weights(select("pi3"), accept_licence=True, reporter=reporter)
    [get] = hub.requests("GET")
    assert get.headers["range"] == "bytes=120000-"  # continued from the longest partial file
    assert Path(entry.path).read_bytes() == data and entry.verified
    assert list(blobs.glob("*.incomplete")) == []
    assert any("resuming model.safetensors" in line for line in reporter.lines)


def test_ctrl_c_registers_nothing_says_so_in_one_line_and_the_next_fetch_resumes(hub, env, monkeypatch):
    from page4d_cli import reporters

    data = fake_bytes(300_000)
    hub.add(*PI3, data)

    def interrupting_stage(self, name, done, total, detail=""):
        if name.startswith("download") and done >= 64 * 1024:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(reporters.PlainReporter, "stage", interrupting_stage)
        result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 130
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert "interrupted (Ctrl-C)" in line and "model.safetensors was not registered" in line
    assert "resume" in line
    assert Registry().entries() == []
    [partial] = pi3_blobs(env).glob("*.incomplete")
    kept = partial.stat().st_size
    assert kept > 0  # what had reached the disk when Ctrl-C came
    [entry] = fetch_weights(select("pi3"), accept_licence=True)
    assert hub.requests("GET")[-1].headers["range"] == f"bytes={kept}-"
    assert Path(entry.path).read_bytes() == data


# The ``page4d`` executable in a child process, with huggingface_hub's read chunk made small so the
# bytes received before the fake hub stalls reach the disk (the real chunk is 10 MB).
_CHILD_FETCH = """
import sys
import huggingface_hub.constants as hub_constants
hub_constants.DOWNLOAD_CHUNK_SIZE = 16 * 1024
hub_constants.HF_HUB_DISABLE_XET = True
sys.argv = ["page4d", "weights", "fetch", "pi3", "-y"]
from page4d_cli.entry import main
main()
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_fetch_process_stopped_mid_transfer_leaves_a_partial_file_the_next_fetch_resumes(hub, env, how):
    """A real ``page4d weights fetch`` process is killed (SIGKILL: no clean-up at all), gets Ctrl-C
    (SIGINT: one error line, exit 130) or SIGTERM (one line, exit 143) while the hub is sending; the
    next fetch continues from the bytes of ``blobs/<etag>.incomplete`` with a Range request and
    registers the complete file."""
    import signal
    import subprocess
    import sys
    import time

    data = fake_bytes(300_000)
    hub.add(*PI3, data, stall_after=100_000)
    partial = pi3_blobs(env) / f"{hashlib.sha256(data).hexdigest()}.incomplete"
    child = subprocess.Popen([sys.executable, "-c", _CHILD_FETCH], cwd=Path(__file__).resolve().parents[1],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while not (partial.is_file() and partial.stat().st_size > 0):
            assert child.poll() is None, f"the fetch ended before the hub stalled: {child.communicate()}"
            assert time.monotonic() < deadline, "no partial download appeared"
            time.sleep(0.05)
        child.send_signal(getattr(signal, how))
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if how == "SIGKILL":
        assert child.returncode == -signal.SIGKILL
    else:
        name, code = {"SIGINT": ("Ctrl-C", 130), "SIGTERM": ("SIGTERM", 143)}[how]
        assert child.returncode == code, stderr
        [line] = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
        assert f"interrupted ({name})" in line and "model.safetensors was not registered" in line
        assert "nothing else was" in line and "resume" in line
        assert "Traceback" not in stderr
    assert Registry().entries() == []
    kept = partial.stat().st_size
    assert 0 < kept < len(data)
    [entry] = fetch_weights(select("pi3"), accept_licence=True)
    assert hub.requests("GET")[-1].headers["range"] == f"bytes={kept}-"  # resumed, not restarted
    assert Path(entry.path).read_bytes() == data and entry.verified
    assert list(pi3_blobs(env).glob("*.incomplete")) == []
