"""How long opening a big checkpoint and listing its tensors takes, and how much of it is read.

Writes a synthetic checkpoint of each format (real key names; sizes chosen to reach the requested
file size), then times ``open_checkpoint`` + ``keys()`` + every ``shape()``, reports the bytes read,
page faults and RSS growth during that (all should be tiny next to the file), and the time to get one
large tensor. ``--full`` writes the real full-size layouts instead (Pi3 3.8 GB safetensors, PAGE-4D
5.0 GB .pt; the .pt needs ~5 GB of RAM while it is written).

    python benchmarks/bench_checkpoint_open.py --gb 1.5 --dir /tmp
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

from models.loading.checkpoint_io import open_checkpoint
from models.loading.layouts import detect_layout
from models.loading.synthetic import synthetic_specs, write_synthetic


def _counters() -> tuple[int, int, int]:
    """(bytes read by read(), page faults, RSS bytes) of this process."""
    rchar = next(int(line.split()[1]) for line in Path("/proc/self/io").read_text().splitlines()
                 if line.startswith("rchar"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
    return rchar, usage.ru_minflt + usage.ru_majflt, rss


def _sizes_for(gb: float) -> dict:
    """PAGE-4D-layout sizes (ViT-L width) whose float32 file is at most about ``gb`` GB: fewer
    aggregator layers first, then fewer encoder blocks. The smallest is ~1.3 GB (the heads)."""
    def file_gb(sizes: dict) -> float:
        return sum(math.prod(s) for _, s in synthetic_specs("page4d", **sizes)) * 4 / 1e9

    sizes = dict(embed_dim=1024, encoder_depth=24, depth=24, track_head=False)
    for key in ("depth", "encoder_depth"):
        while sizes[key] > 1 and file_gb(sizes) > gb:
            sizes[key] -= 1
    return sizes


def measure(path: Path) -> dict:
    read0, faults0, rss0 = _counters()
    t0 = time.perf_counter()
    with open_checkpoint(path) as reader:
        keys = reader.keys()
        for key in keys:
            reader.shape(key)
        t_list = time.perf_counter() - t0
        read1, faults1, rss1 = _counters()
        layout = detect_layout(reader)
        big = max(keys, key=reader.numel)
        t1 = time.perf_counter()
        reader.get(big).sum()  # materialise one tensor
        t_get = time.perf_counter() - t1
        largest = f"{big} {list(reader.shape(big))}"
    return {
        "file_gb": path.stat().st_size / 1e9, "tensors": len(keys), "layout": layout,
        "open_list_s": t_list, "read_mb": (read1 - read0) / 1e6,
        "faulted_mb": (faults1 - faults0) * resource.getpagesize() / 1e6, "rss_growth_mb": (rss1 - rss0) / 1e6,
        "get_largest_s": t_get, "largest": largest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.5, help="approximate file size per format")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--full", action="store_true", help="write the real full-size Pi3 / PAGE-4D layouts")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args()

    jobs = (
        [("pi3", "safetensors", {}), ("page4d", "torch", {})] if args.full
        else [("page4d", "safetensors", _sizes_for(args.gb)), ("page4d", "torch", _sizes_for(args.gb))]
    )
    for layout, fmt, sizes in jobs:
        path = Path(args.dir) / f"bench_{layout}.{'safetensors' if fmt == 'safetensors' else 'pt'}"
        t0 = time.perf_counter()
        write_synthetic(path, layout, fmt, **sizes)
        t_write = time.perf_counter() - t0
        try:
            result = measure(path)
        finally:
            if not args.keep:
                path.unlink()
        print(f"{fmt:12s} write {t_write:6.1f}s | " + " | ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
