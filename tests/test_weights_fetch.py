"""``page4d weights fetch`` against a local fake hub (tests/hub_server.py): no real network.

Downloads, checks, licences, disk space, errors; interrupted and resumed fetches are in
tests/test_weights_fetch_resume.py. HF_ENDPOINT points at the fake hub; HF_HUB_CACHE and PAGE4D_HOME
at tmp folders (tests/fetch_fixtures.py). The served
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
from tests.hub_server import COMMIT, MASK, NOMASK, PI3, FakeHub, Recorder, fake_bytes, write_page4d_pt, write_pi3_safetensors

DiskUsage = namedtuple("DiskUsage", "total used free")

# The fixtures ``env`` and ``hub``.
pytest_plugins = ("tests.fetch_fixtures",)


def _fetch_cli(*args: str):
    return CliRunner().invoke(app, ["weights", "fetch", *args])


def test_full_download_through_cdn_redirect_is_verified_and_registered(env, monkeypatch):
    data = fake_bytes()
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
    hub.add(*NOMASK, fake_bytes(1000), repo_type="dataset")
    result = _fetch_cli("page4d", "--variant", "nomask")
    assert result.exit_code == 0, result.output
    assert "No licence is stated" in result.output
    assert hub.requests("HEAD")[0].path == "/datasets/zhouk777/PAGE4D/resolve/main/checkpoint_nomask.pt"
    assert hub.requests("HEAD")[0].headers["authorization"] == "Bearer hf_env_token"  # HF_TOKEN
    [entry] = Registry().entries("page4d")
    assert entry.path.endswith("checkpoint_nomask.pt") and entry.layout == "page4d"


def test_size_reported_by_hub_differs_from_bytes(hub, env):
    hub.add(*PI3, fake_bytes(), reported_size=300_100)
    result = _fetch_cli("pi3", "-y")
    assert result.exit_code == 1
    assert "received 300000 bytes but the hub reports 300100" in result.output
    assert len(result.output.strip().splitlines()[-1]) > 40  # the error is one full line
    assert Registry().entries() == []
    assert not list((env / "hf").rglob("model.safetensors"))


def test_sha256_mismatch_removes_the_file_and_registers_nothing(hub, env):
    hub.add(*PI3, fake_bytes(), etag=hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(VerificationError, match=r"sha256 of the download is .* but the hub reports"):
        fetch_weights(select("pi3"), accept_licence=True, reporter=Recorder())
    assert Registry().entries() == []
    blobs = list((env / "hf" / "hub").rglob("blobs/*"))
    assert blobs == []  # the bad blob is gone, so a re-run downloads it again


def test_truncated_file_already_in_the_cache_is_downloaded_again(hub, env):
    data = fake_bytes()
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
    data = fake_bytes()
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
    hub.add(*PI3, fake_bytes())
    hub.add(*MASK, fake_bytes(200_000, seed=1), repo_type="dataset")
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
    hub.add(*PI3, fake_bytes(1000))
    reporter = Recorder()
    printed_at_first_request = []
    hub.on_request = lambda seen: printed_at_first_request.append(" ".join(reporter.lines))
    fetch_weights(select("pi3"), confirm=lambda question: "CC BY-NC 4.0" in question, reporter=reporter)
    assert "NON-COMMERCIAL" in printed_at_first_request[0]
    assert "creativecommons.org/licenses/by-nc/4.0" in printed_at_first_request[0]


def test_licence_refused_downloads_nothing(hub):
    hub.add(*PI3, fake_bytes(1000))
    with pytest.raises(LicenceNotAccepted, match="--accept-licence"):
        fetch_weights(select("pi3"), confirm=lambda q: False, reporter=Recorder())
    result = _fetch_cli("pi3")  # CliRunner's stdin is not a terminal: no prompt, clear error
    assert result.exit_code == 1
    assert "CC BY-NC 4.0" in result.output and "re-run with --accept-licence (-y)" in result.output
    assert hub.seen == []
    assert Registry().entries() == []


def test_second_fetch_reuses_the_cache(hub, monkeypatch):
    hub.add(*PI3, fake_bytes())
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
    hub.add(*MASK, fake_bytes(1000), repo_type="dataset")
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


def test_corrupt_cached_copy_of_the_right_size_is_replaced_in_the_same_run(hub, env):
    data = fake_bytes()
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


def test_library_fetch_says_everything_through_the_reporter(hub, env, capfd):
    """No print, echo or progress bar of its own (the library talks through the reporter): a fetch that resumes a broken transfer
    and replaces a bad cached copy writes nothing to stdout/stderr; the reporter hears all of it."""
    data = fake_bytes()
    hub.add(*PI3, data, drop_after=100_000)
    hub.add(*MASK, fake_bytes(1000, seed=1), repo_type="dataset")
    mask_blob = env / "hf" / "hub" / "datasets--zhouk777--PAGE4D" / "blobs" / hashlib.sha256(fake_bytes(1000, seed=1)).hexdigest()
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
