"""What windowing costs: network time and peak memory of ``reconstruct`` for one pass vs. windows.

    python benchmarks/bench_windows.py [--repeats 2] [--preset tiny] [--size 224] [--threads 1]

Clip: ``examples/cams`` (T = 24 instants x V = 4 cameras, 224 x 168), random weights, no previews.
Each configuration runs in a fresh Python process (so its peak RSS is its own), the configurations
interleaved (A B C D A B C D ...) so that load from other jobs on a shared machine hits all of them alike.

Reported per configuration (median over the repeats):
- windows, and instants computed (T + (windows - 1) x overlap);
- expected cost = instants computed / T, i.e. one pass x (1 + overlap / (window - overlap));
- network CPU seconds (process CPU time from the first network step to the end of stitching; with
  ``--threads 1`` this is insensitive to other jobs, unlike wall time, also shown) and its ratio to one pass;
- peak RSS at the end of the network stage (what ``--max-images-per-pass`` bounds) and of the whole run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
from pathlib import Path
from page4d_cli.pipeline.reconstruct import Reporter, ReconstructOptions, reconstruct

def vm_hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

class Clock(Reporter):
    def __init__(self):
        self.marks, self.current = {}, None
    def stage(self, name, done, total, detail=""):
        if name != self.current:
            self.marks[name] = (time.process_time(), time.perf_counter(), vm_hwm())
            self.current = name

clock = Clock()
options = ReconstructOptions(frames=24, preset=sys.argv[2], weights="random", size=int(sys.argv[3]), preview=False,
                             max_images_per_pass=int(sys.argv[4]), overlap=int(sys.argv[6]), out=Path(sys.argv[1]))
result = reconstruct(str(Path(sys.argv[7])), options, progress=clock)
after = next(name for name in ("write", "export") if name in clock.marks)
cpu0, wall0, _ = clock.marks["network"]
cpu1, wall1, network_peak = clock.marks[after]
print(json.dumps({"windows": result.windows, "network_cpu_s": cpu1 - cpu0, "network_wall_s": wall1 - wall0,
                  "network_peak_rss": network_peak, "run_peak_rss": vm_hwm()}))
"""


def run_once(out: Path, preset: str, size: int, images_per_pass: int, threads: int, overlap: int) -> dict:
    command = [sys.executable, "-c", CHILD, str(out), preset, str(size), str(images_per_pass), str(threads),
               str(overlap), str(REPO / "examples" / "cams")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configs = [(128, 2), (48, 2), (32, 2), (16, 1)]  # (images per pass, overlap); 128 = one pass of 24 x 4
    results: dict = {config: [] for config in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for k, (images, overlap) in enumerate(configs):
                out = Path(tmp) / f"r{repeat}_{k}"
                results[(images, overlap)].append(run_once(out, args.preset, args.size, images, args.threads, overlap))
                print(f"repeat {repeat + 1}, {images} images/pass: {results[(images, overlap)][-1]}", file=sys.stderr)
    base_cpu = statistics.median(r["network_cpu_s"] for r in results[configs[0]])
    print(f"\nT = 24, V = 4, {args.preset} preset at {args.size} px, {args.threads} thread(s), "
          f"median of {args.repeats} interleaved runs\n")
    print("| images/pass | overlap | windows | instants computed | expected cost | network CPU s | ratio | "
          "network wall s | peak RSS, network | peak RSS, run |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for images, overlap in configs:
        rows = results[(images, overlap)]
        windows = rows[0]["windows"]
        computed = sum(stop - start for start, stop in windows)
        cpu = statistics.median(r["network_cpu_s"] for r in rows)
        wall = statistics.median(r["network_wall_s"] for r in rows)
        network_mb = statistics.median(r["network_peak_rss"] for r in rows) / 1e6
        run_mb = statistics.median(r["run_peak_rss"] for r in rows) / 1e6
        print(f"| {images} | {overlap if len(windows) > 1 else '-'} | {len(windows)} | {computed} | "
              f"{computed / 24:.2f} | {cpu:.1f} | {cpu / base_cpu:.2f} | {wall:.1f} | {network_mb:.0f} MB | "
              f"{run_mb:.0f} MB |")


if __name__ == "__main__":
    main()
