"""How the commands (``reconstruct``, ``train``, ``weights fetch``) show progress: Rich bars on a
terminal, plain lines in a log.

Both classes implement the pipeline's reporter protocol (``page4d_cli.pipeline.types.Reporter``:
``stage``, ``warning``, ``info``, ``window_done``). :func:`make_reporter` picks one: bars when stderr is a terminal, else
one line per finished stage and per finished network window (with elapsed time and ETA), plus a
heartbeat line (with the stage's detail, e.g. training's loss) while a long stage runs, so the log of
a 20-minute batch job shows life. A stage that reports less than it had done starts again (training's
held-out evaluation runs every K steps): a new bar state, a new "done" line.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

STAGE_LABELS = {"read": "decoding", "load": "loading network", "network": "network", "write": "writing",
                "train": "training", "eval": "evaluating"}
STAGE_UNITS = {"read": "sample", "network": "step", "write": "file", "train": "step"}
HEARTBEAT_S = 30.0  # plain mode: at most one "still running" line per stage this often


def plural(count: float, word: str) -> str:
    """``1 instant``, ``2 instants`` (``count`` printed as an integer when it is one)."""
    number = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{number} {word}" if count == 1 else f"{number} {word}s"


def clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Notices:
    """``warning`` (yellow) and ``info`` (cyan, hidden with --quiet), one line each."""

    console: Console
    show_info: bool

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)

    def info(self, message: str) -> None:
        if self.show_info:
            self.console.print(f"[cyan]note:[/] {escape(message)}", soft_wrap=True, highlight=False)

    def window_done(self, index: int, count: int, start: int, stop: int) -> None:
        pass


class EtaColumn(TimeRemainingColumn):
    """Time remaining while a stage runs; blank once it ended (neither 0:00 nor the elapsed time)."""

    def render(self, task):
        return Text("") if task.finished else super().render(task)


class RichReporter(_Notices):
    """Draws the stages as Rich progress bars; the ETA column is blank once a stage has ended."""

    def __init__(self, console: Console, show_progress: bool = True, show_info: bool = True) -> None:
        self.console = console
        self.show_info = show_info
        self.bars = Progress(SpinnerColumn(), TextColumn("{task.description:<15}"), BarColumn(bar_width=24),
                             MofNCompleteColumn(), TextColumn("eta"),
                             EtaColumn(compact=True),
                             TextColumn("[dim]{task.fields[detail]}"), console=console, disable=not show_progress)
        self.tasks: dict[str, int] = {}
        self.done: dict[str, float] = {}

    def __enter__(self) -> "RichReporter":
        return self

    def __exit__(self, *exc) -> None:
        if self.tasks:
            self.bars.stop()

    def stage(self, name: str, done: float, total: Optional[float], detail: str = "") -> None:
        if not self.tasks:
            self.bars.start()  # on first use: an error before any stage leaves no empty progress block
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(STAGE_LABELS.get(name, name), total=total, detail="")
        elif done < self.done[name]:  # the stage starts again: fresh speed and ETA
            self.bars.reset(self.tasks[name], total=total, completed=done, detail=detail)
            self.done[name] = done
            return
        self.done[name] = done
        self.bars.update(self.tasks[name], completed=done, total=total, detail=detail)


class PlainReporter(_Notices):
    """One line per finished stage and per finished window, for logs (stderr is not a terminal).

    ``page4d: network window 2/4 done (instants 5-10) · elapsed 1:20 · eta 2:40``
    """

    def __init__(self, console: Console, show_progress: bool = True, show_info: bool = True,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.show_progress = show_progress
        self.show_info = show_info
        self.now = now
        self.started = now()
        self.stage_started: dict[str, float] = {}
        self.finished: set[str] = set()
        self.last_line: dict[str, float] = {}
        self.progress: dict[str, tuple[float, Optional[float]]] = {}
        self.first_done: dict[str, float] = {}  # a resumed training starts at its step: the ETA counts from there
        self.windowed = False  # the network stage reports per window: its own "done" line would repeat the last

    def __enter__(self) -> "PlainReporter":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _line(self, text: str) -> None:
        if self.show_progress:
            self.console.print(f"page4d: {escape(text)}", soft_wrap=True, highlight=False)

    def _eta(self, name: str, done: float, total: Optional[float]) -> str:
        if not total or done <= 0 or done >= total:
            return ""
        spent, progressed = self.now() - self.stage_started[name], done - self.first_done[name]
        return f" · eta {clock(spent * (total - done) / progressed)}" if progressed > 0 else ""

    def stage(self, name: str, done: float, total: Optional[float], detail: str = "") -> None:
        now = self.now()
        if name in self.progress and done < self.progress[name][0]:  # the stage starts again
            for state in (self.stage_started, self.last_line, self.first_done):
                state.pop(name, None)
            self.finished.discard(name)
        self.stage_started.setdefault(name, now)
        self.last_line.setdefault(name, now)
        self.first_done.setdefault(name, done)
        self.progress[name] = (done, total)
        label = STAGE_LABELS.get(name, name)
        if total is not None and done >= total and name not in self.finished:
            self.finished.add(name)
            if name == "network" and self.windowed:
                return
            unit = STAGE_UNITS.get(name)
            count = f" ({plural(int(total), unit)})" if unit else ""
            self._line(f"{label} done{count} in {now - self.stage_started[name]:.1f} s · "
                       f"elapsed {clock(now - self.started)}")
        elif name not in self.finished and now - self.last_line[name] >= HEARTBEAT_S:
            self.last_line[name] = now
            where = f"{done:g}/{total:g}" if total else "running"
            about = f" · {detail}" if detail else ""
            self._line(f"{label} {where}{about} · elapsed {clock(now - self.started)}{self._eta(name, done, total)}")

    def window_done(self, index: int, count: int, start: int, stop: int) -> None:
        """Window ``index`` (1-based) of ``count`` finished; ETA from the mean time per window so far."""
        if count <= 1:
            return
        self.windowed = True
        now = self.now()
        spent = now - self.stage_started.get("network", now)
        eta = f" · eta {clock(spent / index * (count - index))}" if index < count else ""
        self._line(f"network window {index}/{count} done (instants {start}-{stop - 1}) · "
                   f"elapsed {clock(now - self.started)}{eta}")


def make_reporter(console: Console, show_progress: bool = True, show_info: bool = True):
    """Rich bars on a terminal, plain lines otherwise (pipes, files, batch schedulers)."""
    kind = RichReporter if console.is_terminal else PlainReporter
    return kind(console, show_progress=show_progress, show_info=show_info)
