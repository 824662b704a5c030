"""Runs ``page4d`` (through its console-script entry point) in a child process, with one test hook.

    python tests/reconstruct_driver.py <hook> <page4d arguments...>

Hooks (so a signal test can hit an exact moment instead of guessing a delay):

- ``none``: run as the ``page4d`` script would.
- ``pause-writing:<ready file>``: after the outputs are written into the temporary folder (before
  run.json and the final rename), create ``<ready file>`` and wait; the test then sends a signal.
- ``interrupt-import:<module>``: send SIGINT to this process as Python starts importing ``<module>``
  (Ctrl-C pressed during that import).
"""

from __future__ import annotations

import importlib.abc
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _InterruptOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, module: str) -> None:
        self.module = module
        self.fired = False

    def find_spec(self, name, path=None, target=None):
        if name == self.module and not self.fired:
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)
        return None  # let the real finders import it (if the interrupt did not stop us)


def _pause_after_writing(ready: Path) -> None:
    from page4d_cli.pipeline import reconstruct as pipeline

    real_export = pipeline.export_reconstruction

    def export_then_wait(tmp, *args, **kwargs):
        files = real_export(tmp, *args, **kwargs)
        ready.write_text(str(tmp))
        for _ in range(1200):  # at most 2 minutes; the test signals long before
            time.sleep(0.1)
        return files

    pipeline.export_reconstruction = export_then_wait


def main() -> None:
    hook, args = sys.argv[1], sys.argv[2:]
    sys.argv = ["page4d", *args]
    if hook.startswith("interrupt-import:"):
        sys.meta_path.insert(0, _InterruptOnImport(hook.split(":", 1)[1]))
    from page4d_cli import entry

    if hook.startswith("pause-writing:"):
        entry.signals.install()
        _pause_after_writing(Path(hook.split(":", 1)[1]))
    entry.main()


if __name__ == "__main__":
    main()
