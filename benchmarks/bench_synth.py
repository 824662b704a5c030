"""Time of ``page4d data synth`` (default 64 clips x 4 cameras x 8 frames at 112x84): rendering only, and
rendering + writing with 1 and 2 worker processes, interleaved (A B C A B C ...) so a busy machine slows all
variants alike. Reports wall time AND CPU time (this process + its workers): on a machine shared with other
jobs the wall time measures the contention, the CPU time what the work costs (about the wall time on idle
cores for 1 worker). Also prints the load average, to say how shared the CPU was.

    python benchmarks/bench_synth.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time

from page4d_cli.data.synth import SynthOptions, make_scene, render_clip, synth_clips


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(work) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    work()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def render_all(options: SynthOptions) -> None:
    for index in range(options.clips):
        render_clip(make_scene(options, index))


def write_all(options: SynthOptions, folder: str) -> None:
    target = os.path.join(folder, "clips")
    shutil.rmtree(target, ignore_errors=True)
    synth_clips(target, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=112)
    parser.add_argument("--height", type=int, default=84)
    args = parser.parse_args()
    base = dict(clips=args.clips, cameras=args.cameras, frames=args.frames, width=args.width, height=args.height)
    variants = {
        "render only, 1 process": lambda folder: render_all(SynthOptions(**base)),
        "render + write, 1 worker": lambda folder: write_all(SynthOptions(**base, workers=1), folder),
        "render + write, 2 workers": lambda folder: write_all(SynthOptions(**base, workers=2), folder),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    loads = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, run in variants.items():
                loads.append(os.getloadavg()[0])
                times[name].append(timed(lambda: run(folder)))
    print(f"{args.clips} clips x {args.cameras} cameras x {args.frames} frames at {args.width}x{args.height}; "
          f"{os.cpu_count()} CPUs; 1-min load average during the runs {min(loads):.1f}-{max(loads):.1f}\n")
    print("| variant | wall median (s) | wall min (s) | CPU median (s) | CPU per clip (ms) | rounds |")
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"| {name} | {wall:.1f} | {min(v[0] for v in values):.1f} | {cpu:.1f} | {1000 * cpu / args.clips:.0f} "
              f"| {len(values)} |")


if __name__ == "__main__":
    main()
