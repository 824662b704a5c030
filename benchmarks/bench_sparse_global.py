"""Peak memory and time of one Sparse Global-SA pass per strategy vs dense global attention.

    python benchmarks/bench_sparse_global.py [--T 2 4 8 16] [--V 2] [--px 224] [--dim 128] [--heads 4]

One pass = one block (attention + MLP, inference, float32) over all T*V*N tokens of a clip, N = 5 + P
(224 px, patch 14: P = 256, N = 261). Methods:

- ``landmark`` (landmark_k 64), ``dilated`` (levels 1, 2, 4), ``memory_bank`` (32 tokens): the
  ``SparseGlobalBlock`` of the network.
- ``dense``: the same block's ``Block.forward`` over all tokens, i.e. ``scaled_dot_product_attention``
  as the network calls it (on this CPU torch picks a fused flash kernel, which never stores the L x L
  logits: its memory is linear, its time quadratic).
- ``dense-naive``: softmax(q k^T) v written out (what an implementation without a fused kernel does):
  the L x L logits are materialised. Reference only.

Peak memory: each (method, T) runs in a fresh subprocess; peak = increase of the process's resident
high-water mark (``ru_maxrss``) over one pass, measured after the inputs and weights exist. It counts
everything the pass touches (kernel scratch included), not only tensors torch reports; allocator
reuse of memory freed before the pass can hide a little (setup frees almost nothing). Time: process
CPU time of the fastest of ``--repeats`` further passes, one torch thread by default: on a shared
machine wall time with several OpenMP threads swings by 10-50x when another process takes a core,
while single-thread CPU time stays put (it is the compute cost, not a latency).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("landmark", "dilated", "memory_bank", "dense", "dense-naive")


def run_one(method: str, T: int, V: int, px: int, dim: int, heads: int, threads: int, repeats: int) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from models.attention_ops import attention_half, mlp_half
    from models.config import Page4DConfig
    from models.layers.rope import RotaryPositionEmbedding2D, patch_positions
    from models.sparse_global import SparseGlobalBlock

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    grid = px // 14
    S, P = 5, grid * grid
    N = S + P
    strategy = method if method in ("landmark", "dilated", "memory_bank") else "dilated"
    cfg = Page4DConfig.preset("full", embed_dim=dim, num_heads=heads, encoder={"num_heads": heads},
                              camera_head={"num_heads": heads}, pi3_layers=0, sparse_strategy=strategy,
                              landmark_k=64, dilated_levels=(1, 2, 4), memory_tokens_num=32)
    sparse = SparseGlobalBlock(cfg, 0, RotaryPositionEmbedding2D(100.0)).eval()
    with torch.no_grad():
        sparse.gate.fill_(1.0)
    x = torch.randn(1, T, V, N, dim)
    positions = patch_positions(1, grid, grid, S)
    block = sparse.block

    def naive(flat):
        q, k, v = block.attn.project(block.norm1(flat), positions.repeat(1, T * V, 1))
        weights = ((q @ k.transpose(-1, -2)) * block.attn.scale).softmax(-1)
        return mlp_half(block, attention_half(block, flat, weights @ v))

    def one_pass():
        with torch.no_grad():
            if method == "dense":
                return block(x.reshape(1, -1, dim), positions.repeat(1, T * V, 1))
            if method == "dense-naive":
                return naive(x.reshape(1, -1, dim))
            return sparse(x, positions)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = one_pass()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    times = []
    for _ in range(repeats):
        start = time.process_time()
        one_pass()
        times.append(time.process_time() - start)
    return {"method": method, "T": T, "tokens": T * V * N, "peak_mb": (after - before) / 1024.0,
            "time_ms": 1000.0 * min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--V", type=int, default=2)
    parser.add_argument("--px", type=int, default=224)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = run_one(args.one[0], int(args.one[1]), args.V, args.px, args.dim, args.heads, args.threads,
                         args.repeats)
        print(json.dumps(result))
        return

    results = {}
    for T in args.T:
        for method in args.methods:
            cmd = [sys.executable, __file__, "--one", method, str(T), "--V", str(args.V), "--px", str(args.px),
                   "--dim", str(args.dim), "--heads", str(args.heads), "--threads", str(args.threads),
                   "--repeats", str(args.repeats)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[(method, T)] = json.loads(line)
            print(f"  {method:12s} T={T:3d}: {results[(method, T)]}", file=sys.stderr)

    N = 5 + (args.px // 14) ** 2
    print(f"\nOne global pass (attention + MLP, float32, no grad), V = {args.V}, {args.px} px (N = {N}), "
          f"embed {args.dim}, {args.heads} heads, {args.threads} thread(s). Peak = rise of ru_maxrss (MB) / "
          f"CPU time of the fastest of {args.repeats} passes (ms).\n")
    print("| T | tokens | " + " | ".join(args.methods) + " |")
    print("|---|---|" + "---|" * len(args.methods))
    for T in args.T:
        cells = [f"{results[(m, T)]['peak_mb']:.1f} MB / {results[(m, T)]['time_ms']:.0f} ms" for m in args.methods]
        print(f"| {T} | {results[(args.methods[0], T)]['tokens']} | " + " | ".join(cells) + " |")
    lo, hi = min(args.T), max(args.T)
    growth = []
    for m in args.methods:
        a, b = results[(m, lo)], results[(m, hi)]
        exp_mem = math.log(max(b["peak_mb"], 1e-3) / max(a["peak_mb"], 1e-3)) / math.log(hi / lo)
        exp_time = math.log(b["time_ms"] / a["time_ms"]) / math.log(hi / lo)
        growth.append(f"{exp_mem:.2f} / {exp_time:.2f}")
    print(f"| growth exponent T={lo}->{hi} (memory / time) | | " + " | ".join(growth) + " |")


if __name__ == "__main__":
    main()
