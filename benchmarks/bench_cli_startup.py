"""Wall time of light CLI invocations, each in a fresh interpreter: ``page4d --help`` and
``page4d weights list`` (target <= 0.5 s), next to ``python -c "import torch"`` for scale.

The runs are interleaved (A B C A B C ...) so that a busy machine slows all of them alike; the table
gives the median and the minimum over the rounds, and each invocation's median as a ratio of the
torch import. PAGE4D_HOME points at an empty temporary folder, so ``weights list`` reads no registry.

    python benchmarks/bench_cli_startup.py --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "page4d --help": [sys.executable, "-m", "page4d_cli.main", "--help"],
    "page4d weights list": [sys.executable, "-m", "page4d_cli.main", "weights", "list"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="runs of each case, interleaved")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, PAGE4D_HOME=home)
        for _ in range(args.rounds):
            for name, command in CASES.items():
                start = time.perf_counter()
                subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - start)
    torch_median = statistics.median(times["python -c 'import torch'"])
    print(f"{'invocation':<28} {'median s':>9} {'min s':>7} {'/ torch import':>15}   ({args.rounds} rounds)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<28} {median:>9.3f} {min(values):>7.3f} {median / torch_median:>15.2f}")


if __name__ == "__main__":
    main()
