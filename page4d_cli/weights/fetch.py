"""Download pretrained weights from the Hugging Face hub, check them, and register them.

``fetch_weights`` runs, for the files asked for:

1. prints each file's licence terms and, where a licence applies, requires acceptance
   (``accept_licence`` or the ``confirm`` callback) -- before any network access;
2. asks the hub for each file's metadata (HEAD: size, ETag, commit);
3. checks the free space of the cache folder against the total size still to download;
4. downloads each file into the normal HF cache (so an existing cache is reused), reporting
   progress through the reporter (stage ``download <file>``);
5. verifies the file against the metadata of step 2: size equal to the hub's, and the content
   hash where the ETag is one (LFS files: the ETag is the sha256 of the content; plain git
   files: the git blob sha1); a bad file is removed from the cache and not registered. A copy that
   was already in the cache and fails the check is downloaded again in the same run;
6. reads its layout and registers it.

About resuming: huggingface_hub 2.4's ``hf_hub_download`` resumes a transfer that breaks *within one
run* (HTTP Range), but it writes to a temporary ``<etag>.<random>.incomplete`` unique to each process
and deletes it on any exception, so after Ctrl-C or a kill the next run starts from zero (and a
killed run leaves its temporary file behind for good). page4d therefore does the transfer itself
with huggingface_hub's ``http_get`` into ``blobs/<etag>.incomplete`` (the name older
huggingface_hub versions used), which survives Ctrl-C and kills and is resumed with a Range request
by the next fetch; leftovers of killed ``hf_hub_download`` runs are adopted the same way. Once the
blob is complete it is moved into place and ``hf_hub_download`` only adds the snapshot link and ref,
so the cache looks exactly as if huggingface_hub had downloaded the file.

Nothing here prints: everything the user should see goes through the reporter
(:class:`page4d_cli.weights.fetch.Reporter` protocol: ``stage``, ``info``, ``warning``).

Hub settings are read from the environment at call time, not at import time:
``huggingface_hub.constants`` freezes ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` when it is first
imported, so the endpoint and cache folder are passed explicitly on every call.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Protocol
from urllib.parse import urlparse

from page4d_cli.weights.catalog import HubFile, format_size
from page4d_cli.weights.registry import (
    LayoutError,
    Registry,
    RegistryEntry,
    WeightsError,
    check_role_layout,
    detect_file_layout,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
_HASH_CHUNK = 8 * 1024 * 1024


class Reporter(Protocol):
    """What ``fetch_weights`` has to say: byte progress per stage, notices, warnings (one line each)."""

    def stage(self, name: str, done: float, total: Optional[float], detail: str = "") -> None: ...

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...


class SilentReporter:
    """The default for library use: says nothing."""

    def stage(self, name: str, done: float, total: Optional[float], detail: str = "") -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass


class FetchError(WeightsError):
    """A download could not be done (network, authentication, missing file...)."""


class LicenceNotAccepted(FetchError):
    """The user did not accept the licence of a file that needs it."""


class NotEnoughDiskSpace(FetchError):
    """The cache folder has less free space than the files need."""


class VerificationError(FetchError):
    """A downloaded file does not match what the hub reported."""


class FetchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a fetch. Still a ``KeyboardInterrupt``; ``message`` is the one line
    to show: what was registered before, that the interrupted file was not, and that it resumes."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class HubSettings:
    """Where to download from and to, read from the environment when a fetch starts."""

    endpoint: str
    cache_dir: Path
    token: str | None  # None: huggingface_hub finds HF_TOKEN or the saved login itself


def hub_cache_dir() -> Path:
    """The HF hub cache folder, resolved like huggingface_hub does, but from today's environment."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        raw = env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]
    else:
        home = env.get("HF_HOME") or os.path.join(
            env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
        raw = os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(raw)))


