"""The weights registry: which files on this machine play which role, and how far they are trusted.

The registry is one small JSON file, ``$PAGE4D_HOME/registry.json`` (default
``~/.cache/page4d/registry.json``)::

    {"version": 1,
     "entries": {"pi3": [ENTRY, ...], "page4d": [ENTRY, ...]}}

Each role keeps a list, oldest first. Registering a path that is already listed for that role
replaces the old entry and moves it to the end. ``auto`` resolution uses the **newest entry whose
file still exists**, so "the last file you fetched or added wins" (``page4d weights list`` marks it).

The files themselves are never copied: hub downloads stay in the Hugging Face cache (the entry
points at the cache's snapshot path) and local files stay where the user keeps them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from models.errors import Page4DError
from models.loading.roles import accepted_layouts
from page4d_cli.weights.catalog import ROLES

REGISTRY_VERSION = 1


class WeightsError(Page4DError):
    """Base of every error of the weights package; its message is one line, shown as is."""


class RegistryError(WeightsError):
    """The registry file cannot be read or written."""


class LayoutError(WeightsError):
    """A checkpoint is unreadable, or its layout does not fit the role it is meant for."""


class WeightsNotFound(WeightsError):
    """No weights are available for a command that needs them."""


def page4d_home() -> Path:
    """``$PAGE4D_HOME``, else ``~/.cache/page4d`` (read at call time, so tests can redirect it)."""
    env = os.environ.get("PAGE4D_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "page4d"


def registry_path() -> Path:
    """Where the registry JSON lives."""
    return page4d_home() / "registry.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RegistryEntry:
    """One registered weights file.

    ``layout`` is what the file holds (``pi3``, ``page4d``, ``page4d_ckpt150``, ``vggt``);
    ``layout_checked`` says whether it was read off the file (always, in this version).
    ``verified`` is True only when the content was checked
    against a hash the hub reported; ``verified_how`` says what was checked. ``source`` is
    ``"local"`` or a dict naming the hub endpoint, repo, file, requested revision and commit.
    """

    role: str
    path: str
    size: int
    layout: str
    layout_checked: bool
    verified: bool
    verified_how: str
    source: Any
    added: str = field(default_factory=_now)

    @classmethod
    def from_dict(cls, data: dict) -> "RegistryEntry":
        """Build from JSON, ignoring unknown keys so newer registries still load."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in names})

    def status(self) -> str:
        """``ok``, ``missing`` or ``size changed``: whether the file is still what was registered."""
        p = Path(self.path)
        if not p.is_file():
            return "missing"
        return "ok" if p.stat().st_size == self.size else "size changed"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize read-modify-write cycles between concurrent page4d processes (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # Windows: atomic replace still keeps the file whole
        yield
        return
    with open(path.with_suffix(".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Registry:
    """Read and update the registry file. Every method re-reads the file: it is tiny."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else registry_path()

    def _load(self) -> dict[str, list[RegistryEntry]]:
        if not self.path.exists():
            return {role: [] for role in ROLES}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            raw = data["entries"]
            entries = {role: [RegistryEntry.from_dict(e) for e in raw.get(role, [])] for role in ROLES}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(
                f"weights registry {self.path} is unreadable ({type(exc).__name__}: {exc}); "
                "fix or delete it, then re-run `page4d weights fetch` / `page4d weights add`"
            ) from None
        return entries

    def _save(self, entries: dict[str, list[RegistryEntry]]) -> None:
        data = {"version": REGISTRY_VERSION,
                "entries": {role: [asdict(e) for e in entries[role]] for role in ROLES}}
        # Write a temporary file and rename it, so a crash never leaves half a registry behind.
        fd, tmp = tempfile.mkstemp(prefix=".registry.", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def entries(self, role: str | None = None) -> list[RegistryEntry]:
        """All entries (of one role, or of every role in ROLES order), oldest first."""
        loaded = self._load()
        return list(loaded[role]) if role else [e for r in ROLES for e in loaded[r]]

    def add(self, entry: RegistryEntry) -> RegistryEntry:
        """Register ``entry`` as the newest of its role (an older entry for the same path goes)."""
        if entry.role not in ROLES:
            raise RegistryError(f"unknown role {entry.role!r}: use one of {', '.join(ROLES)}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path):
                loaded = self._load()
                kept = [e for e in loaded[entry.role] if e.path != entry.path]
                loaded[entry.role] = kept + [entry]
                self._save(loaded)
        except OSError as exc:
            raise RegistryError(
                f"cannot write the weights registry {self.path} ({exc.strerror or exc}); "
                "set PAGE4D_HOME to a writable folder"
            ) from None
        return entry

    def current(self, role: str) -> RegistryEntry | None:
        """The entry ``auto`` uses for ``role``: the newest one whose file still exists."""
        for entry in reversed(self.entries(role)):
            if Path(entry.path).is_file():
                return entry
        return None


# ---------------------------------------------------------------------------------------------
# Layout checks (the reader itself belongs to models.loading.checkpoint_io)


def detect_file_layout(path: Path) -> str:
    """The layout of the checkpoint at ``path``, read from its header only.

    Imported lazily: the reader needs torch and is only used when a file is added or fetched.
    """
    from models.loading import CheckpointError, detect_layout

    try:
        return str(detect_layout(path))
    except CheckpointError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LayoutError(f"{path} is not a usable checkpoint: {first}") from None


def check_role_layout(path: Path, role: str, layout: str) -> None:
    """Raise LayoutError unless ``layout`` can serve as ``role``."""
    layouts = accepted_layouts()  # layouts (``models.loading.layouts.detect_layout``) each role accepts
    accepted = layouts[role]
    if layout in accepted:
        return
    if layout == "pi3x":
        hint = ("; it is a Pi3X checkpoint, which page4d does not load: use Pi3 (yyfz233/Pi3 "
                "model.safetensors, `page4d weights fetch pi3`)")
    else:
        hint = next((f"; did you mean --as {r}?" for r, ls in layouts.items() if layout in ls), "")
    raise LayoutError(
        f"{path} has layout {layout!r}, but role {role!r} needs {' or '.join(accepted)}{hint}"
    )


def add_local(path: Path, role: str, registry: Registry | None = None) -> RegistryEntry:
    """Register a local checkpoint (for instance a user's ``checkpoint_150.pt``) as ``role``.

    The layout is read off the file and must fit the role (``pi3`` needs layout ``pi3``;
    ``page4d`` takes ``page4d``, ``page4d_ckpt150`` or ``vggt``; the entry records which). There is
    no published checksum for local files, so the entry is marked not verified.
    """
    if role not in ROLES:
        raise LayoutError(f"unknown role {role!r}: use --as pi3, --as page4d or --as finetuned")
    if role == "finetuned":  # a training run folder, checked by models.loading.finetuned
        from page4d_cli.weights.finetuned import add_finetuned

        return add_finetuned(path, registry)
    path = Path(os.path.abspath(Path(path).expanduser()))
    if not path.is_file():
        raise LayoutError(f"{path} does not exist or is not a file: check the path")
    layout = detect_file_layout(path)
    check_role_layout(path, role, layout)
    entry = RegistryEntry(
        role=role, path=str(path), size=path.stat().st_size, layout=layout, layout_checked=True,
        verified=False, verified_how="layout only (no published checksum for local files)",
        source="local",
    )
    return (registry or Registry()).add(entry)


# ---------------------------------------------------------------------------------------------
# Resolution: what every command that needs weights calls


@dataclass(frozen=True)
class WeightsSelection:
    """Which files a run loads. A ``None`` path means that part starts from random init.

    ``random`` is True when nothing pretrained is loaded at all (``--weights random``, for smoke
    runs). Layouts are known for registry entries and None for explicit paths (the loader reads
    them). ``notes`` says, one line each, where every part came from.
    """

    pi3_path: Path | None
    page4d_path: Path | None
    random: bool
    notes: tuple[str, ...] = ()
    pi3_layout: str | None = None
    page4d_layout: str | None = None


def resolve_weights(spec: str = "auto", pi3: Path | None = None, page4d: Path | None = None,
                    registry: Registry | None = None) -> WeightsSelection:
    """Decide which weights a command loads.

    - Explicit ``pi3`` / ``page4d`` paths always win (they must exist).
    - ``spec="random"``: the registry is not consulted; parts without an explicit path start from
      random init (``random`` is True when neither path is given).
    - ``spec="auto"``: parts without an explicit path come from the registry (newest existing
      entry per role). A part that is still missing starts from random init, with a note; if
      nothing at all is available, :class:`WeightsNotFound` is raised.
    """
    if spec not in ("auto", "random"):
        raise WeightsError(f"unknown --weights value {spec!r}: use auto or random")
    notes: list[str] = []
    chosen: dict[str, tuple[Path | None, str | None]] = {}
    reg = registry or Registry()
    for role, given in (("pi3", pi3), ("page4d", page4d)):
        if given is not None:
            given = Path(given).expanduser()
            if not given.is_file():
                raise WeightsNotFound(f"--{role} {given} does not exist: check the path")
            chosen[role] = (given, None)
            notes.append(f"{role}: {given} (given on the command line)")
            continue
        entry = reg.current(role) if spec == "auto" else None
        if entry is not None:
            chosen[role] = (Path(entry.path), entry.layout)
            how = "verified " + entry.verified_how if entry.verified else "not verified"
            notes.append(f"{role}: {entry.path} (registry, layout {entry.layout}, {how})")
        else:
            chosen[role] = (None, None)
            why = "--weights random" if spec == "random" else "nothing registered"
            notes.append(f"{role}: random init ({why})")
    if spec == "auto" and chosen["pi3"][0] is None and chosen["page4d"][0] is None:
        raise WeightsNotFound(
            f"no pretrained weights found (registry: {reg.path}): run `page4d weights fetch` "
            "(or `page4d weights add PATH --as pi3|page4d`), or pass `--weights random` for a smoke run"
        )
    return WeightsSelection(
        pi3_path=chosen["pi3"][0], page4d_path=chosen["page4d"][0],
        random=chosen["pi3"][0] is None and chosen["page4d"][0] is None,
        notes=tuple(notes), pi3_layout=chosen["pi3"][1], page4d_layout=chosen["page4d"][1],
    )
