"""Atomic output folder: a run either produces the complete folder or leaves nothing behind.

Everything is written into a temporary sibling ``.<name>.tmp-XXXXXXXX`` (same parent, hence the same
file system, so the final ``rename`` is atomic) and renamed onto the target only after the body of
the ``with`` block succeeded::

    check_output_dir(out, overwrite)          # fail fast, before loading weights
    with atomic_output_dir(out, overwrite) as tmp:
        write_everything(tmp)                 # an exception or Ctrl-C here removes tmp

An existing target is refused unless ``overwrite=True``; with overwrite it is replaced only at the
very end, after success (moved aside, new folder renamed in, old one deleted). A process killed
with SIGKILL cannot clean up: a stale ``.<name>.tmp-*`` folder may then remain next to the target;
it is never mistaken for output and can be deleted by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


class OutputExistsError(FileExistsError):
    """The output folder exists and overwriting was not requested."""


def check_output_dir(target: Path | str, overwrite: bool = False) -> Path:
    """Raise ``OutputExistsError`` (one-line message) if ``target`` may not be written; return it resolved.

    A file (not a folder) at the target is refused even with overwrite: replacing an unrelated file
    by a folder is never what the user meant.
    """
    target = Path(target).expanduser().absolute()
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise OutputExistsError(f"output path {target} exists and is not a folder; choose another path")
        if not overwrite:
            raise OutputExistsError(f"output folder {target} already exists; pass --overwrite to replace it")
    return target


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(target: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it becomes ``target``.

    On any exception (including ``KeyboardInterrupt``) the temporary folder is removed, the
    exception propagates, and an existing ``target`` is left untouched. The parent folder is
    created if missing (and not removed on failure: it holds no output).
    """
    target = check_output_dir(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _publish(tmp, target, overwrite)
    except BaseException:
        _remove_tree(tmp)
        raise


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename ``tmp`` onto ``target``; with overwrite, swap out the old folder first."""
    # Re-check: another process may have created the target while we were computing.
    check_output_dir(target, overwrite)
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)  # we only wanted a unique free name
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)  # put the previous output back
        raise
    _remove_tree(old)