def hub_settings(token: str | None = None) -> HubSettings:
    """Current endpoint (``HF_ENDPOINT``), cache folder and explicit token."""
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    return HubSettings(endpoint=endpoint, cache_dir=hub_cache_dir(), token=token or None)


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says about one file (from a HEAD request)."""

    item: HubFile
    size: int | None
    etag: str | None
    commit: str | None
    location: str | None = None  # where the content is served (a CDN after a redirect)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception classes meaning "the transfer failed", whichever HTTP client huggingface_hub uses.

    huggingface_hub's own HTTP errors derive from OSError; the transport errors come from httpx2
    (huggingface_hub 2.x), httpx (1.x) or requests (0.x).
    """
    classes: list[type[BaseException]] = [OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(classes)


def _hub_error(item: HubFile, settings: HubSettings, exc: BaseException) -> FetchError:
    """Turn a huggingface_hub / HTTP client error into a one-line FetchError that says what to do."""
    from huggingface_hub import errors

    def kind(*names: str) -> tuple[type, ...]:
        return tuple(c for c in (getattr(errors, n, None) for n in names) if isinstance(c, type))

    where = f"{item.label} at {settings.endpoint}"
    if isinstance(exc, kind("GatedRepoError")):
        return FetchError(f"{where} is gated: accept its terms on the hub page, then pass --token "
                          "or set HF_TOKEN")
    if isinstance(exc, kind("RepositoryNotFoundError")):
        return FetchError(f"{where}: repository not found or not accessible; pass --token or set "
                          "HF_TOKEN if it needs authentication, or check HF_ENDPOINT")
    if isinstance(exc, kind("RemoteEntryNotFoundError", "EntryNotFoundError", "RevisionNotFoundError")):
        return FetchError(f"{where}: file or revision not found on the hub ({_first_line(exc)})")
    if isinstance(exc, kind("OfflineModeIsEnabled")):
        return FetchError(f"cannot fetch {where}: HF_HUB_OFFLINE is set; unset it to download")
    if isinstance(exc, kind("HfHubHTTPError")):
        return FetchError(f"hub error for {where}: {_first_line(exc)}")
    return FetchError(f"cannot download {where} ({type(exc).__name__}: {_first_line(exc)}); "
                      "check the network connection, HF_ENDPOINT and any proxy settings")


def remote_metadata(item: HubFile, settings: HubSettings, revision: str = "main") -> RemoteFile:
    """HEAD the file's resolve URL: size, ETag and commit, following the hub's redirect rules."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(item.repo_id, item.filename, repo_type=item.repo_type, revision=revision,
                     endpoint=settings.endpoint)
    try:
        meta = get_hf_file_metadata(url, token=settings.token, endpoint=settings.endpoint)
    except _network_errors() as exc:
        raise _hub_error(item, settings, exc) from None
    if meta.commit_hash is None or meta.etag is None:
        # Every hub /resolve answer carries both; without them this is not a hub (or a broken proxy).
        raise FetchError(f"{settings.endpoint} did not answer like a Hugging Face hub for {item.label} "
                         "(no X-Repo-Commit / ETag header); check HF_ENDPOINT and proxy settings")
    return RemoteFile(item=item, size=meta.size, etag=meta.etag, commit=meta.commit_hash,
                      location=meta.location or url)


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


def _blob_path(settings: HubSettings, remote: RemoteFile) -> Path | None:
    from huggingface_hub.file_download import repo_folder_name

    if not remote.etag:
        return None
    folder = repo_folder_name(repo_id=remote.item.repo_id, repo_type=remote.item.repo_type)
    return settings.cache_dir / folder / "blobs" / remote.etag


def _is_cached(settings: HubSettings, remote: RemoteFile) -> bool:
    blob = _blob_path(settings, remote)
    return bool(blob and blob.is_file() and (remote.size is None or blob.stat().st_size == remote.size))


def _drop_bad_cached_copy(settings: HubSettings, remote: RemoteFile, reporter: Reporter) -> None:
    """Delete a cached blob whose size differs from the hub's (a leftover partial or corrupt copy).

    huggingface_hub trusts any blob already named by the ETag and would hand it back unchanged;
    removing it (and the snapshot link to it) makes it download the file again.
    """
    blob = _blob_path(settings, remote)
    if blob is None or remote.size is None or not blob.is_file() or blob.stat().st_size == remote.size:
        return
    reporter.warning(f"removing a bad cached copy of {remote.item.filename} ({blob.stat().st_size} "
                     f"bytes, the hub reports {remote.size}): {blob}")
    pointer = blob.parent.parent / "snapshots" / (remote.commit or "") / remote.item.filename
    for p in (pointer, blob):
        if p.is_symlink() or p.exists():
            p.unlink()


def _bar_class(reporter: Reporter, stage: str) -> type:
    """A tqdm stand-in that hands huggingface_hub's progress (HTTP and Xet paths) to ``reporter``.

    huggingface_hub only needs tqdm's small surface here (see ``http_get`` / ``xet_get``);
    ``update_transfer`` being present makes its Xet reporter use one bar instead of two.
    """

    class RichBar:
        def __init__(self, *args, total=None, initial=0, **kwargs):
            self.n = initial
            self._total = total
            self._show()

        def _show(self):
            detail = f"{format_size(self.n)} of {format_size(self._total)}" if self._total else format_size(self.n)
            reporter.stage(stage, self.n, self._total, detail)

        @property
        def total(self):
            return self._total

        @total.setter
        def total(self, value):
            self._total = value
            self._show()

        def update(self, n=1):
            self.n += n
            self._show()

        def _ignore(self, *args, **kwargs):
            pass

        # Network bytes (Xet) and speed postfixes are not shown: the bar shows bytes on disk.
        update_transfer = set_postfix_str = set_transfer_postfix_str = refresh = close = _ignore

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    return RichBar


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


def _partial_path(settings: HubSettings, remote: RemoteFile) -> Path | None:
    """``blobs/<etag>.incomplete``: where a transfer writes until the file is complete."""
    blob = _blob_path(settings, remote)
    return blob.with_name(blob.name + ".incomplete") if blob is not None else None


def _adopt_leftovers(settings: HubSettings, remote: RemoteFile, reporter: Reporter) -> int:
    """Gather the partial downloads of this blob into ``<etag>.incomplete``; return its size.

    Candidates are our own ``<etag>.incomplete`` and the ``<etag>.<random>.incomplete`` files that
    killed huggingface_hub downloads leave. Called under the blob's lock (the one huggingface_hub
    holds while it writes), so none of them is being written. The longest is kept, the others are
    deleted (they hold a prefix of the same content), and so is one longer than the hub's size.
    """
    partial = _partial_path(settings, remote)
    if partial is None or not partial.parent.is_dir():
        return 0
    candidates = [p for p in partial.parent.glob(f"{remote.etag}*.incomplete") if p.is_file()]
    usable = [p for p in candidates if remote.size is None or p.stat().st_size <= remote.size]
    best = max(usable, key=lambda p: p.stat().st_size, default=None)
    for p in candidates:
        if p != best:
            p.unlink(missing_ok=True)
    if best is None:
        return 0
    if best != partial:
        os.replace(best, partial)
    size = partial.stat().st_size
    if size:
        reporter.info(f"resuming {remote.item.filename} from an interrupted download "
                      f"({format_size(size)} already in {partial.parent})")
    return size


def _transfer(remote: RemoteFile, settings: HubSettings, reporter: Reporter) -> None:
    """Download the blob into ``<etag>.incomplete`` (resuming what is there), then move it into place.

    An interrupt (Ctrl-C, SIGTERM) or a lost connection leaves the partial file for the next run.
    """
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    item = remote.item
    blob, partial = _blob_path(settings, remote), _partial_path(settings, remote)
    partial.parent.mkdir(parents=True, exist_ok=True)
    # huggingface_hub's lock for this blob: no other fetch (ours or its own) writes it meanwhile.
    lock = settings.cache_dir / ".locks" / repo_folder_name(repo_id=item.repo_id, repo_type=item.repo_type)
    lock.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(lock / f"{remote.etag}.lock")):
        if blob.is_file():
            return  # another process finished it while we waited
        resume = _adopt_leftovers(settings, remote, reporter)
        url = remote.location or ""
        headers = build_hf_headers(token=settings.token)
        if urlparse(url).netloc != urlparse(settings.endpoint).netloc:
            headers.pop("authorization", None)  # a signed CDN URL: the hub token is not for it
        with open(partial, "ab") as fh:
            http_get(url, fh, resume_size=resume, headers=headers, expected_size=remote.size,
                     tqdm_class=_bar_class(reporter, f"download {item.filename}"))
        os.replace(partial, blob)


def _download(remote: RemoteFile, settings: HubSettings, revision: str, reporter: Reporter) -> Path:
    """The file's snapshot path in the HF cache, downloading (or resuming) its blob if needed."""
    from huggingface_hub import hf_hub_download

    item = remote.item
    try:
        if remote.etag and not _is_cached(settings, remote):
            _transfer(remote, settings, reporter)
        path = hf_hub_download(
            # The blob is in place, so this only links it. The requested revision, not the commit,
            # so the cache's refs/<revision> is updated for other tools; verify_download compares
            # the content with the HEAD seen here.
            item.repo_id, item.filename, repo_type=item.repo_type, revision=revision,
            cache_dir=str(settings.cache_dir), endpoint=settings.endpoint, token=settings.token,
            tqdm_class=_bar_class(reporter, f"download {item.filename}"),
        )
    except _network_errors() as exc:
        # huggingface_hub's own check when the body length differs from the announced size
        # (an OSError "Consistency check failed: file should be of size X but has size Y").
        sizes = re.search(r"should be of size (\d+) but has size (\d+)", str(exc))
        if sizes:
            partial = _partial_path(settings, remote)
            if partial is not None:
                partial.unlink(missing_ok=True)  # its bytes do not add up: do not resume from them
            raise VerificationError(
                f"{item.label}: received {sizes.group(2)} bytes but the hub reports "
                f"{sizes.group(1)}; nothing was registered, re-run the fetch"
            ) from None
        raise _hub_error(item, settings, exc) from None
    return Path(path)


