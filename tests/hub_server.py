"""A local stand-in for the Hugging Face hub's file endpoint, for download tests without network.

It answers the requests huggingface_hub 2.4 makes in ``hf_hub_download``:

- ``HEAD {endpoint}/{prefix}{repo_id}/resolve/{revision}/{filename}`` (prefix ``datasets/`` for
  dataset repos) with ``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag`` (the sha256 of the content,
  as for LFS files) and ``X-Linked-Size``. With ``redirect=True`` it answers like the real hub
  for LFS files: a 302 to a CDN URL on *another origin* (``localhost`` instead of ``127.0.0.1``),
  so huggingface_hub takes the metadata from the redirect and downloads from the CDN URL
  without the Authorization header.
- ``GET`` of the resolve or CDN URL, honouring ``Range: bytes=N-`` (206 + Content-Range), as
  huggingface_hub uses to resume a broken transfer.

No Xet headers are ever sent, so huggingface_hub stays on its plain HTTP path. Every request is
recorded (method, path, headers) for the tests to inspect.

Also here: the repositories and stand-in bytes the fetch tests serve, a reporter that records what
it hears, and writers for tiny checkpoints whose tensor NAMES are those of the real files (from
``shared/reference/keys``), with every dimension cut to at most 3.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>(?:datasets/|spaces/)?[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<repo>(?:datasets/|spaces/)?[^/]+/[^/]+)/(?P<file>.+)$")


@dataclass
class FakeFile:
    """A file served by the fake hub.

    ``reported_size`` / ``etag`` override what HEAD announces (defaults: the real length and
    sha256), to simulate a hub whose metadata does not match the bytes. ``drop_after``: on the
    first full GET, send that many body bytes and then cut the connection. ``stall_after``: on the
    first full GET, send that many body bytes and then hold the connection open, sending nothing more
    until the hub closes (a transfer in progress, for a test to interrupt or kill the client).
    """

    content: bytes
    reported_size: int | None = None
    etag: str | None = None
    drop_after: int | None = None
    dropped: bool = False
    stall_after: int | None = None
    stalled: bool = False

    @property
    def head_size(self) -> int:
        return len(self.content) if self.reported_size is None else self.reported_size

    @property
    def head_etag(self) -> str:
        return self.etag or hashlib.sha256(self.content).hexdigest()


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeHub:
    """Start with ``with FakeHub() as hub:``; ``hub.url`` is the endpoint for HF_ENDPOINT."""

    redirect: bool = False
    files: dict[tuple[str, str], FakeFile] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    on_request: Callable[[Seen], None] | None = None
    closing: threading.Event = field(default_factory=threading.Event)  # set on exit: stalls end

    def add(self, repo_id: str, filename: str, content: bytes, repo_type: str = "model",
            **options) -> FakeFile:
        prefix = {"dataset": "datasets/", "space": "spaces/"}.get(repo_type, "")
        self.files[(prefix + repo_id, filename)] = f = FakeFile(content, **options)
        return f

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]

    def __enter__(self) -> "FakeHub":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real hub

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _record(self) -> Seen:
            seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            hub.seen.append(seen)
            if hub.on_request is not None:
                hub.on_request(seen)
            return seen

        def _lookup(self):
            m = _RESOLVE.match(self.path) or _CDN.match(self.path)
            if not m:
                return None, None
            key = (m.group("repo"), m.group("file"))
            return key, hub.files.get(key)

        def _not_found(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            self._record()
            key, f = self._lookup()
            if f is None:
                return self._not_found()
            port = self.server.server_address[1]
            if self.redirect_here():
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port}/cdn/{key[0]}/{key[1]}")
            else:
                self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{f.head_etag}"')
            self.send_header("X-Linked-Etag", f'"{f.head_etag}"')
            self.send_header("X-Linked-Size", str(f.head_size))
            self.send_header("Content-Length", "0" if self.redirect_here() else str(f.head_size))
            self.end_headers()

        def redirect_here(self) -> bool:
            return hub.redirect and _RESOLVE.match(self.path) is not None

        def do_GET(self) -> None:
            self._record()
            key, f = self._lookup()
            if f is None:
                return self._not_found()
            start = 0
            rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if rng:
                start = int(rng.group(1))
            body = f.content[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(f.content) - 1}/{len(f.content)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{f.head_etag}"')
            self.end_headers()
            if f.drop_after is not None and not f.dropped and not rng:
                f.dropped = True
                self.wfile.write(body[: f.drop_after])
                self.wfile.flush()
                # Cut the connection mid-body: the client sees fewer bytes than Content-Length.
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if f.stall_after is not None and not f.stalled and not rng:
                f.stalled = True
                self.wfile.write(body[: f.stall_after])
                self.wfile.flush()
                hub.closing.wait()  # the client waits for the rest until it is stopped
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


# -------------------------------------------------------------------------------------------------
# What the fetch tests serve and how they listen

PI3 = ("yyfz233/Pi3", "model.safetensors")
MASK = ("zhouk777/PAGE4D", "checkpoint_mask.pt")
NOMASK = ("zhouk777/PAGE4D", "checkpoint_nomask.pt")


class Recorder:
    """A reporter that keeps what it is told: ``lines`` (info and warning) and ``stages``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stages: list[tuple] = []

    def stage(self, name, done, total, detail=""):
        self.stages.append((name, done, total))

    def info(self, message):
        self.lines.append(message)

    def warning(self, message):
        self.lines.append("warning: " + message)


def fake_bytes(n: int = 300_000, seed: int = 0) -> bytes:
    """``n`` bytes of stand-in file content (different for each seed)."""
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32) + b"x" * (n % 32)


def pi3_blobs(env: Path) -> Path:
    """The ``blobs`` folder of the Pi3 repository in the test's HF cache."""
    return env / "hf" / "hub" / "models--yyfz233--Pi3" / "blobs"


# -------------------------------------------------------------------------------------------------
# Tiny checkpoints with the real tensor names

def real_keys(name: str) -> dict[str, list[int]]:
    """Tensor names and shapes of a real checkpoint: ``pi3_model_safetensors``,
    ``page4d_checkpoint_mask_pt`` or ``page4d_checkpoint_150_pt`` (tests/data/keys)."""
    from tests.helpers import reference_keys

    return reference_keys(name)["keys"]


def _tiny(shape: list[int]):
    """A tensor of the same rank with every dimension cut to at most 3: small, yet shaped enough
    to tell a 1x1 conv [out, in, 1, 1] from a depthwise 3x3 conv [C, 1, 3, 3]."""
    import torch

    return torch.zeros([min(d, 3) for d in shape])


def write_pi3_safetensors(path: Path) -> Path:
    """A Pi3-layout .safetensors file."""
    from safetensors.torch import save_file

    save_file({k: _tiny(s) for k, s in real_keys("pi3_model_safetensors").items()}, str(path))
    return path


def write_page4d_pt(path: Path, layout: str = "page4d") -> Path:
    """A torch pickle ``{"model": state_dict}`` in the ``page4d`` (official), ``page4d_ckpt150``
    or ``vggt`` (official minus the spatial mask head) layout."""
    import torch

    source = "page4d_checkpoint_150_pt" if layout == "page4d_ckpt150" else "page4d_checkpoint_mask_pt"
    keys = real_keys(source)
    if layout == "vggt":
        keys = {k: s for k, s in keys.items() if "spatial_mask_head" not in k}
    torch.save({"model": {k: _tiny(s) for k, s in keys.items()}}, str(path))
    return path
