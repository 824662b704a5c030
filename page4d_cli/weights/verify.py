"""Checking a cached or downloaded file against what the hub reported, and removing a bad one.

Size must equal the hub's; where the ETag is a content hash it must match too (LFS files: the
sha256 of the content; plain git files: the git blob sha1). A bad file is removed from the cache
(blob and snapshot link) so that the next download step fetches it again.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from page4d_cli.pipeline.types import Reporter
from page4d_cli.weights.fetch_errors import VerificationError
from page4d_cli.weights.hub import HubSettings, RemoteFile
from page4d_cli.weights.hub_cache import blob_path, snapshot_path

_HASH_CHUNK = 8 * 1024 * 1024


def drop_wrong_size_cached_copy(settings: HubSettings, remote: RemoteFile, reporter: Reporter) -> None:
    """Delete a cached blob whose size differs from the hub's (a leftover partial or corrupt copy).

    huggingface_hub trusts any blob already named by the ETag and would hand it back unchanged;
    removing it (and the snapshot link to it) makes it download the file again.
    """
    blob = blob_path(settings, remote)
    if blob is None or remote.size is None or not blob.is_file() or blob.stat().st_size == remote.size:
        return
    reporter.warning(f"removing a bad cached copy of {remote.item.filename} ({blob.stat().st_size} "
                     f"bytes, the hub reports {remote.size}): {blob}")
    for p in (snapshot_path(blob, remote), blob):
        if p.is_symlink() or p.exists():
            p.unlink()


def _hash_file(path: Path, algo: str, reporter: Reporter, label: str) -> str:
    """sha256 of the content, or git's blob sha1 (``"blob <size>\\0" + content``)."""
    size = path.stat().st_size
    h = hashlib.sha256() if algo == "sha256" else hashlib.sha1(f"blob {size}\0".encode())
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
            done += len(chunk)
            reporter.stage(f"verify {label}", done, size, algo)
    return h.hexdigest()


def _discard(pointer: Path) -> None:
    """Remove a bad download (blob and snapshot link) so the next fetch downloads it again."""
    blob = pointer.resolve()
    for p in (pointer, blob):
        try:
            p.unlink()
        except OSError:
            pass


def verify_download(pointer: Path, remote: RemoteFile, reporter: Reporter) -> tuple[bool, str]:
    """Check a downloaded file against the hub's size and ETag; returns (verified, how).

    Raises VerificationError (after removing the file from the cache) on any mismatch.
    """
    item = remote.item
    real = pointer.resolve()
    size = real.stat().st_size
    if remote.size is not None and size != remote.size:
        _discard(pointer)
        raise VerificationError(
            f"{item.label}: the file in the cache ({real}) has {size} bytes but the hub reports "
            f"{remote.size}; it was removed and not registered, re-run the fetch"
        )
    etag = (remote.etag or "").lower()
    algo = "sha256" if re.fullmatch(r"[0-9a-f]{64}", etag) else \
        "git-sha1" if re.fullmatch(r"[0-9a-f]{40}", etag) else None
    if algo is None:
        return False, "size only (the hub gave no content hash)"
    digest = _hash_file(real, algo, reporter, item.filename)
    if digest != etag:
        _discard(pointer)
        raise VerificationError(
            f"{item.label}: {algo} of the download is {digest[:16]}... but the hub reports "
            f"{etag[:16]}...; the file was removed and not registered, re-run the fetch"
        )
    return True, f"size+{algo}"
