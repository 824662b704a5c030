"""Download pretrained weights from the Hugging Face hub, check them, and register them.

``fetch_weights`` runs, for the files asked for:

1. reports each file's licence terms and, where a licence applies, requires acceptance
   (``accept_licence`` or the ``confirm`` callback) -- before any network access;
2. asks the hub for each file's metadata (HEAD: size, ETag, commit; :mod:`.hub`);
3. checks the free space of the cache folder against the total size still to download
   (:mod:`.hub_cache`);
4. downloads each file into the normal HF cache (so an existing cache is reused), resuming an
   interrupted download, reporting progress (stage ``download <file>``; :mod:`.transfer`);
5. verifies the file against the metadata of step 2 (size, and the content hash where the ETag is
   one; :mod:`.verify`); a bad file is removed from the cache and not registered. A copy that was
   already in the cache and fails the check is downloaded again in the same run;
6. reads its layout and registers it.

Nothing here prints: everything the user should see goes through the reporter
(:class:`page4d_cli.pipeline.types.Reporter`: ``stage``, ``info``, ``warning``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from page4d_cli.pipeline.types import Reporter
from page4d_cli.weights.catalog import HubFile, format_size
from page4d_cli.weights.fetch_errors import FetchInterrupted, LicenceNotAccepted, VerificationError
from page4d_cli.weights.hub import HubSettings, RemoteFile, hub_messages_to, hub_settings, remote_metadata
from page4d_cli.weights.hub_cache import bytes_to_get, check_disk_space, is_cached
from page4d_cli.weights.registry import (
    LayoutError,
    Registry,
    RegistryEntry,
    check_role_layout,
    detect_file_layout,
)
from page4d_cli.weights.transfer import download
from page4d_cli.weights.verify import drop_wrong_size_cached_copy, verify_download


def ensure_licences(items: Iterable[HubFile], accept_licence: bool,
                    confirm: Callable[[str], bool] | None, reporter: Reporter) -> None:
    """Report every file's licence terms; raise LicenceNotAccepted where acceptance is missing."""
    for item in items:
        reporter.info(f"licence of {item.label}: {item.licence or 'none stated'}. {item.licence_text}")
        if not item.needs_acceptance or accept_licence:
            continue
        if confirm is not None and confirm(f"Accept the {item.licence} terms for {item.label}?"):
            continue
        raise LicenceNotAccepted(
            f"{item.label} is under {item.licence}: re-run with --accept-licence (-y) to accept "
            "its terms; nothing was downloaded"
        )


def fetch_weights(items: list[HubFile], *, accept_licence: bool = False,
                  confirm: Callable[[str], bool] | None = None, token: str | None = None,
                  revision: str = "main", reporter: Reporter | None = None,
                  registry: Registry | None = None) -> list[RegistryEntry]:
    """Download, verify and register ``items`` (see the module docstring for the steps).

    Raises a ``WeightsError`` subclass for anything the user can fix, and :class:`FetchInterrupted`
    (a ``KeyboardInterrupt``) on Ctrl-C, naming what was registered before it.
    """
    reporter = reporter or Reporter()
    registry = registry or Registry()
    settings = hub_settings(token)
    ensure_licences(items, accept_licence, confirm, reporter)

    with hub_messages_to(reporter):
        remotes = [remote_metadata(item, settings, revision) for item in items]
        todo = [r for r in remotes if not is_cached(settings, r)]
        needed = sum(bytes_to_get(settings, r) for r in todo)
        check_disk_space(settings.cache_dir, needed, " + ".join(r.item.filename for r in todo))

        entries: list[RegistryEntry] = []
        for remote in remotes:
            try:
                entries.append(_fetch_one(remote, settings, revision, registry, reporter))
            except KeyboardInterrupt as exc:
                before = (f"registered before: {', '.join(e.source['filename'] for e in entries)}; "
                          if entries else "")
                raise FetchInterrupted(
                    f"{remote.item.label} was not registered ({before}nothing else was); "
                    "re-run the same fetch to resume the download") from exc
    return entries


def _layout_of(pointer: Path, item: HubFile) -> str:
    """The downloaded file's layout, read off the file; it must fit the item's role."""
    layout = detect_file_layout(pointer)
    try:
        check_role_layout(pointer, item.role, layout)
    except LayoutError as exc:
        raise VerificationError(f"{item.label} passed the hub checks but {exc}; not registered") from None
    return layout


def _fetch_one(remote: RemoteFile, settings: HubSettings, revision: str, registry: Registry,
               reporter: Reporter) -> RegistryEntry:
    item = remote.item
    reporter.info(f"{item.label} ({format_size(remote.size or item.approx_size)}) "
                  f"from {settings.endpoint} into {settings.cache_dir}")
    drop_wrong_size_cached_copy(settings, remote, reporter)
    was_cached = is_cached(settings, remote)
    pointer = download(remote, settings, revision, reporter)
    try:
        verified, how = verify_download(pointer, remote, reporter)
    except VerificationError:
        if not was_cached:
            raise
        # A copy of the right size that was already in the cache but fails the hash: verify_download
        # removed it; download it once more rather than asking for a re-run.
        reporter.warning(f"the cached copy of {item.filename} does not match the hub's hash; downloading it again")
        pointer = download(remote, settings, revision, reporter)
        verified, how = verify_download(pointer, remote, reporter)
    layout = _layout_of(pointer, item)
    source = {"endpoint": settings.endpoint, "repo_id": item.repo_id,
              "repo_type": item.repo_type, "filename": item.filename, "revision": revision,
              "commit": remote.commit, "etag": remote.etag}
    entry = registry.add(RegistryEntry(
        role=item.role, path=str(pointer), size=pointer.resolve().stat().st_size, layout=layout,
        layout_checked=True, verified=verified, verified_how=how, source=source))
    reporter.info(f"registered {item.filename} as {item.role} ({layout}, {how}): {pointer}")
    return entry
