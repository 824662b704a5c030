"""Peak resident memory and time of loading the FULL network from full-size checkpoints.

Writes full-size synthetic checkpoints with the real key names (Pi3 ``model.safetensors`` ~3.8 GB,
PAGE-4D ``checkpoint_mask.pt`` ~5 GB; kept in --dir for reuse), then loads them in a fresh subprocess
per configuration and reports the peak RSS (VmHWM, reset at the child's start) against the model's own size in memory.
The target is peak < 1.3 x model size.

    python benchmarks/bench_load_memory.py --dir /tmp/page4d_bench          # ~9 GB of disk
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, torch
args = json.loads(sys.argv[1])
torch.set_num_threads(2)
from models.loading import load_model

def vm(field):  # kB values of /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = vm("VmHWM")
start = time.perf_counter()
model, report = load_model(pi3=args["pi3"], page4d=args["page4d"], preset="full", dtype=args["dtype"])
seconds = time.perf_counter() - start
peak = vm("VmHWM")
model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024, "baseline_rss_mb": base / 1024,
                  "model_mb": model_bytes / 2**20, "counts": report.counts()}))
"""


def ensure_checkpoints(folder: Path) -> tuple[Path, Path]:
    from models.loading.synthetic import write_synthetic

    folder.mkdir(parents=True, exist_ok=True)
    pi3, page4d = folder / "model.safetensors", folder / "checkpoint_mask.pt"
    if not pi3.exists():
        print(f"writing {pi3} ...", flush=True)
        write_synthetic(pi3, "pi3")
    if not page4d.exists():
        print(f"writing {page4d} ... (torch.save holds the whole dict: ~5.4 GB RAM)", flush=True)
        write_synthetic(page4d, "page4d", "torch")
    return pi3, page4d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/page4d_bench"))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args()
    pi3, page4d = ensure_checkpoints(args.dir)
    print(f"\nfiles: {pi3.name} {pi3.stat().st_size / 1e9:.2f} GB, {page4d.name} {page4d.stat().st_size / 1e9:.2f} GB; "
          f"CPU {platform.machine()}, python {platform.python_version()}\n")
    print("| dtype | model size (MB) | peak RSS (MB) | peak / model | process baseline (MB) | time (s) |")
    print("|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        payload = json.dumps({"pi3": str(pi3), "page4d": str(page4d), "dtype": dtype})
        out = subprocess.run([sys.executable, "-c", CHILD, payload], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {dtype} | {r['model_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / r['model_mb']:.2f} | "
              f"{r['baseline_rss_mb']:.0f} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
