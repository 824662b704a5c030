"""The output folder: checked before any work, written atomically, replaced only when it is page4d's.

Everything is written into a temporary sibling ``.<name>.tmp-<pid>-XXXXXXXX`` (same parent, hence the
same file system, so the final ``rename`` is atomic) and renamed onto the target only after the body
of the ``with`` block succeeded::

    check_output_dir(out, overwrite, protect=[input_dir])   # fail fast, before loading weights
    with atomic_output_dir(out, overwrite, protect=[input_dir]) as tmp:
        write_everything(tmp)                 # an exception, Ctrl-C or SIGTERM here removes tmp

Rules:

- An existing target is refused without ``overwrite``. With it, the target is replaced only when it
  is recognisably a page4d output (its ``run.json`` carries ``"format": RUN_FORMAT``) and is neither
  one of the ``protect``-ed paths (the input folder, the masks folder) nor contains one, nor is the
  current directory or one of its ancestors. The old folder is removed only after the new one is
  complete (moved aside, new one renamed in, old one deleted).
- Writability is probed (a folder created and removed in the nearest existing ancestor) before any
  work, so a read-only mount or ``/proc/x`` fails in the first second.
- The temporary folder's name carries the writer's pid: a later run removes siblings whose process
  is gone (a run killed with SIGKILL cannot clean up) and reports those still being written.
- Folders get the umask's permissions (``tempfile.mkdtemp`` alone would make them ``drwx------``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional

from models.errors import Page4DError
from page4d_cli import signals

RUN_FILE = "run.json"
RUN_FORMAT = "page4d-run"  # run.json["format"]: the marker of a folder written by page4d reconstruct
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?:(?P<pid>\d+)-)?[^/]+$")


class OutputDirError(Page4DError):
    """``--out`` cannot be used (not writable, protected, not a page4d output, no space)."""


class OutputExistsError(OutputDirError, FileExistsError):
    """The output folder exists and overwriting was not requested (or is not allowed)."""


class DiskFullError(OutputDirError):
    """Not enough free space for the output, found before writing or while writing."""


def format_bytes(count: float) -> str:
    """``1.5 MB``-style size (decimal units, as ``df -H`` and file managers show them)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_page4d_output(folder: Path) -> bool:
    """True when ``folder/run.json`` is a run record page4d wrote (``"format": RUN_FORMAT``)."""
    try:
        record = json.loads((Path(folder) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("format") == RUN_FORMAT


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (where new folders would be created)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _is_same_or_ancestor(folder: Path, other: Path) -> bool:
    folder, other = folder.resolve(), other.resolve()
    return folder == other or folder in other.parents


def _check_replaceable(target: Path, protect: Iterable[Path]) -> None:
    """Raise unless ``target`` may be deleted and replaced by ``--overwrite``."""
    for path in protect:
        if _is_same_or_ancestor(target, Path(path)):
            what = "is" if target.resolve() == Path(path).resolve() else "contains"
            raise OutputExistsError(f"--out {target}: {what} the input {Path(path)}; --overwrite never replaces "
                                    "the input; choose a new output folder")
    cwd = Path.cwd()
    if _is_same_or_ancestor(target, cwd):
        what = "is" if target.resolve() == cwd.resolve() else "contains"
        raise OutputExistsError(f"--out {target}: {what} the current folder; --overwrite never replaces it; "
                                "choose a new output folder")
    if not is_page4d_output(target):
        raise OutputExistsError(f"--out {target}: exists and is not a page4d output (no {RUN_FILE} written by "
                                "page4d); --overwrite only replaces page4d outputs; choose a new folder "
                                "(or move this one away yourself)")


def check_writable(target: Path, name: Optional[str] = None) -> None:
    """Create and remove a probe folder where ``target`` will be created; ``OutputDirError`` if that fails.

    ``name``: how the message names the output (default ``--out <target>``; ``page4d data synth`` names
    its OUT folder).
    """
    name = f"--out {target}" if name is None else name
    base = nearest_existing(target.parent if target.exists() else target)
    if not base.is_dir():
        raise OutputDirError(f"{name}: {base} is a file, not a folder; choose another output folder")
    try:
        probe = tempfile.mkdtemp(prefix=".page4d-probe-", dir=base)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputDirError(f"{name}: cannot create folders in {base} ({exc.strerror or exc}); "
                             "choose a writable output folder") from None


def check_output_dir(target: Path | str, overwrite: bool = False, protect: Iterable[Path | str] = ()) -> Path:
    """Raise ``OutputDirError`` (one line) if ``target`` may not be written; return it as an absolute path.

    A file (not a folder) at the target is refused even with overwrite: replacing an unrelated file
    by a folder is never what the user meant. ``protect``: paths that must survive (the input).
    """
    target = Path(target).expanduser().absolute()
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise OutputExistsError(f"output path {target} exists and is not a folder; choose another path")
        if not overwrite:
            raise OutputExistsError(f"output folder {target} already exists; pass --overwrite to replace it")
        _check_replaceable(target, [Path(p).expanduser().absolute() for p in protect])
    check_writable(target)
    return target


def check_free_space(target: Path, needed_bytes: int) -> None:
    """``DiskFullError`` when the file system of ``target`` has less free space than ``needed_bytes``."""
    base = nearest_existing(target)
    free = shutil.disk_usage(base).free
    if free < needed_bytes:
        raise DiskFullError(f"--out {target}: the output needs about {format_bytes(needed_bytes)} but only "
                            f"{format_bytes(free)} are free on {base}; free some space or choose another --out")


def has_room(target: Path, needed_bytes: Optional[int]) -> bool:
    """Whether the file system of ``target`` has ``needed_bytes`` free (True when nothing is known)."""
    if not needed_bytes:
        return True
    return shutil.disk_usage(nearest_existing(Path(target).parent)).free >= needed_bytes


def disk_full_error(exc: BaseException, target: Path, needed_bytes: Optional[int]) -> DiskFullError:
    """The one-line error for a full disk while writing ``target`` (the temporary folder is gone by now):
    ENOSPC/EDQUOT, or a writer that failed without errno on a disk without room for the output."""
    base = nearest_existing(Path(target).parent)
    free = shutil.disk_usage(base).free
    need = "" if needed_bytes is None else f"the output needs about {format_bytes(needed_bytes)}, "
    filename = getattr(exc, "filename", None)
    where = f" ({filename})" if filename else ""
    return DiskFullError(f"--out {target}: disk full while writing{where}; {need}{format_bytes(free)} are free "
                         f"on {base}; nothing was written; free some space or choose another --out")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def sweep_stale_siblings(target: Path) -> list[str]:
    """Remove ``.<name>.tmp-*``/``.old-*`` siblings of ``target`` left by runs whose process is gone.

    Returns one line per sibling found: removed (its pid no longer runs), restored (an ``.old-`` folder
    while the target is missing: a run was killed between the two renames of an overwrite, so it is
    the previous output), or left alone (its pid still runs: another page4d is writing there; or no
    pid in its name: written by an older page4d).
    """
    target = Path(target).absolute()
    notes: list[str] = []
    if not target.parent.is_dir():
        return notes
    for sibling in sorted(target.parent.iterdir()):
        match = _SIBLING.match(sibling.name)
        if not match or match["name"] != target.name or not sibling.is_dir() or sibling.is_symlink():
            continue
        pid = match["pid"]
        if pid is None:
            notes.append(f"{sibling}: an unfinished output of an earlier page4d run; delete it if no run is writing "
                         "there")
        elif int(pid) != os.getpid() and _process_alive(int(pid)):
            notes.append(f"{sibling}: being written by another running page4d (pid {pid}); its result will replace "
                         f"{target.name} only if that run was given --overwrite")
        elif int(pid) != os.getpid() and match["kind"] == "old" and not target.exists():
            os.rename(sibling, target)  # killed between the two renames of an overwrite: the previous output
            notes.append(f"restored {target} from {sibling.name}: the previous output, moved aside by a run that was "
                         f"killed while replacing it (pid {pid})")
        elif int(pid) != os.getpid():
            with signals.deferred():
                shutil.rmtree(sibling, ignore_errors=True)
            what = "the unfinished output" if match["kind"] == "tmp" else "the replaced previous output"
            notes.append(f"removed {sibling}: {what} of an interrupted run (pid {pid}, no longer running)")
    return notes


def make_folder(path: Path) -> Path:
    """``mkdir -p`` with the umask's permissions (what ``mkdir`` in a shell gives)."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def _remove_tree(path: Path) -> None:
    with signals.deferred():  # a second Ctrl-C must not leave half a folder behind
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(target: Path | str, overwrite: bool = False,
                      protect: Iterable[Path | str] = ()) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it becomes ``target``.

    On any exception (including ``KeyboardInterrupt`` and ``signals.Terminated``) the temporary
    folder is removed, the exception propagates, and an existing ``target`` is left untouched. The
    parent folder is created if missing (and not removed on failure: it holds no output).
    """
    protect = list(protect)
    target = check_output_dir(target, overwrite, protect)
    make_folder(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        _publish(tmp, target, overwrite, protect)
    except BaseException:
        _remove_tree(tmp)
        raise


def _publish(tmp: Path, target: Path, overwrite: bool, protect: list) -> None:
    """Rename ``tmp`` onto ``target``; with overwrite, swap out the old folder first."""
    # Re-check: another process may have created or changed the target while we were computing.
    check_output_dir(target, overwrite, protect)
    swap_into_place(tmp, target)


def swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder ``tmp`` to ``target``. An existing ``target`` is moved aside first
    (``.<name>.old-<pid>-*``, which ``sweep_stale_siblings`` recognises) and deleted only once ``tmp``
    took its place; the two renames run with Ctrl-C/SIGTERM held back. The caller decided that
    ``target`` may be replaced."""
    if not target.exists():
        os.rename(tmp, target)
        return
    with signals.deferred():  # the two renames belong together
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
        os.rmdir(old)  # we only wanted a unique free name
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)  # put the previous output back
            raise
    _remove_tree(old)
