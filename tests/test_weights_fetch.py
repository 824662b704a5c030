"""``page4d weights fetch`` against a local fake hub (tests/hub_server.py): no real network.

HF_ENDPOINT points at the fake hub; HF_HUB_CACHE and PAGE4D_HOME at tmp folders. The served
files are a few hundred KB of random bytes, so these tests switch the layout reader off (that
step has its own tests at the end, with files in the real key layouts).
"""

from __future__ import annotations

import hashlib
import json
from collections import namedtuple
from pathlib import Path

import huggingface_hub.constants
import pytest
from typer.testing import CliRunner

import page4d_cli.weights.fetch as fetch_mod
import page4d_cli.weights.hub_cache as hub_cache_mod
from page4d_cli.main import app
from page4d_cli.weights import Registry, select
from page4d_cli.weights.fetch import fetch_weights
from page4d_cli.weights.fetch_errors import FetchError, LicenceNotAccepted, NotEnoughDiskSpace, VerificationError
from page4d_cli.weights.hub import hub_cache_dir, hub_settings
from page4d_cli.weights.registry import detect_file_layout as registry_detect_file_layout
from tests.hub_server import COMMIT, FakeHub, write_page4d_pt, write_pi3_safetensors

PI3 = ("yyfz233/Pi3", "model.safetensors")
MASK = ("zhouk777/PAGE4D", "checkpoint_mask.pt")
NOMASK = ("zhouk777/PAGE4D", "checkpoint_nomask.pt")
DiskUsage = namedtuple("DiskUsage", "total used free")


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
    monkeypatch.setattr(fetch_mod, "detect_file_layout", _layout_from_name)
    return tmp_path


def _layout_from_name(path) -> str:
    path = str(path)
    return "pi3" if path.endswith(".safetensors") else ("vggt" if "VGGT" in path else "page4d")


@pytest.fixture
def hub(env, monkeypatch):
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