def _layout_of(pointer: Path, item: HubFile) -> str:
    """The downloaded file's layout, read off the file; it must fit the item's role."""
    layout = detect_file_layout(pointer)
    try:
        check_role_layout(pointer, item.role, layout)
    except LayoutError as exc:
        raise VerificationError(f"{item.label} passed the hub checks but {exc}; not registered") from None
    return layout


def fetch_weights(items: list[HubFile], *, accept_licence: bool = False,
                  confirm: Callable[[str], bool] | None = None, token: str | None = None,
                  revision: str = "main", reporter: Reporter | None = None,
                  registry: Registry | None = None) -> list[RegistryEntry]:
    """Download, verify and register ``items`` (see the module docstring for the steps).

    Raises a ``WeightsError`` subclass for anything the user can fix, and :class:`FetchInterrupted`
    (a ``KeyboardInterrupt``) on Ctrl-C, naming what was registered before it.
    """
    reporter = reporter or SilentReporter()
    registry = registry or Registry()
    settings = hub_settings(token)
    ensure_licences(items, accept_licence, confirm, reporter)

    remotes = [remote_metadata(item, settings, revision) for item in items]
    todo = [r for r in remotes if not _is_cached(settings, r)]
    needed = sum(_bytes_to_get(settings, r) for r in todo)
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


def _bytes_to_get(settings: HubSettings, remote: RemoteFile) -> int:
    """Bytes still to download: the file's size less what a partial download already holds."""
    size = remote.size if remote.size is not None else remote.item.approx_size
    partial = _partial_path(settings, remote)
    have = partial.stat().st_size if partial is not None and partial.is_file() else 0
    return max(size - have, 0)


def _fetch_one(remote: RemoteFile, settings: HubSettings, revision: str, registry: Registry,
               reporter: Reporter) -> RegistryEntry:
    item = remote.item
    reporter.info(f"{item.label} ({format_size(remote.size or item.approx_size)}) "
                  f"from {settings.endpoint} into {settings.cache_dir}")
    _drop_bad_cached_copy(settings, remote, reporter)
    was_cached = _is_cached(settings, remote)
    pointer = _download(remote, settings, revision, reporter)
    try:
        verified, how = verify_download(pointer, remote, reporter)
    except VerificationError:
        if not was_cached:
            raise
        # A copy of the right size that was already in the cache but fails the hash: verify_download
        # removed it; download it once more rather than asking for a re-run.
        reporter.warning(f"the cached copy of {item.filename} does not match the hub's hash; downloading it again")
        pointer = _download(remote, settings, revision, reporter)
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
