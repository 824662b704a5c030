"""``page4d reconstruct`` never loses a user's files.

Each test meets the problem the way a user does: run the CLI, then check the exit code, the one line
on stderr and the file system afterwards. Most run in-process (Typer's CliRunner, whose stderr is not
a terminal); the signal tests run ``page4d`` in a child process (``tests/reconstruct_driver.py``) and
send it the signal. Full-disk and read-only tests mount a small tmpfs (root only, skipped otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from page4d_cli.main import app
from tests.helpers import CAMS, REPO, TINY_RUN, reconstruct_cli

TINY = [*TINY_RUN, "--size", 70, "--frames", 2]
DRIVER = REPO / "tests" / "reconstruct_driver.py"


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.glob(".*tmp-*")) if parent.exists() else []


def fake_page4d_output(folder: Path) -> Path:
    """A folder that page4d wrote (its run.json carries the marker)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"format": "page4d-run"}))
    return folder


def no_work(monkeypatch) -> None:
    """Fail the test if the run gets as far as reading the clip."""
    monkeypatch.setattr("page4d_cli.pipeline.reconstruct.read_clip",
                        lambda *a, **k: pytest.fail("the clip was read although the target was unusable"))


def no_network(monkeypatch) -> None:
    monkeypatch.setattr("page4d_cli.pipeline.reconstruct.load_network",
                        lambda *a, **k: pytest.fail("the network was loaded although the target was unusable"))


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *flags: str):
    """A small tmpfs at ``folder`` (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    options = ",".join([f"size={size}", *flags])
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# ----------------------------------------------------------------------------- 1. --overwrite


def clip_copy(tmp_path: Path) -> Path:
    clip = tmp_path / "clip"
    shutil.copytree(CAMS, clip)
    return clip


OVERWRITE_REFUSED = {
    # name: (make --out from (tmp_path, clip), expected words)
    "unrelated folder": (lambda tmp, clip: (tmp / "thesis").mkdir() or tmp / "thesis", "not a page4d output"),
    "the input folder": (lambda tmp, clip: fake_page4d_output(clip), "is the input"),
    "a folder containing the input": (lambda tmp, clip: fake_page4d_output(tmp), "contains the input"),
    "the current folder": (lambda tmp, clip: fake_page4d_output(tmp / "here"), "is the current folder"),
}


@pytest.mark.parametrize("case", sorted(OVERWRITE_REFUSED))
def test_overwrite_replaces_only_page4d_outputs(case, tmp_path, monkeypatch):
    clip = clip_copy(tmp_path)
    make_out, expected = OVERWRITE_REFUSED[case]
    out = make_out(tmp_path, clip)
    (out / "thesis.txt").write_text("four years of work")
    if case == "the current folder":
        monkeypatch.chdir(out)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    no_work(monkeypatch)
    result = reconstruct_cli(clip, *TINY, "--out", out, "--overwrite")
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and expected in lines[0] and "--overwrite" in lines[0], result.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before  # nothing touched
    assert (out / "thesis.txt").read_text() == "four years of work"


def test_interrupted_overwrite_keeps_the_previous_output(tmp_path, monkeypatch):
    from page4d_cli.pipeline import reconstruct as pipeline

    out = fake_page4d_output(tmp_path / "recon")
    (out / "points").mkdir()
    real_export = pipeline.export_reconstruction

    def export_then_interrupt(tmp, *args, **kwargs):
        real_export(tmp, *args, **kwargs)
        assert (out / "points").is_dir()  # the old output is still whole while the new one is written
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "export_reconstruction", export_then_interrupt)
    result = reconstruct_cli(CAMS, *TINY, "--out", out, "--overwrite")
    assert result.exit_code == 130
    assert error_lines(result) == ["error: interrupted (Ctrl-C); no output was written (an existing output "
                                   "folder is unchanged)"]
    assert sorted(p.name for p in out.iterdir()) == ["points", "run.json"]
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["recon"]


# ----------------------------------------------------------------------------- 2. target checked first


def test_unwritable_out_fails_before_reading(tmp_path, monkeypatch):
    no_work(monkeypatch)
    result = reconstruct_cli(CAMS, *TINY, "--out", "/proc/page4d_out")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and "/proc/page4d_out" in lines[0] and "cannot create folders" in lines[0]
    assert not Path("/proc/page4d_out").exists()


def test_read_only_mount_fails_before_reading(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "ro", "1m", "ro") as mount:
        no_work(monkeypatch)
        result = reconstruct_cli(CAMS, *TINY, "--out", mount / "recon")
        assert result.exit_code == 1
        lines = error_lines(result)
        assert len(lines) == 1 and "cannot create folders" in lines[0] and "Read-only" in lines[0], result.stderr
        assert list(mount.iterdir()) == []


def test_too_little_free_space_fails_before_the_network(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "small", "512k") as mount:
        no_network(monkeypatch)
        result = reconstruct_cli(CAMS, *TINY, "--out", mount / "recon")
        assert result.exit_code == 1
        lines = error_lines(result)
        assert len(lines) == 1 and "needs about" in lines[0] and "free" in lines[0], result.stderr
        assert list(mount.iterdir()) == []


# ----------------------------------------------------------------------------- 3. full disk


def test_disk_filling_up_while_writing_is_one_line(tmp_path, monkeypatch):
    from page4d_cli.pipeline import reconstruct as pipeline

    with tmpfs(tmp_path / "disk", "16m") as mount:
        real_export = pipeline.export_reconstruction

        def another_process_fills_the_disk(tmp, *args, **kwargs):
            with open(mount / "someone_else.bin", "wb") as filler:
                with contextlib.suppress(OSError):
                    while True:
                        filler.write(b"\0" * 65536)
            return real_export(tmp, *args, **kwargs)

        monkeypatch.setattr(pipeline, "export_reconstruction", another_process_fills_the_disk)
        result = reconstruct_cli(CAMS, *TINY, "--out", mount / "recon")
        assert result.exit_code == 1
        assert "Traceback" not in result.output and "RPly" not in result.output and "libpng" not in result.output
        lines = error_lines(result)
        assert len(lines) == 1 and "disk full" in lines[0] and "needs about" in lines[0], result.stderr
        assert sorted(p.name for p in mount.iterdir()) == ["someone_else.bin"]  # no output, no temporary folder


def test_a_writer_failing_without_errno_on_a_full_disk_is_disk_full(tmp_path, monkeypatch):
    """ffmpeg (the depth video) or a C library reports a full disk as a broken pipe or a False."""
    from page4d_cli.pipeline import reconstruct as pipeline

    with tmpfs(tmp_path / "disk", "16m") as mount:
        def fill_then_fail(tmp, *args, **kwargs):
            with open(mount / "someone_else.bin", "wb") as filler:
                with contextlib.suppress(OSError):
                    while True:
                        filler.write(b"\0" * 65536)
            raise RuntimeError("ffmpeg: [Errno 32] Broken pipe")

        monkeypatch.setattr(pipeline, "export_reconstruction", fill_then_fail)
        result = reconstruct_cli(CAMS, *TINY, "--out", mount / "recon")
        assert result.exit_code == 1
        lines = error_lines(result)
        assert len(lines) == 1 and "disk full" in lines[0], result.stderr
        assert sorted(p.name for p in mount.iterdir()) == ["someone_else.bin"]


def test_an_image_that_cannot_be_encoded_is_an_error(tmp_path, monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "imencode", lambda ext, image, *a: (False, None))
    out = tmp_path / "recon"
    result = reconstruct_cli(CAMS, *TINY, "--out", out)
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and "could not encode" in lines[0] and "frame_0000.png" in lines[0], result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- 4. signals


def spawn(hook: str, *args, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, str(DRIVER), hook, "reconstruct", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, child: subprocess.Popen, limit_s: float = 300.0) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if child.poll() is not None:
            pytest.fail(f"the run ended before the hook: {child.communicate()[1]}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail("the run never reached the hook")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_signal_while_writing_removes_the_temporary_folder(signum, code, name, tmp_path):
    ready = tmp_path / "ready"
    out = tmp_path / "parent" / "recon"
    child = spawn(f"pause-writing:{ready}", CAMS, *TINY, "--out", out, cwd=tmp_path)
    wait_for(ready, child)
    assert Path(ready.read_text()).is_dir()  # the temporary folder, full of files
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: interrupted ({name}); no output was written"], stderr
    assert "Traceback" not in stderr
    assert not out.exists() and leftovers(out.parent) == []


@pytest.mark.slow
@pytest.mark.parametrize("module, extra", [("torch", []), ("open3d", ["--voxel", "0.05"])])
def test_ctrl_c_during_an_import_is_one_line(module, extra, tmp_path):
    out = tmp_path / "parent" / "recon"
    child = spawn(f"interrupt-import:{module}", CAMS, *TINY, *extra, "--out", out, cwd=tmp_path)
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "interrupted (Ctrl-C)" in lines[0], stderr
    assert "Traceback" not in stderr and "ImportError" not in stderr
    assert not out.exists() and leftovers(out.parent) == []


def test_stale_temporary_folders_are_removed_or_reported(tmp_path):
    out = tmp_path / "recon"
    dead = tmp_path / ".recon.tmp-999999999-abcd1234"  # no such process
    alive = tmp_path / ".recon.tmp-1-efgh5678"  # pid 1 always runs
    other = tmp_path / ".other.tmp-999999999-abcd1234"  # another target's: not ours to judge
    for folder in (dead, alive, other):
        (folder / "points").mkdir(parents=True)
    result = reconstruct_cli(CAMS, *TINY, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert not dead.exists() and alive.exists() and other.exists()
    assert f"removed {dead}" in result.stderr
    assert f"{alive}: being written by another running page4d (pid 1)" in result.stderr
    assert any("removed" in w for w in json.loads((out / "run.json").read_text())["warnings"])


def test_an_overwrite_killed_between_its_renames_gets_the_previous_output_back(tmp_path):
    out = tmp_path / "recon"
    moved_aside = fake_page4d_output(tmp_path / ".recon.old-999999999-abcd1234")  # no such process
    (moved_aside / "thesis.txt").write_text("keep")
    result = reconstruct_cli(CAMS, *TINY, "--out", out, "-q")
    assert result.exit_code == 1 and "already exists; pass --overwrite" in result.stderr  # it is back
    assert (out / "thesis.txt").read_text() == "keep" and not moved_aside.exists()
    assert f"restored {out}" in result.stderr


# ----------------------------------------------------------------------------- 8. permissions


def test_output_folders_follow_the_umask(tmp_path):
    out = tmp_path / "new" / "recon"
    previous = os.umask(0o027)
    try:
        result = reconstruct_cli(CAMS, *TINY, "--out", out, "-q")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    for folder in (out.parent, out, out / "points", out / "depth" / "cam00"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder
    assert stat.S_IMODE((out / "run.json").stat().st_mode) == 0o640


# ----------------------------------------------------------------------------- 9. progress in logs


def test_progress_lines_without_a_terminal(tmp_path):
    result = reconstruct_cli(CAMS, *TINY, "--frames", 3, "--max-images-per-pass", 8, "--overlap", 1, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("page4d: ")]
    assert any(line.startswith("page4d: decoding done") and "elapsed" in line for line in lines), lines
    assert any(line.startswith("page4d: loading network done") for line in lines), lines
    windows = [line for line in lines if line.startswith("page4d: network window")]
    assert [w.split(" done")[0] for w in windows] == ["page4d: network window 1/2", "page4d: network window 2/2"]
    assert "eta" in windows[0] and "elapsed" in windows[0]
    assert any(line.startswith("page4d: writing done") for line in lines), lines
    assert "━" not in result.stderr  # no progress bars in a log


# ----------------------------------------------------------------------------- 11. empty results


def test_a_confidence_threshold_that_keeps_nothing_is_a_warning(tmp_path):
    out = tmp_path / "o"
    result = reconstruct_cli(CAMS, *TINY, "--conf-threshold", 1e9, "--out", out)
    assert result.exit_code == 0, result.output
    assert "warning: all 2 point clouds are empty: --conf-threshold 1e+09 filtered every point" in result.stderr
    run = json.loads((out / "run.json").read_text())
    assert any("point clouds are empty" in w for w in run["warnings"])
    assert run["export"]["points"]["num_points"] == [0, 0]


def test_auto_masks_that_find_nothing_are_a_warning_and_are_written(tmp_path):
    out = tmp_path / "o"
    result = reconstruct_cli(CAMS, *TINY, "--frames", 1, "--auto-masks", "--out", out)
    assert result.exit_code == 0, result.output
    assert "warning: --auto-masks found no moving pixels in 1 instant" in result.stderr
    assert any("--auto-masks found no moving pixels" in w for w in json.loads((out / "run.json").read_text())["warnings"])
    written = sorted(p.relative_to(out).as_posix() for p in (out / "masks" / "auto").rglob("*.png"))
    assert written == [f"masks/auto/cam{v:02d}/frame_0000.png" for v in range(4)]


# ----------------------------------------------------------------------------- 12. messages and help


def test_reencode_advice_writes_outside_the_clip_folder(tmp_path):
    clip = clip_copy(tmp_path)
    (clip / "cam1.mp4").write_bytes(b"\0" * 4096)
    result = reconstruct_cli(clip, *TINY, "--out", tmp_path / "o")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    fixed = line.split("libx264 ")[1].split(" ")[0]
    assert Path(fixed).parent.resolve() != clip.resolve() and "cam1_fixed.mp4" in fixed


def test_frames_error_names_the_short_camera(tmp_path):
    import cv2

    clip = tmp_path / "clip"
    for v, count in enumerate([6, 6, 4]):
        (clip / f"cam{v}").mkdir(parents=True)
        for t in range(count):
            cv2.imwrite(str(clip / f"cam{v}" / f"{t:03d}.png"), np.full((28, 42, 3), 40 * t, np.uint8))
    result = reconstruct_cli(clip, *TINY[:-2], "--frames", 5, "--out", tmp_path / "o")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "--frames 5" in line and "cam2 is the shortest with 4 frames" in line


def test_masks_path_that_is_a_file_says_so(tmp_path, monkeypatch):
    masks = tmp_path / "masks.png"
    masks.write_bytes(b"not a folder")
    no_work(monkeypatch)
    result = reconstruct_cli(CAMS, *TINY, "--masks", masks, "--out", tmp_path / "o")
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "masks.png: is a file, not a masks folder" in line


def test_one_instant_is_singular(tmp_path):
    result = reconstruct_cli(CAMS, *TINY, "--frames", 1, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "1 instant x 4 cameras" in result.stdout and "1 network pass" in result.stdout


def test_help_shows_flags_without_placeholder_and_every_default():
    result = CliRunner().invoke(app, ["reconstruct", "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    blocks: list[list[str]] = []  # one per option: its first row and the rows its help wraps onto
    for line in result.stdout.splitlines():
        text = line.strip("│ ")
        if text.startswith("--"):
            blocks.append([text])
        elif blocks and text and not text.startswith("╰"):
            blocks[-1].append(text)
    assert len(blocks) > 25
    undocumented = [block[0].split()[0] for block in blocks
                    if "[default:" not in " ".join(block) and not block[0].startswith("--help")]
    assert undocumented == [], undocumented


def test_version_short_flag():
    from page4d_cli import __version__

    result = CliRunner().invoke(app, ["-V"])
    assert result.exit_code == 0 and result.stdout.strip() == f"page4d {__version__}"


def test_eta_column_is_blank_once_a_stage_ended():
    from io import StringIO

    from rich.console import Console

    from page4d_cli.reporters import RichReporter

    buffer = StringIO()
    reporter = RichReporter(Console(file=buffer, force_terminal=True, width=120))
    with reporter:
        reporter.stage("read", 4, 4, "")
    reporter.bars.refresh()
    (line,) = [line for line in buffer.getvalue().splitlines() if "decoding" in line][-1:]
    assert "4/4" in line and ":" not in line.split("eta")[1], line  # no clock after "eta"
    running = RichReporter(Console(file=buffer, force_terminal=True, width=120))
    with running:
        running.stage("network", 1, 4, "")
        running.bars.refresh()
    (line,) = [line for line in buffer.getvalue().splitlines() if "network" in line][-1:]
    assert ":" in line.split("eta")[1], line  # while running, the ETA is shown
