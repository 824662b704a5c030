"""Wall time of light CLI invocations, each in a fresh interpreter: ``page4d --help`` and
``page4d weights list`` (target <= 0.5 s), ``page4d reconstruct --help`` (the largest command's own
help), next to ``python -c "import torch"`` for scale.

The runs are interleaved (A B C A B C ...) so that a busy machine slows all of them alike; the table
gives the median and the minimum wall time over the rounds, the median CPU time (user + system of the
child process: what the invocation itself costs, less sensitive to other jobs on the machine), and each
invocation's median wall time as a ratio of the torch import. PAGE4D_HOME points at an empty temporary
folder, so ``weights list`` reads no registry.

    python benchmarks/bench_cli_startup.py --rounds 7
    python benchmarks/bench_cli_startup.py --baseline /tmp/old   # also time a checkout of an older commit
                                                                 # (git archive REV | tar -x -C /tmp/old)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# ``python -m page4d_cli.entry`` is what the ``page4d`` console script runs (signal handling, then the CLI).
PAGE4D = [sys.executable, "-m", "page4d_cli.entry"]
CASES = {
    "page4d --help": [*PAGE4D, "--help"],
    "page4d weights list": [*PAGE4D, "weights", "list"],
    "page4d reconstruct --help": [*PAGE4D, "reconstruct", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="runs of each case, interleaved")
    parser.add_argument("--baseline", help="a checkout of another version: its invocations join the rounds")
    args = parser.parse_args()
    cases = {name: (command, None) for name, command in CASES.items()}
    if args.baseline:
        for name in ("page4d --help", "page4d weights list"):
            cases[f"baseline: {name}"] = (CASES[name], args.baseline)
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, PAGE4D_HOME=home)
        for _ in range(args.rounds):
            for name, (command, cwd) in cases.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               check=True)
                times[name].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    torch_median = statistics.median(times["python -c 'import torch'"])
    print(f"{'invocation':<38} {'median s':>9} {'min s':>7} {'cpu s':>7} {'/ torch import':>15}   "
          f"({args.rounds} rounds)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<38} {median:>9.3f} {min(values):>7.3f} {statistics.median(cpu[name]):>7.3f} "
              f"{median / torch_median:>15.2f}")


if __name__ == "__main__":
    main()
