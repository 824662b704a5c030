"""Cost of neutral work: single vs dual stream, skips on vs off, and the DPT head's peak vs VGGT's.

Rows: T=1 x V=4 full model at 224 px; T=8 and T=16 x V=4 small-preset aggregator at 224 px.
Settings: (a) "as loaded": geometry blocks equal to the pose blocks, every lambda 0, temporal
frequencies 0 (what the loader produces); (b) "moved": lambdas 0.5, temporal frequencies 0.3, the
geometry blocks perturbed. An external mask is given in both, so the mask biases have work to do.

Variants, all sharing ONE set of weights (no extra memory):
    ref        pure single stream: no temporal encoding, no mask bias (the least this architecture computes)
    single     single stream with the mask bias and temporal encoding
    dual       dual stream (the default), neutral skips on
    dual-off   dual stream with every skip disabled (docs/design.md, "New parts start neutral")
Time: median of ``--reps`` passes, ABAB-interleaved over the variants, one thread, ratios to ``ref``.
Peak: bytes of live tensors in one extra, untimed pass (``benchmarks/tensor_memory.py``).
Heads: peak of our depth head vs VGGT's forward of the same modules (``benchmarks/vggt_reference_dpt.py``).

    python benchmarks/bench_neutral.py                 # all rows (the full row needs ~6 GB)
    python benchmarks/bench_neutral.py --rows small8 small16 --reps 3
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks.* importable

from benchmarks.tensor_memory import peak_bytes
from benchmarks.vggt_reference_dpt import vggt_dpt_forward
from models.neutral import single_stream_state, skips_disabled
from models.vggt import VGGT

ROWS = {  # name: (preset, T, V, size, what runs)
    "full1": ("full", 1, 4, 224, "model"),
    "small8": ("small", 8, 4, 224, "aggregator"),
    "small16": ("small", 16, 4, 224, "aggregator"),
}


def sharing(dual: VGGT, **overrides) -> VGGT:
    """A model of another configuration built on the meta device, holding the dual model's tensors."""
    with torch.device("meta"):
        model = VGGT(config=dual.config.replace(**overrides)).eval()
    model.load_state_dict(single_stream_state(dual, model.state_dict()), strict=True, assign=True)
    model.aggregator.image_mean = dual.aggregator.image_mean
    model.aggregator.image_std = dual.aggregator.image_std
    return model


def move_parameters(dual: VGGT) -> None:
    """Setting (b): lambdas and temporal frequencies nonzero, the geometry stream's blocks differ."""
    agg = dual.aggregator
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in agg.mask_bias.NAMES:
            getattr(agg.mask_bias, name).fill_(0.5)
        for module in agg.temporal_pos.values():
            module.freq.fill_(0.3)
        for container in (agg.geo_time_blocks, agg.geo_view_blocks):
            for p in container.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 1e-3)


def runner(model, what, images, ext, use_mask=True):
    mask = ext if use_mask else None  # [B, T, V, P]
    if what == "model":
        patch_mask = None if mask is None else mask.reshape(*mask.shape[:3], *_grid(images, model))
        return lambda: model(images, ext_mask=patch_mask)
    layers = VGGT.head_layers(model)
    return lambda: model.aggregator(images, mask, layers)


def _grid(images, model) -> tuple[int, int]:
    return images.shape[-2] // model.config.patch_size, images.shape[-1] // model.config.patch_size


