"""``page4d view``: send a reconstruction folder to Rerun (native viewer, web viewer, or an .rrd file).

    from page4d_cli.view import ViewOptions, view
    view("page4d_out/cams", ViewOptions(save=Path("cams.rrd"), max_points=200_000))

rerun-sdk is an optional dependency (``pip install 'page4d[view]'``); without it ``view`` raises a
``ViewError`` naming the extra. Everything that can be checked (the folder, the sink) is checked
before the first instant is logged.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import quote

from page4d_cli.view.folder import ReconstructionFolder, ViewError
from page4d_cli.view.log import blueprint, log_instant, log_static, scene_size

INSTALL_HINT = "pip install 'page4d[view]'"
APPLICATION_ID = "page4d"
DEFAULT_WEB_PORT = 9090  # Rerun's own default for its web viewer
DEFAULT_MAX_POINTS = 500_000  # per instant: at most ~7.5 MB of points (float32 xyz + RGB) per instant


@dataclass(frozen=True)
class ViewOptions:
    """Where the recording goes: ``save`` (an .rrd file) or ``web`` (not both); neither = the native viewer.

    max_points: most points shown per instant (None = all). web_port / grpc_port: ports of the web
    viewer and of the data server it connects to (``--web``; None = Rerun's defaults).
    """

    save: Optional[Path] = None
    overwrite: bool = False  # replace an existing --save file (never done silently)
    web: bool = False
    max_points: Optional[int] = DEFAULT_MAX_POINTS
    web_port: Optional[int] = None
    grpc_port: Optional[int] = None
    open_browser: bool = True

    def __post_init__(self) -> None:
        if self.max_points is not None and self.max_points < 1:
            raise ViewError(f"--max-points {self.max_points}: must be at least 1 (points per instant)")
        if self.save is not None and self.web:
            raise ViewError("--save and --web: choose one (a file to open later, or a live web viewer)")

    @property
    def mode(self) -> str:
        return "save" if self.save is not None else "web" if self.web else "spawn"


def import_rerun():
    """The ``rerun`` module, or ``ViewError`` with the install command."""
    try:
        import rerun
    except ImportError:
        raise ViewError(f"rerun-sdk is not installed, and page4d view needs it; {INSTALL_HINT}") from None
    return rerun


def has_display() -> bool:
    """Whether a native window can open (Linux needs X11 or Wayland; macOS and Windows always can)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def check_sink(options: ViewOptions) -> None:
    """Fail early on a sink that cannot work (no display for the native viewer, unwritable .rrd)."""
    if options.mode == "spawn" and not has_display():
        raise ViewError("no display found (DISPLAY / WAYLAND_DISPLAY unset), so the native viewer cannot open; "
                        "use page4d view OUT --save FILE.rrd (then `rerun FILE.rrd` where there is a screen) or --web")
    if options.mode == "save":
        target = Path(options.save)
        if target.suffix != ".rrd":
            raise ViewError(f"{target}: a Rerun recording must end in .rrd; e.g. --save {target.with_suffix('.rrd')}")
        if target.is_dir():
            raise ViewError(f"{target}: is a folder; give a file name ending in .rrd")
        if target.exists() and not options.overwrite:
            raise ViewError(f"{target}: already exists; pass --overwrite to replace it, or choose another name")
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise ViewError(f"{parent}: no such folder for --save; create it or choose another path")
        if not os.access(parent, os.W_OK):
            raise ViewError(f"{parent}: not writable, so --save cannot write there; choose another folder")


def _partial_path(target: Path) -> Path:
    """Where a recording is written until it is complete (same folder, so the rename is atomic)."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def _connect(rr, rec, options: ViewOptions, layout) -> Optional[str]:
    """Attach the recording to its sink; returns the web viewer's address in web mode."""
    if options.mode == "save":
        rec.save(_partial_path(Path(options.save)), default_blueprint=layout)
        return None
    if options.mode == "spawn":
        rec.spawn(default_blueprint=layout)
        return None
    grpc_url = rec.serve_grpc(grpc_port=options.grpc_port, default_blueprint=layout)
    web_port = options.web_port or DEFAULT_WEB_PORT
    rr.serve_web_viewer(web_port=web_port, connect_to=grpc_url, open_browser=options.open_browser)
    return f"http://localhost:{web_port}/?url={quote(grpc_url, safe='')}"


@dataclass
class ViewResult:
    """What ``view`` did. ``recording`` is the live ``rerun.RecordingStream`` (web mode serves from it)."""

    mode: str
    num_instants: int
    num_cameras: int
    points_shown: list[int]  # per instant
    notes: list[str]
    address: Optional[str] = None  # web mode: the viewer's URL (it connects to this process's data server)
    recording: object = field(default=None, repr=False)


def view(out_dir, options: Optional[ViewOptions] = None,
         progress: Optional[Callable[[int, int], None]] = None) -> ViewResult:
    """Log the folder ``out_dir`` to Rerun; return what was shown.

    progress(done, total) is called after each instant. In web mode the caller keeps the process
    alive (see ``serve_forever``): the data server lives in this process.
    """
    options = ViewOptions() if options is None else options
    folder = ReconstructionFolder.open(out_dir)
    check_sink(options)
    rr = import_rerun()
    rec = rr.RecordingStream(APPLICATION_ID)
    rec.send_recording_name(folder.root.resolve().name)
    address = _connect(rr, rec, options, blueprint(folder))
    try:
        shown = _log_all(rr, rec, folder, options, progress)
    except BaseException:
        if options.mode == "save":  # nothing half-written: the partial recording goes
            rec.disconnect()
            _partial_path(Path(options.save)).unlink(missing_ok=True)
        raise
    if options.mode == "save":
        rec.disconnect()  # closes the file (with its footer)
        os.replace(_partial_path(Path(options.save)), options.save)
    return ViewResult(mode=options.mode, num_instants=folder.num_instants, num_cameras=folder.num_cameras,
                      points_shown=shown, notes=list(folder.notes), address=address, recording=rec)


def _log_all(rr, rec, folder: ReconstructionFolder, options: ViewOptions,
             progress: Optional[Callable[[int, int], None]]) -> list[int]:
    """Static parts, then instant after instant; returns the points shown per instant."""
    log_static(rr, rec, folder, options.max_points)
    frustum_depth = 0.15 * scene_size(folder)
    shown = []
    for t in range(folder.num_instants):
        shown.append(log_instant(rr, rec, folder, t, options.max_points, frustum_depth))
        rec.flush()  # hand this instant to the sink before reading the next: memory stays at one instant
        if progress is not None:
            progress(t + 1, folder.num_instants)
    return shown


def serve_forever(poll_s: float = 1.0) -> None:
    """Keep the process (and the web viewer's data server) alive until Ctrl-C."""
    while True:
        time.sleep(poll_s)
