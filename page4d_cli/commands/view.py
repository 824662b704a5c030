"""``page4d view OUT``: a reconstruction folder in Rerun (thin shell over :func:`page4d_cli.view.view`).

Nothing heavy at module level (no rerun, no numpy work): ``page4d --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from page4d_cli.commands import summary
from page4d_cli.commands.reconstruct import OFF
from page4d_cli.console import fail

EXIT_INTERRUPTED = 130
# The library's defaults (page4d_cli.view.session imports numpy, so not here); a test checks they agree.
DEFAULT_MAX_POINTS = 500_000
DEFAULT_WEB_PORT = 9090

HELP = "\n\n".join([
    summary("view"),
    "A timeline over the sampled instants, the fused point cloud of each instant, every camera's frustum "
    "with its input frame, depth map and dynamic mask, the camera trajectories and the world axes.",
    "Default: the native viewer (needs a display). --save FILE.rrd writes a recording to open later with "
    "`rerun FILE.rrd` (headless servers); --web serves the web viewer from this process until Ctrl-C. "
    "Needs the optional extra: pip install 'page4d\\[view]'.",  # \\[ : not Rich markup
])


def run_view(out_dir: Path, save: Optional[Path] = None, web: bool = False, max_points: Optional[int] = None,
             web_port: Optional[int] = None, open_browser: bool = True, quiet: bool = False,
             overwrite: bool = False) -> None:
    """Log ``out_dir`` with a progress bar, then (web mode) serve until Ctrl-C.

    A ``Page4DError`` propagates (the root group prints its one line); Ctrl-C exits with 130.

    Shared by ``page4d view`` and ``page4d reconstruct --view``.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from page4d_cli.view import ViewOptions, view
    from page4d_cli.view.session import serve_forever

    err = Console(stderr=True)
    try:
        options = ViewOptions(save=save, overwrite=overwrite, web=web, max_points=max_points, web_port=web_port,
                              open_browser=open_browser)
        bars = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                        TimeRemainingColumn(compact=True, elapsed_when_finished=True), console=err, disable=quiet)
        task = bars.add_task("logging to Rerun", total=None)

        def tick(done: int, total: int) -> None:
            if done == 1:
                bars.start()  # only once logging runs: an error while checking leaves no empty bar
            bars.update(task, completed=done, total=total)

        try:
            result = view(out_dir, options, progress=tick)
        finally:
            bars.stop()
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED, console=err)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if result.mode == "save":
        if not quiet:
            Console().print(f"wrote {save} ({result.num_instants} instants x {result.num_cameras} cameras); "
                            f"open it with: rerun {save}", highlight=False, soft_wrap=True)
        return
    if result.mode == "web":
        Console().print(f"web viewer: {result.address}  (served by this process; Ctrl-C stops it)",
                        highlight=False, soft_wrap=True)
        try:
            serve_forever()
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


app = typer.Typer(add_completion=False)


@app.command("view", help=HELP)
def view_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Output folder of page4d reconstruct.", show_default=False)],
    save: Annotated[Optional[Path], typer.Option(
        "--save", help="Write a Rerun recording (FILE.rrd) instead of opening a viewer.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", show_default=OFF, help=(
        "Replace an existing --save file."))] = False,
    web: Annotated[bool, typer.Option("--web", show_default=OFF, help=(
        "Serve the web viewer (local port) instead of the native one."))] = False,
    max_points: Annotated[int, typer.Option("--max-points", help=(
        "Most points shown per instant (uniform random subsample); 0 = all."))] = DEFAULT_MAX_POINTS,
    web_port: Annotated[Optional[int], typer.Option(
        help="Port of the web viewer (--web).", show_default=str(DEFAULT_WEB_PORT))] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", show_default=OFF, help=(
        "With --web: do not open a browser."))] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", show_default=OFF, help="No progress bar.")]
    = False,
) -> None:
    """See HELP."""
    run_view(out_dir, save=save, web=web, max_points=max_points or None, web_port=web_port,
             open_browser=not no_browser, quiet=quiet, overwrite=overwrite)
