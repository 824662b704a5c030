"""``page4d weights fetch | add | list``: get pretrained weights and see which ones are registered.

Thin shell over :mod:`page4d_cli.weights`; every error of that package is a ``Page4DError``, printed
as one line by ``page4d_cli.main`` (exit code 1).
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from page4d_cli.commands import summary
from page4d_cli.weights.catalog import format_size, select
from page4d_cli.weights.registry import Registry, add_local

app = typer.Typer(
    help="\n\n".join([summary("weights"), "Fetch them from the Hugging Face hub, register local files, list them."]),
    no_args_is_help=True,
    add_completion=False,
)


class Which(str, Enum):
    pi3 = "pi3"
    page4d = "page4d"
    all = "all"
    vggt = "vggt"


class Variant(str, Enum):
    mask = "mask"
    nomask = "nomask"


class Role(str, Enum):
    pi3 = "pi3"
    page4d = "page4d"
    finetuned = "finetuned"


_FETCH_HELP = "\n\n".join([
    "Download weights into the Hugging Face cache, verify them and register them.",
    "Honours HF_ENDPOINT, HF_HOME / HF_HUB_CACHE and HF_TOKEN (or --token). An interrupted download "
    "(Ctrl-C, lost connection, killed process) is resumed by the next fetch of the same file.",
    "Licence terms are printed before anything is downloaded; a file under a licence (Pi3: "
    "CC BY-NC 4.0) needs --accept-licence / -y, or a 'yes' when asked in a terminal.",
])

_ADD_HELP = "\n\n".join([
    "Register a local checkpoint (e.g. checkpoint_150.pt) after checking its layout.",
    "--as pi3 needs a Pi3 file; --as page4d takes a PAGE-4D (official or checkpoint_150) or a "
    "VGGT-1B file; --as finetuned takes a `page4d train` run folder (or its weights.safetensors), "
    "overlaid as stage 4 when it trained the network being built. The newest registered file of a role "
    "is the one commands use.",
])


@app.command("fetch", help=_FETCH_HELP)
def fetch_cmd(
    which: Annotated[Which, typer.Argument(
        help="pi3, page4d, all (= pi3 + page4d) or vggt (VGGT-1B as the page4d part).")] = Which.all,
    variant: Annotated[Variant, typer.Option(
        help="PAGE-4D file: mask (checkpoint_mask.pt) or nomask (checkpoint_nomask.pt).")] = Variant.mask,
    accept_licence: Annotated[bool, typer.Option(
        "--accept-licence", "-y",
        help="Accept the printed licence terms (Pi3: CC BY-NC 4.0, non-commercial) without asking.")] = False,
    token: Annotated[Optional[str], typer.Option(
        help="Hugging Face token (default: HF_TOKEN or the saved `hf auth login`).")] = None,
    revision: Annotated[str, typer.Option(help="Hub branch, tag or commit.")] = "main",
) -> None:
    """See _FETCH_HELP."""
    from page4d_cli import signals
    from page4d_cli.console import fail
    from page4d_cli.reporters import make_reporter
    from page4d_cli.weights.fetch import fetch_weights  # pulls in huggingface_hub: only here
    from page4d_cli.weights.fetch_errors import FetchInterrupted

    err = Console(stderr=True)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    confirm = (lambda question: typer.confirm(question, default=False)) if interactive else None
    try:
        with make_reporter(err) as reporter:
            entries = fetch_weights(select(which.value, variant.value), accept_licence=accept_licence,
                                    confirm=confirm, token=token, revision=revision, reporter=reporter)
    except KeyboardInterrupt as exc:  # FetchInterrupted says what was and was not registered
        signum = signals.signal_of(exc) or signal.SIGINT
        signals.mark_reported()
        what = exc.message if isinstance(exc, FetchInterrupted) else "nothing was registered"
        fail(f"interrupted ({signals.NAMES.get(signum, signum)}); {what}", signals.exit_code(signum), err)
    Console().print(f"done: {len(entries)} file(s) registered in {Registry().path}", highlight=False)


@app.command("add", help=_ADD_HELP)
def add_cmd(
    path: Annotated[Path, typer.Argument(help="Local checkpoint (.safetensors or .pt), or a training run folder.")],
    role: Annotated[Role, typer.Option("--as", help="Which part of the network it feeds.")],
) -> None:
    """See _ADD_HELP."""
    entry = add_local(path, role.value)
    Console().print(f"registered {entry.path} as {entry.role} (layout {entry.layout}, "
                    f"{format_size(entry.size)})", highlight=False, soft_wrap=True)


@app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the registered weights; 'use' marks the file each role loads by default."""
    registry = Registry()
    entries = registry.entries()
    current = {role: registry.current(role) for role in ("pi3", "page4d", "finetuned")}
    rows = []
    for entry in entries:
        row = asdict(entry)
        row["status"] = entry.status()
        chosen = current.get(entry.role)
        row["selected"] = chosen is not None and chosen.path == entry.path
        rows.append(row)
    if as_json:
        typer.echo(json.dumps({"registry": str(registry.path), "entries": rows}, indent=1))
        return
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"No weights registered ({registry.path}). Run `page4d weights fetch` or "
                      "`page4d weights add PATH --as pi3|page4d`.", markup=False, highlight=False)
        return
    table = Table(title=f"weights registry: {registry.path}")
    for name in ("use", "role", "layout", "path", "size", "verified", "file"):
        table.add_column(name, overflow="fold")
    for row in rows:
        verified = ("yes: " if row["verified"] else "no: ") + row["verified_how"]
        table.add_row("*" if row["selected"] else "", row["role"], row["layout"], row["path"],
                      format_size(row["size"]), verified, row["status"])
    console.print(table)
