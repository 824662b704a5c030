"""The ``page4d`` executable: signal handling first, then the command line (imported lazily).

The console script points here rather than at ``page4d_cli.main`` so that a Ctrl-C (or SIGTERM)
at ANY moment, including while Python imports typer, torch or open3d, ends with one line and the
shell's exit code (130 for Ctrl-C, 143 for SIGTERM) instead of a traceback. Commands that have more
to say (``reconstruct``: "no output was written") print their own line and mark it reported.
"""

from __future__ import annotations

import sys

from page4d_cli import signals


def _interrupted_line(signum: int) -> None:
    signals.ignore()  # a second Ctrl-C while we say goodbye changes nothing
    if not signals.reported():
        sys.stderr.write(f"error: interrupted ({signals.NAMES.get(signum, f'signal {signum}')})\n")
        sys.stderr.flush()


def main() -> None:
    signals.install()
    try:
        from page4d_cli.main import app

        app()  # standalone mode: always leaves through SystemExit
    except SystemExit as exc:
        signum = signals.received()
        if signum is None:
            raise
        _interrupted_line(signum)
        code = exc.code if exc.code in (signals.exit_code(signum),) else signals.exit_code(signum)
        raise SystemExit(code) from None
    except BaseException as exc:  # noqa: BLE001 - only interrupts are handled, the rest re-raised
        signum = signals.signal_of(exc)
        if signum is None:
            raise
        _interrupted_line(signum)
        raise SystemExit(signals.exit_code(signum)) from None


if __name__ == "__main__":
    main()
