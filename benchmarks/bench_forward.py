"""Time and peak memory of one forward pass of the network, over T instants x V cameras.

Each configuration runs in a fresh subprocess; its peak resident set size (VmHWM, reset just before
the pass, Linux) is read. "peak MB" is the growth of the peak RSS during the forward pass (after the model and the input
exist), i.e. the activations; "MB/image" divides it by T*V: roughly constant means memory grows
linearly with the number of images (no attention buffer quadratic in the sequence length).

    python benchmarks/bench_forward.py                      # small preset, 224 x 224, CPU
    python benchmarks/bench_forward.py --preset tiny --size 112 --T 2 4 --V 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch
from models.vggt import VGGT

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

args = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(args["threads"])
model = VGGT.from_preset(args["preset"], enable_dual_stream=args["dual"]).eval()
images = torch.rand(1, args["T"], args["V"], 3, args["size"], args["size"])
with torch.inference_mode():
    model(images[:, :1, :1])  # warm-up on one image (allocator, kernels)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS to the current RSS
before = hwm_kb()
start = time.perf_counter()
with torch.inference_mode():
    model(images)
seconds = time.perf_counter() - start
after = hwm_kb()
print(json.dumps({"seconds": seconds, "peak_mb": max(after - before, 0) / 1024.0}))
"""


def run_one(preset: str, size: int, T: int, V: int, dual: bool, threads: int) -> dict:
    args = json.dumps({"preset": preset, "size": size, "T": T, "V": V, "dual": dual, "threads": threads})
    result = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--T", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--V", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    print(f"preset {args.preset}, {args.size}x{args.size} px, CPU ({platform.processor() or platform.machine()}, "
          f"{args.threads} threads), torch {torch.__version__}, float32\n")
    print("| streams | T | V | T*V | time (s) | peak MB | MB/image |")
    print("|---|---|---|---|---|---|---|")
    for dual in (False, True):
        for V in args.V:
            for T in args.T:
                r = run_one(args.preset, args.size, T, V, dual, args.threads)
                n = T * V
                print(f"| {'dual' if dual else 'single'} | {T} | {V} | {n} | {r['seconds']:.2f} | "
                      f"{r['peak_mb']:.0f} | {r['peak_mb'] / n:.1f} |", flush=True)


if __name__ == "__main__":
    main()
