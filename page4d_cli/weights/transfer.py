"""Moving a file's bytes from the hub into the HF cache, resumable across runs.

About resuming: huggingface_hub 2.4's ``hf_hub_download`` resumes a transfer that breaks *within one
run* (HTTP Range), but it writes to a temporary ``<etag>.<random>.incomplete`` unique to each process
and deletes it on any exception, so after Ctrl-C or a kill the next run starts from zero (and a
killed run leaves its temporary file behind for good). page4d therefore does the transfer itself
with huggingface_hub's ``http_get`` into ``blobs/<etag>.incomplete`` (the name older
huggingface_hub versions used), which survives Ctrl-C and kills and is resumed with a Range request
by the next fetch; leftovers of killed ``hf_hub_download`` runs are adopted the same way. Once the
blob is complete it is moved into place and ``hf_hub_download`` only adds the snapshot link and ref,
so the cache looks exactly as if huggingface_hub had downloaded the file.

Progress goes to the reporter (stage ``download <file>``) through a tqdm stand-in.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

from page4d_cli.pipeline.types import Reporter
from page4d_cli.weights.catalog import format_size
from page4d_cli.weights.fetch_errors import VerificationError
from page4d_cli.weights.hub import HubSettings, RemoteFile, hub_error, network_errors
from page4d_cli.weights.hub_cache import blob_path, is_cached, partial_path


def progress_bar_class(reporter: Reporter, stage: str) -> type:
    """A tqdm stand-in that hands huggingface_hub's progress (HTTP and Xet paths) to ``reporter``.

    huggingface_hub only needs tqdm's small surface here (see ``http_get`` / ``xet_get``);
    ``update_transfer`` being present makes its Xet reporter use one bar instead of two.
    """

    class ReporterBar:
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

    return ReporterBar


def adopt_leftovers(settings: HubSettings, remote: RemoteFile, reporter: Reporter) -> int:
    """Gather the partial downloads of this blob into ``<etag>.incomplete``; return its size.

    Candidates are our own ``<etag>.incomplete`` and the ``<etag>.<random>.incomplete`` files that
    killed huggingface_hub downloads leave. Called under the blob's lock (the one huggingface_hub
    holds while it writes), so none of them is being written. The longest is kept, the others are
    deleted (they hold a prefix of the same content), and so is one longer than the hub's size.
    """
    partial = partial_path(settings, remote)
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


def transfer(remote: RemoteFile, settings: HubSettings, reporter: Reporter) -> None:
    """Download the blob into ``<etag>.incomplete`` (resuming what is there), then move it into place.

    An interrupt (Ctrl-C, SIGTERM) or a lost connection leaves the partial file for the next run.
    """
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    item = remote.item
    blob, partial = blob_path(settings, remote), partial_path(settings, remote)
    partial.parent.mkdir(parents=True, exist_ok=True)
    # huggingface_hub's lock for this blob: no other fetch (ours or its own) writes it meanwhile.
    lock = settings.cache_dir / ".locks" / repo_folder_name(repo_id=item.repo_id, repo_type=item.repo_type)
    lock.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(lock / f"{remote.etag}.lock")):
        if blob.is_file():
            return  # another process finished it while we waited
        resume = adopt_leftovers(settings, remote, reporter)
        url = remote.location or ""
        headers = build_hf_headers(token=settings.token)
        if urlparse(url).netloc != urlparse(settings.endpoint).netloc:
            headers.pop("authorization", None)  # a signed CDN URL: the hub token is not for it
        with open(partial, "ab") as fh:
            http_get(url, fh, resume_size=resume, headers=headers, expected_size=remote.size,
                     tqdm_class=progress_bar_class(reporter, f"download {item.filename}"))
        os.replace(partial, blob)


def download(remote: RemoteFile, settings: HubSettings, revision: str, reporter: Reporter) -> Path:
    """The file's snapshot path in the HF cache, downloading (or resuming) its blob if needed."""
    from huggingface_hub import hf_hub_download

    item = remote.item
    try:
        if remote.etag and not is_cached(settings, remote):
            transfer(remote, settings, reporter)
        path = hf_hub_download(
            # The blob is in place, so this only links it. The requested revision, not the commit,
            # so the cache's refs/<revision> is updated for other tools; verify_download compares
            # the content with the HEAD seen here.
            item.repo_id, item.filename, repo_type=item.repo_type, revision=revision,
            cache_dir=str(settings.cache_dir), endpoint=settings.endpoint, token=settings.token,
            tqdm_class=progress_bar_class(reporter, f"download {item.filename}"),
        )
    except network_errors() as exc:
        # huggingface_hub's own check when the body length differs from the announced size
        # (an OSError "Consistency check failed: file should be of size X but has size Y").
        sizes = re.search(r"should be of size (\d+) but has size (\d+)", str(exc))
        if sizes:
            partial = partial_path(settings, remote)
            if partial is not None:
                partial.unlink(missing_ok=True)  # its bytes do not add up: do not resume from them
            raise VerificationError(
                f"{item.label}: received {sizes.group(2)} bytes but the hub reports "
                f"{sizes.group(1)}; nothing was registered, re-run the fetch"
            ) from None
        raise hub_error(item, settings, exc) from None
    return Path(path)