class Recorder:
    """A reporter that keeps what it is told: ``lines`` (info and warning) and ``stages``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stages: list[tuple] = []

    def stage(self, name, done, total, detail=""):
        self.stages.append((name, done, total))

    def info(self, message):
        self.lines.append(message)

    def warning(self, message):
        self.lines.append("warning: " + message)


def _data(n: int = 300_000, seed: int = 0) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32) + b"x" * (n % 32)


def _fetch_cli(*args: str):
    return CliRunner().invoke(app, ["weights", "fetch", *args])


def test_full_download_through_cdn_redirect_is_verified_and_registered(env, monkeypatch):
    data = _data()
    with FakeHub(redirect=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # set after huggingface_hub was imported
        hub.add(*PI3, data)
        result = _fetch_cli("pi3", "-y", "--token", "hf_cli_token")
    assert result.exit_code == 0, result.output
    # huggingface_hub froze its default endpoint at import; the request still went to the fake hub.
    assert huggingface_hub.constants.ENDPOINT != hub.url
    heads = hub.requests("HEAD")
    assert heads[0].path == "/yyfz233/Pi3/resolve/main/model.safetensors"
    assert all(h.headers["authorization"] == "Bearer hf_cli_token" for h in heads)
    gets = hub.requests("GET")
    assert [g.path for g in gets] == ["/cdn/yyfz233/Pi3/model.safetensors"]
    assert "authorization" not in gets[0].headers  # the token never goes to the CDN
    [entry] = Registry().entries("pi3")
    path = Path(entry.path)
    assert path.read_bytes() == data
    assert str(path).startswith(str(env / "hf" / "hub" / "models--yyfz233--Pi3" / "snapshots" / COMMIT))
    assert (entry.size, entry.verified, entry.verified_how) == (len(data), True, "size+sha256")
    assert entry.source["repo_id"] == "yyfz233/Pi3" and entry.source["commit"] == COMMIT
    assert entry.layout == "pi3" and entry.layout_checked is True
    assert (env / "hf" / "hub" / "models--yyfz233--Pi3" / "refs" / "main").read_text() == COMMIT


def test_dataset_repo_variant_needs_no_acceptance_but_prints_notice(hub):
    hub.add(*NOMASK, _data(1000), repo_type="dataset")
    result = _fetch_cli("page4d", "--variant", "nomask")
    assert result.exit_code == 0, result.output
    assert "No licence is stated" in result.output
    assert hub.requests("HEAD")[0].path == "/datasets/zhouk777/PAGE4D/resolve/main/checkpoint_nomask.pt"
    assert hub.requests("HEAD")[0].headers["authorization"] == "Bearer hf_env_token"  # HF_TOKEN
    [entry] = Registry().entries("page4d")
    assert entry.path.endswith("checkpoint_nomask.pt") and entry.layout == "page4d"


def test_broken_transfer_resumes_with_a_range_request(hub):
    data = _data(300_000)
    hub.add(*PI3, data, drop_after=100_000)
    entries = fetch_weights(select("pi3"), accept_licence=True, reporter=Recorder())
    gets = hub.requests("GET")
    assert len(gets) == 2 and "range" not in gets[0].headers
    resumed_at = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 100_000  # resumed from the bytes already on disk, not from zero
    assert Path(entries[0].path).read_bytes() == data
    assert entries[0].verified


def test_size_reported_by_hub_differs_from_bytes(hub, env):
    hub.add(*PI3, _data(), reported_size=300_100)
    result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 1
    assert "received 300000 bytes but the hub reports 300100" in result.output
    assert len(result.output.strip().splitlines()[-1]) > 40  # the error is one full line
    assert Registry().entries() == []
    assert not list((env / "hf").rglob("model.safetensors"))


def test_sha256_mismatch_removes_the_file_and_registers_nothing(hub, env):
    hub.add(*PI3, _data(), etag=hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(VerificationError, match=r"sha256 of the download is .* but the hub reports"):
        fetch_weights(select("pi3"), accept_licence=True, reporter=Recorder())
    assert Registry().entries() == []
    blobs = list((env / "hf" / "hub").rglob("blobs/*"))
    assert blobs == []  # the bad blob is gone, so a re-run downloads it again


def test_truncated_file_already_in_the_cache_is_downloaded_again(hub, env):
    data = _data()
    hub.add(*PI3, data)
    repo = env / "hf" / "hub" / "models--yyfz233--Pi3"
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data[:1000])  # e.g. left behind by another tool
    pointer = repo / "snapshots" / COMMIT / "model.safetensors"
    pointer.parent.mkdir(parents=True)
    pointer.symlink_to(blob)
    result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 0, result.output
    assert "removing a bad cached copy" in result.output
    assert len(hub.requests("GET")) == 1
    assert Path(Registry().current("pi3").path).read_bytes() == data


def test_cached_file_that_goes_bad_is_removed_not_registered(hub, env, monkeypatch):
    data = _data()
    hub.add(*PI3, data)
    # Simulate a blob corrupted after the pre-download check: the download step hands it back short.
    real_download = fetch_mod.download

    def short_download(*args, **kwargs):
        path = real_download(*args, **kwargs)
        path.resolve().write_bytes(data[:1000])
        return path

    monkeypatch.setattr(fetch_mod, "download", short_download)
    result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 1 and "has 1000 bytes but the hub reports 300000" in result.output
    assert not list((env / "hf" / "hub").rglob("blobs/*")) and Registry().entries() == []


def test_not_enough_disk_space_stops_before_any_download(hub, env, monkeypatch):
    hub.add(*PI3, _data())
    hub.add(*MASK, _data(200_000, seed=1), repo_type="dataset")
    seen = []

    def tiny_disk(path):
        seen.append(Path(path))
        return DiskUsage(total=10**9, used=10**9 - 400_000, free=400_000)

    monkeypatch.setattr(hub_cache_mod.shutil, "disk_usage", tiny_disk)
    result = _fetch_cli("all", "-y")
    assert result.exit_code == 1
    msg = result.output
    assert "not enough free disk space in" in msg and str(env / "hf" / "hub") in msg.replace("\n", "")
    assert "needs 500.0 kB, only 400.0 kB free" in msg and "model.safetensors + checkpoint_mask.pt" in msg
    assert hub.requests("GET") == []
    assert Registry().entries() == []
    assert seen and all(p.exists() for p in seen)  # measured on an existing parent of the cache
    with pytest.raises(NotEnoughDiskSpace):
        fetch_weights(select("all"), accept_licence=True, reporter=Recorder())


def test_licence_is_printed_before_the_first_request(hub):
    hub.add(*PI3, _data(1000))
    reporter = Recorder()
    printed_at_first_request = []
    hub.on_request = lambda seen: printed_at_first_request.append(" ".join(reporter.lines))
    fetch_weights(select("pi3"), confirm=lambda question: "CC BY-NC 4.0" in question, reporter=reporter)
    assert "NON-COMMERCIAL" in printed_at_first_request[0]
    assert "creativecommons.org/licenses/by-nc/4.0" in printed_at_first_request[0]


def test_licence_refused_downloads_nothing(hub):
    hub.add(*PI3, _data(1000))
    with pytest.raises(LicenceNotAccepted, match="--accept-licence"):
        fetch_weights(select("pi3"), confirm=lambda q: False, reporter=Recorder())
    result = _fetch_cli("pi3")  # CliRunner's stdin is not a terminal: no prompt, clear error
    assert result.exit_code == 1
    assert "CC BY-NC 4.0" in result.output and "re-run with --accept-licence (-y)" in result.output
    assert hub.seen == []
    assert Registry().entries() == []


def test_second_fetch_reuses_the_cache(hub, monkeypatch):
    hub.add(*PI3, _data())
    assert _fetch_cli("pi3", "-y").exit_code == 0
    monkeypatch.setattr(hub_cache_mod.shutil, "disk_usage", lambda p: DiskUsage(1, 1, 0))
    result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 0, result.output  # nothing left to download: no space needed
    assert len(hub.requests("GET")) == 1
    assert len(Registry().entries("pi3")) == 1  # same path: replaced, not duplicated


def test_missing_file_on_hub_is_a_one_line_error(hub):
    result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 1
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert "yyfz233/Pi3/model.safetensors" in line and "not found" in line


def test_unreachable_endpoint_is_a_clear_error(env):
    # env points HF_ENDPOINT at the discard port of this machine: connection refused.
    with pytest.raises(FetchError, match="check the network connection, HF_ENDPOINT"):
        fetch_weights(select("pi3"), accept_licence=True, reporter=Recorder())


def test_wrong_layout_after_download_is_not_registered(hub, monkeypatch):
    hub.add(*MASK, _data(1000), repo_type="dataset")
    monkeypatch.setattr(fetch_mod, "detect_file_layout", lambda path: "pi3")
    with pytest.raises(VerificationError, match="has layout 'pi3', but role 'page4d' needs"):
        fetch_weights(select("page4d"), reporter=Recorder())
    assert Registry().entries() == []


def test_fetched_files_get_their_layout_read(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_mod, "detect_file_layout", registry_detect_file_layout)
    hub.add(*PI3, write_pi3_safetensors(tmp_path / "p.safetensors").read_bytes())
    hub.add(*MASK, write_page4d_pt(tmp_path / "m.pt").read_bytes(), repo_type="dataset")
    result = _fetch_cli("all", "-y")
    assert result.exit_code == 0, result.output
    listed = json.loads(CliRunner().invoke(app, ["weights", "list", "--json"]).output)["entries"]
    assert {(e["role"], e["layout"], e["layout_checked"]) for e in listed} == {
        ("pi3", "pi3", True), ("page4d", "page4d", True)}


def test_hub_settings_are_read_from_the_environment_at_call_time(tmp_path, monkeypatch):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.invalid/")
    settings = hub_settings("tok")
    assert settings.cache_dir == tmp_path / "hfhome" / "hub"
    assert (settings.endpoint, settings.token) == ("http://mirror.invalid", "tok")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"


def test_progress_shim_drives_huggingface_hub_xet_reporter():
    """The Xet path cannot run offline; check at least that its reporter accepts the shim."""
    from types import SimpleNamespace

    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    from page4d_cli.weights.transfer import progress_bar_class

    recorder = Recorder()
    bar_cls = progress_bar_class(recorder, "download model.safetensors")
    with XetDownloadProgressReporter(reconstruction_desc="r", total=100, log_level=30,
                                     tqdm_class=bar_cls) as reporter:
        for done in (40, 100):
            reporter.update_progress(SimpleNamespace(
                total_bytes_completed=done, total_transfer_bytes_completed=done // 2,
                total_bytes=100, total_bytes_completion_rate=None,
                total_transfer_bytes_completion_rate=None))
    assert {name for name, _, _ in recorder.stages} == {"download model.safetensors"}  # one bar
    assert recorder.stages[-1][1:] == (100, 100)


def _blobs(env: Path) -> Path:
    return env / "hf" / "hub" / "models--yyfz233--Pi3" / "blobs"


def test_partial_file_of_a_killed_fetch_is_resumed_and_tidied(hub, env):
    data = _data(300_000)
    hub.add(*PI3, data)
    etag = hashlib.sha256(data).hexdigest()
    blobs = _blobs(env)
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

    data = _data(300_000)
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
    [partial] = _blobs(env).glob("*.incomplete")
    kept = partial.stat().st_size
    assert kept > 0  # what had reached the disk when Ctrl-C came
    [entry] = fetch_weights(select("pi3"), accept_licence=True)
    assert hub.requests("GET")[-1].headers["range"] == f"bytes={kept}-"
    assert Path(entry.path).read_bytes() == data


def test_corrupt_cached_copy_of_the_right_size_is_replaced_in_the_same_run(hub, env):
    data = _data()
    hub.add(*PI3, data)
    repo = env / "hf" / "hub" / "models--yyfz233--Pi3"
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(bytes(len(data)))  # right size, wrong content (e.g. a disk error)
    pointer = repo / "snapshots" / COMMIT / "model.safetensors"
    pointer.parent.mkdir(parents=True)
    pointer.symlink_to(blob)
    result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 0, result.output
    assert "does not match the hub's hash; downloading it again" in result.output
    assert len(hub.requests("GET")) == 1
    entry = Registry().current("pi3")
    assert entry.verified and Path(entry.path).read_bytes() == data


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

    data = _data(300_000)
    hub.add(*PI3, data, stall_after=100_000)
    partial = _blobs(env) / f"{hashlib.sha256(data).hexdigest()}.incomplete"
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
    assert list(_blobs(env).glob("*.incomplete")) == []


def test_library_fetch_says_everything_through_the_reporter(hub, env, capfd):
    """No print, echo or progress bar of its own (issue 11 §2): a fetch that resumes a broken transfer
    and replaces a bad cached copy writes nothing to stdout/stderr; the reporter hears all of it."""
    data = _data()
    hub.add(*PI3, data, drop_after=100_000)
    hub.add(*MASK, _data(1000, seed=1), repo_type="dataset")
    mask_blob = env / "hf" / "hub" / "datasets--zhouk777--PAGE4D" / "blobs" / hashlib.sha256(_data(1000, seed=1)).hexdigest()
    mask_blob.parent.mkdir(parents=True)
    mask_blob.write_bytes(b"short")  # a wrong-size cached copy: warned about and replaced
    import logging

    hub_logger = logging.getLogger("huggingface_hub")
    handlers_before = hub_logger.handlers[:]
    reporter = Recorder()
    entries = fetch_weights(select("all"), accept_licence=True, reporter=reporter)
    assert len(entries) == 2
    assert capfd.readouterr() == ("", "")
    assert hub_logger.handlers == handlers_before  # huggingface_hub's own handler is back
    assert any(line.startswith("warning: removing a bad cached copy of checkpoint_mask.pt") for line in reporter.lines)
    assert any(line.startswith("registered model.safetensors") for line in reporter.lines)
    # huggingface_hub's own log line about the broken transfer, as one reporter warning
    assert any(line.startswith("warning: Error while downloading") and "Trying to resume download" in line
               for line in reporter.lines)
    assert {name for name, _, _ in reporter.stages} >= {"download model.safetensors", "verify model.safetensors"}
