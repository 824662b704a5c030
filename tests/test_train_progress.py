"""How training's progress looks (page4d_cli/reporters.py with the stages of page4d_cli/train/loop.py):
plain log lines carry the loss in the heartbeat, the ETA of a resumed run counts from its first step,
a stage that starts again (held-out evaluation every K steps) gets a new "done" line and a reset bar."""

from __future__ import annotations

import io

from rich.console import Console

from page4d_cli.reporters import PlainReporter, RichReporter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _plain(clock: Clock, show_progress: bool = True) -> tuple[PlainReporter, io.StringIO]:
    buffer = io.StringIO()
    return PlainReporter(Console(file=buffer, width=200), show_progress=show_progress, now=clock), buffer


def test_plain_heartbeat_has_the_loss_and_a_resumed_run_eta():
    clock = Clock()
    reporter, buffer = _plain(clock)
    reporter.stage("train", 100, 200)  # resumed at step 100
    clock.t = 31.0
    reporter.stage("train", 110, 200, "loss 0.5000 · lr 1.0e-05 · 3.10 s/step")
    clock.t = 40.0
    reporter.stage("train", 113, 200, "loss 0.4900 · lr 1.0e-05 · 3.00 s/step")  # within 30 s: no line
    clock.t = 300.0
    reporter.stage("train", 200, 200, "loss 0.1000 · lr 0.0e+00 · 3.00 s/step")
    lines = buffer.getvalue().splitlines()
    # 10 steps in 31 s -> 90 steps left take 279 s (not 31 / 110 per step, as if the run began at step 0)
    assert lines == ["page4d: training 110/200 · loss 0.5000 · lr 1.0e-05 · 3.10 s/step · elapsed 0:31 · eta 4:39",
                     "page4d: training done (200 steps) in 300.0 s · elapsed 5:00"]


def test_plain_stage_that_starts_again_gets_a_new_done_line():
    clock = Clock()
    reporter, buffer = _plain(clock)
    for at in (10.0, 50.0):
        clock.t = at
        reporter.stage("eval", 0, 1, "step 2")
        clock.t = at + 2.5
        reporter.stage("eval", 1, 1, "step 2")
    assert buffer.getvalue().splitlines() == ["page4d: evaluating done in 2.5 s · elapsed 0:12",
                                              "page4d: evaluating done in 2.5 s · elapsed 0:52"]


def test_plain_without_progress_keeps_notices():
    reporter, buffer = _plain(Clock(), show_progress=False)
    reporter.stage("train", 0, 2)
    reporter.stage("train", 2, 2, "loss 0.1")
    reporter.info("parameter groups:\n  new_no_decay  10 tensors")
    reporter.warning("step 1: non-finite loss or gradients, step skipped (weights unchanged)")
    assert buffer.getvalue().splitlines() == [
        "note: parameter groups:", "  new_no_decay  10 tensors",
        "warning: step 1: non-finite loss or gradients, step skipped (weights unchanged)"]


def test_rich_bar_of_a_stage_that_starts_again_is_reset():
    buffer = io.StringIO()
    reporter = RichReporter(Console(file=buffer, force_terminal=True, width=120))
    with reporter:
        reporter.stage("train", 3, 10, "loss 0.3000")
        reporter.stage("eval", 0, 1, "step 3")
        reporter.stage("eval", 1, 1, "step 3")
        task = next(t for t in reporter.bars.tasks if t.id == reporter.tasks["eval"])
        assert task.finished
        reporter.stage("eval", 0, 1, "step 6")
        assert not task.finished and task.completed == 0 and task.fields["detail"] == "step 6"
        reporter.bars.refresh()
    screen = buffer.getvalue()
    assert "training" in screen and "evaluating" in screen and "loss 0.3000" in screen
