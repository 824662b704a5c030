"""Asking the Hugging Face hub about a file: settings from the environment, metadata, errors.

Hub settings are read from the environment at call time, not at import time:
``huggingface_hub.constants`` freezes ``HF_ENDPOINT`` / ``HF_HUB_CACHE`` when it is first
imported, so the endpoint and cache folder are passed explicitly on every call.

huggingface_hub is imported inside the functions: importing this module stays light. Its own log
messages (e.g. "Error while downloading ... Trying to resume download") would go straight to stderr;
:func:`hub_messages_to` hands them to the reporter instead, one line each.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from models.errors import one_line
from page4d_cli.pipeline.types import Reporter
from page4d_cli.weights.catalog import HubFile
from page4d_cli.weights.fetch_errors import FetchError

DEFAULT_ENDPOINT = "https://huggingface.co"


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def network_errors() -> tuple[type[BaseException], ...]:
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


def hub_error(item: HubFile, settings: HubSettings, exc: BaseException) -> FetchError:
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
        return FetchError(f"{where}: file or revision not found on the hub ({first_line(exc)})")
    if isinstance(exc, kind("OfflineModeIsEnabled")):
        return FetchError(f"cannot fetch {where}: HF_HUB_OFFLINE is set; unset it to download")
    if isinstance(exc, kind("HfHubHTTPError")):
        return FetchError(f"hub error for {where}: {first_line(exc)}")
    return FetchError(f"cannot download {where} ({type(exc).__name__}: {first_line(exc)}); "
                      "check the network connection, HF_ENDPOINT and any proxy settings")


def remote_metadata(item: HubFile, settings: HubSettings, revision: str = "main") -> RemoteFile:
    """HEAD the file's resolve URL: size, ETag and commit, following the hub's redirect rules."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(item.repo_id, item.filename, repo_type=item.repo_type, revision=revision,
                     endpoint=settings.endpoint)
    try:
        meta = get_hf_file_metadata(url, token=settings.token, endpoint=settings.endpoint)
    except network_errors() as exc:
        raise hub_error(item, settings, exc) from None
    if meta.commit_hash is None or meta.etag is None:
        # Every hub /resolve answer carries both; without them this is not a hub (or a broken proxy).
        raise FetchError(f"{settings.endpoint} did not answer like a Hugging Face hub for {item.label} "
                         "(no X-Repo-Commit / ETag header); check HF_ENDPOINT and proxy settings")
    return RemoteFile(item=item, size=meta.size, etag=meta.etag, commit=meta.commit_hash,
                      location=meta.location or url)


class _ReporterHandler(logging.Handler):
    """A logging handler that gives each record to the reporter as one line."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        text = one_line(record.getMessage())
        (self.reporter.warning if record.levelno >= logging.WARNING else self.reporter.info)(text)


@contextlib.contextmanager
def hub_messages_to(reporter: Reporter) -> Iterator[None]:
    """While the block runs, huggingface_hub's log records go to ``reporter`` and nowhere else
    (its logger normally prints them to stderr itself); its handlers are restored afterwards."""
    logger = logging.getLogger("huggingface_hub")
    saved = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [_ReporterHandler(reporter)], False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved
