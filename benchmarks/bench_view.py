"""Does ``page4d view --save`` stream? Peak memory and time against the number of instants.

Writes synthetic reconstruction folders (the real export path: PLYs, 16-bit depth, masks, cameras.json,
previews' input frames) of 4 cameras at 224 x 168 with every pixel kept as a point (~150 000 points per
instant), for each ``--instants`` value, then runs ``page4d view OUT --save X.rrd --max-points 0`` in a
fresh interpreter and reports its wall time, peak RSS (the child's VmHWM) and the .rrd size. If the
viewer held the whole output in memory, peak RSS would grow with the instants; logging one instant at a
time keeps it flat.

    python benchmarks/bench_view.py --instants 12 48 --dir /tmp
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The measured run: `page4d view OUT --save RRD --max-points 0` in a fresh interpreter, then its peak RSS (KB).
_CHILD = """
import sys
from page4d_cli.main import app
out, rrd = sys.argv[1:3]
try:
    app(["view", out, "--save", rrd, "--max-points", "0", "-q"])
except SystemExit as exit:
    if exit.code:
        raise
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would report its parent's peak
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_output(out: Path, num_instants: int) -> int:
    """A synthetic output folder; returns the number of PLY points written per instant (first instant)."""
    from bench_preview import synthetic_clip

    from page4d_cli.pipeline.export import PointFilter
    from page4d_cli.pipeline.write_outputs import ExportOptions, export_reconstruction
    from page4d_cli.preview.write import write_input_frames

    pred, batch = synthetic_clip(num_instants, 4, original=(224, 168), width=224)
    options = ExportOptions(point_filter=PointFilter(conf_percentile=0.0, edge_rel_threshold=None))
    files = export_reconstruction(out, pred, batch, options)
    write_input_frames(out, batch)
    return files["points"]["num_points"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instants", type=int, nargs="+", default=[12, 48])
    parser.add_argument("--dir", type=Path, default=None, help="where the folders are written (temporary)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for num_instants in args.instants:
            out = Path(tmp) / f"out_{num_instants}"
            points = make_output(out, num_instants)
            rrd = Path(tmp) / f"view_{num_instants}.rrd"
            os.sync()  # the folder's writeback must not compete with the measured run
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(rrd)], cwd=REPO, check=True,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - start
            peak_kb = int(done.stdout.strip().splitlines()[-1])
            ply_mb = sum(p.stat().st_size for p in (out / "points").iterdir()) / 1e6
            rows.append((num_instants, points, ply_mb, wall, peak_kb / 1024, rrd.stat().st_size / 1e6))
            rrd.unlink()
    print("page4d view --save --max-points 0; 4 cameras at 224x168; each row a fresh interpreter")
    print(f"{'instants':>8} {'points/inst':>12} {'PLY MB':>8} {'wall s':>8} {'peak RSS MB':>12} {'rrd MB':>8}")
    for num_instants, points, ply_mb, wall, peak, rrd_mb in rows:
        print(f"{num_instants:>8} {points:>12} {ply_mb:>8.0f} {wall:>8.1f} {peak:>12.0f} {rrd_mb:>8.0f}")


if __name__ == "__main__":
    main()
