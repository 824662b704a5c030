"""The HF hub cache on disk: where a file's blob, partial download and snapshot link live, what is
already there, and whether the disk has room for the rest.

Layout (huggingface_hub's): ``<cache>/<repo folder>/blobs/<etag>`` holds the content,
``snapshots/<commit>/<filename>`` links to it; page4d's partial downloads are
``blobs/<etag>.incomplete`` (see :mod:`page4d_cli.weights.transfer`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from page4d_cli.weights.catalog import format_size
from page4d_cli.weights.fetch_errors import NotEnoughDiskSpace
from page4d_cli.weights.hub import HubSettings, RemoteFile


def blob_path(settings: HubSettings, remote: RemoteFile) -> Path | None:
    """``blobs/<etag>`` of the file's repository (None when the hub gave no ETag)."""
    from huggingface_hub.file_download import repo_folder_name

    if not remote.etag:
        return None
    folder = repo_folder_name(repo_id=remote.item.repo_id, repo_type=remote.item.repo_type)
    return settings.cache_dir / folder / "blobs" / remote.etag


def partial_path(settings: HubSettings, remote: RemoteFile) -> Path | None:
    """``blobs/<etag>.incomplete``: where a transfer writes until the file is complete."""
    blob = blob_path(settings, remote)
    return blob.with_name(blob.name + ".incomplete") if blob is not None else None


def snapshot_path(blob: Path, remote: RemoteFile) -> Path:
    """``snapshots/<commit>/<filename>``: the link to ``blob`` that huggingface_hub hands out."""
    return blob.parent.parent / "snapshots" / (remote.commit or "") / remote.item.filename


def is_cached(settings: HubSettings, remote: RemoteFile) -> bool:
    """The blob is there with the hub's size (its content is checked after the download step)."""
    blob = blob_path(settings, remote)
    return bool(blob and blob.is_file() and (remote.size is None or blob.stat().st_size == remote.size))


def bytes_to_get(settings: HubSettings, remote: RemoteFile) -> int:
    """Bytes still to download: the file's size less what a partial download already holds."""
    size = remote.size if remote.size is not None else remote.item.approx_size
    partial = partial_path(settings, remote)
    have = partial.stat().st_size if partial is not None and partial.is_file() else 0
    return max(size - have, 0)


def _existing_parent(folder: Path) -> Path:
    """The folder itself or its nearest existing parent: the cache may not exist yet."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder


def check_disk_space(folder: Path, needed: int, what: str) -> None:
    """Raise NotEnoughDiskSpace when ``folder``'s disk has fewer than ``needed`` bytes free."""
    if needed <= 0:
        return
    free = shutil.disk_usage(_existing_parent(folder)).free
    if free < needed:
        raise NotEnoughDiskSpace(
            f"not enough free disk space in {folder}: {what} needs {format_size(needed)}, only "
            f"{format_size(free)} free; free some space or set HF_HUB_CACHE (or HF_HOME) to a folder "
            "on a larger disk"
        )