def measure_row(name: str, reps: int, size_override: int | None = None) -> list[dict]:
    preset, T, V, size, what = ROWS[name]
    size = size_override or size
    torch.manual_seed(0)
    dual = VGGT.from_preset(preset).eval()
    ref = sharing(dual, enable_dual_stream=False, temporal_encoding="none")
    single = sharing(dual, enable_dual_stream=False)
    images = torch.rand(1, T, V, 3, size, size)
    grid = size // dual.config.patch_size
    ext = (torch.rand(1, T, V, grid * grid) > 0.7).float()
    results = []
    for setting in ("as loaded", "moved"):
        if setting == "moved":
            move_parameters(dual)  # in place: ref and single hold the same tensors
        variants = {"ref": (ref, False, False), "single": (single, True, False), "dual": (dual, True, False),
                    "dual-off": (dual, True, True)}
        times = {v: [] for v in variants}
        with torch.no_grad():
            for rep in range(reps + 1):  # rep 0 warms up on the first instant only
                for variant, (model, use_mask, off) in variants.items():
                    run = runner(model, what, images if rep else images[:, :1], ext if rep else ext[:, :1], use_mask)
                    with skips_disabled(model) if off else contextlib.nullcontext():
                        start = time.perf_counter()
                        run()
                        if rep:
                            times[variant].append(time.perf_counter() - start)
            peaks = {}
            for variant, (model, use_mask, off) in variants.items():
                with skips_disabled(model) if off else contextlib.nullcontext():
                    peaks[variant] = peak_bytes(runner(model, what, images, ext, use_mask))[0]
            parity = None
            if setting == "as loaded":
                a = runner(single, what, images, ext)()
                b = runner(dual, what, images, ext)()
                parity = (torch.equal(a["depth"], b["depth"]) and torch.equal(a["pose_enc"], b["pose_enc"])
                          if what == "model" else torch.equal(a.geo(dual.config.depth - 1),
                                                              b.geo(dual.config.depth - 1)))
        ref_time = statistics.median(times["ref"])
        results.append({"row": name, "setting": setting, "T": T, "V": V, "size": size, "what": f"{preset} {what}",
                        "ref_s": ref_time, "parity": parity,
                        **{f"{v}_x": statistics.median(times[v]) / ref_time for v in variants if v != "ref"},
                        **{f"{v}_mb": peaks[v] / 2**20 for v in variants},
                        "plan": dual.aggregator.neutral_report()["streams identical"]})
    return results


def heads_peak(preset: str, size: int, S: int) -> dict:
    torch.manual_seed(0)
    model = VGGT.from_preset(preset, enable_camera=False, enable_point=False).eval()
    grid = size // model.config.patch_size
    layers = [torch.randn(1, S, 5 + grid * grid, 2 * model.config.embed_dim) for _ in range(4)]
    ours = peak_bytes(model.depth_head, layers, (size, size), 5)[0]
    vggt = peak_bytes(vggt_dpt_forward, model.depth_head, layers, (size, size), 5)[0]
    return {"head": f"{preset} depth head, {S} images, {size} px", "ours_mb": ours / 2**20,
            "vggt_mb": vggt / 2**20, "ratio": ours / vggt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--size", type=int, default=None, help="image size instead of each row's 224 px")
    parser.add_argument("--heads", nargs="*", default=["small:224:8", "small:518:4"],
                        help="preset:size:images for the head peak comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.machine()} CPU, {torch.get_num_threads()} thread, torch {torch.__version__}; "
          f"medians of {args.reps} ABAB-interleaved passes; times as ratios to 'ref'")
    print("| row | setting | ref s | single / ref | dual / ref | dual skips off / ref | dual / single "
          "| peak MB ref / single / dual / dual-off | streams identical | dual == single bitwise |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in args.rows:
        for r in measure_row(row, args.reps, args.size):
            parity = "" if r["parity"] is None else ("yes" if r["parity"] else "NO")
            print(f"| T={r['T']}, V={r['V']}, {r['size']} px, {r['what']} | {r['setting']} | {r['ref_s']:.2f} "
                  f"| {r['single_x']:.2f}x | {r['dual_x']:.2f}x | {r['dual-off_x']:.2f}x "
                  f"| {r['dual_x'] / r['single_x']:.2f}x "
                  f"| {r['ref_mb']:.0f} / {r['single_mb']:.0f} / {r['dual_mb']:.0f} / {r['dual-off_mb']:.0f} "
                  f"| {r['plan']} | {parity} |", flush=True)
    if args.heads:
        print("\n| head | ours peak MB | VGGT peak MB | ours / VGGT |\n|---|---|---|---|")
        for spec in args.heads:
            preset, size, S = spec.split(":")
            h = heads_peak(preset, int(size), int(S))
            print(f"| {h['head']} | {h['ours_mb']:.0f} | {h['vggt_mb']:.0f} | {h['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
