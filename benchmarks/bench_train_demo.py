"""The training demonstration (README "Training"): a) from scratch, b) the recipe in miniature, c) cost.

    python benchmarks/bench_train_demo.py --work /tmp/train_demo            # all parts
    python benchmarks/bench_train_demo.py --work /tmp/train_demo --parts c  # one part

Everything goes through the user-facing paths:

- data: ``page4d data synth`` (training: 32 clips, seed 0; held-out: 8 clips, seed 1; 4 cameras x 8 frames,
  112x84, moving objects, static and hand-held rigs);
- training: ``page4d train`` in a subprocess per run (so each run's peak memory is its own);
- held-out metrics: ``reconstruct`` (library) with ``finetuned=RUN`` on every held-out clip (T = 4 instants,
  all 4 cameras), then ``page4d_cli.eval.evaluate``; the tables show the mean over the 8 clips of the ATE
  (camera centres after Sim(3)) and depth AbsRel (per-clip median scaling). The untrained baseline is
  ``reconstruct --weights random`` (seed 0).

Parts:

a) from scratch: tiny, ``--train all``, T = 4, V = 2 cameras per sample, N steps; held-out before / after.
b) the recipe in miniature: pretrain tiny with T = 1 (the cameras of one instant, as VGGT/Pi3 were trained),
   then start from that run (``--init``) and fine-tune on T = 4 with ``--train new`` and with ``--train page4d``;
   held-out metrics at T = 4 before / after, the lambdas reached, and how far the pose and geometry streams'
   last-layer tokens differ (relative L2 on a held-out sample).
c) cost: seconds per step and peak resident memory per preset x group, with and without ``--checkpointing``
   (runs interleaved A/B per configuration; a few steps each, median of the steps after the first).

Results are appended to WORK/results.json (one entry per part) and printed as markdown tables. Runs that
already finished in WORK are reused (delete WORK to start over). Sizes and step counts are options: the
defaults are what fits a shared 2-core CPU in well under an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGE4D = [sys.executable, "-m", "page4d_cli.main"]


# ----------------------------------------------------------------------------- steps


def run(cmd: list, log: Path) -> None:
    """Run a page4d command; its output goes to ``log``; a failure stops the demonstration."""
    with open(log, "w") as fh:
        done = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, check=False)
    if done.returncode != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(map(str, cmd[2:]))} failed (exit {done.returncode}): {' | '.join(tail)}")


def synth(work: Path) -> tuple[Path, Path]:
    train, heldout = work / "data" / "train", work / "data" / "heldout"
    for folder, clips, seed in ((train, 32, 0), (heldout, 8, 1)):
        if not (folder / f"clip_{clips - 1:04d}" / "gt" / "cameras.json").is_file():
            run([*PAGE4D, "data", "synth", folder, "--clips", clips, "--cameras", 4, "--frames", 8, "--size",
                 "112x84", "--seed", seed, "--quiet", "--overwrite"], work / f"synth_{folder.name}.log")
    return train, heldout


def train(work: Path, name: str, data: Path, args: list) -> tuple[Path, list[dict]]:
    """``page4d train DATA --out WORK/runs/NAME ARGS`` (reused when finished); returns (run, metrics)."""
    out = work / "runs" / name
    metrics = out / "metrics.jsonl"
    steps = int(args[args.index("--steps") + 1])
    if not (metrics.is_file() and (out / "weights.safetensors").is_file()
            and json.loads(metrics.read_text().splitlines()[-1])["step"] == steps):
        if out.exists():
            shutil.rmtree(out)  # an unfinished run of this script
        out.parent.mkdir(parents=True, exist_ok=True)
        run([*PAGE4D, "train", data, "--out", out, "--workers", 0, "--no-progress", *args], work / f"{name}.log")
    return out, [json.loads(line) for line in metrics.read_text().splitlines()]


def heldout_metrics(work: Path, clips: list[Path], run_dir, size: int, frames: int = 4) -> dict:
    """Mean ATE / AbsRel / delta over the held-out clips of ``reconstruct`` (+ ``finetuned=run_dir``).

    Cached in WORK/eval_cache.json per (network, clips, size): a rerun of the script does not redo it.
    """
    from page4d_cli.eval import EvalOptions, evaluate
    from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct

    label = Path(run_dir).name if run_dir else "untrained"
    key = f"{label}|{','.join(c.name for c in clips)}|{size}|{frames}"
    cache_path = work / "eval_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    if key in cache:
        return cache[key]
    rows = []
    for clip in clips:
        out = work / "eval_tmp" / label / clip.name  # parts may run in parallel
        options = ReconstructOptions(frames=frames, size=size, preset="tiny", weights="random", finetuned=run_dir,
                                     out=out, overwrite=True, preview=False, seed=0)
        reconstruct(clip, options)
        rows.append(evaluate(out, clip, EvalOptions(points=False)).summary())  # no Chamfer: not reported
        shutil.rmtree(out)
    keys = ("ate", "abs_rel", "delta_1_25", "rpe_rot_deg")
    result = {key: statistics.fmean(r[key] for r in rows if r[key] is not None) for key in keys} | {"clips": rows}
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    cache[key] = result
    cache_path.write_text(json.dumps(cache, indent=1))
    return result


def stream_stats(clips: list[Path], run_dir, size: int) -> dict:
    """Lambdas of the network and the relative difference of the pose / geometry streams' last layer."""
    import torch

    from models.loading import load_model
    from page4d_cli.train.dataset import GTClipDataset, SampleSpec

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, _ = load_model(preset="tiny", finetuned=run_dir)
    sample = GTClipDataset(clips[:1], SampleSpec(frames=4, cameras=4, size=size, stride_range=(1, 1)), seed=0)[0]
    last = model.config.depth - 1
    with torch.no_grad():
        agg = model.aggregator(sample["images"][None], None, [last])
        pose, geo = agg.pose(last).float(), agg.geo(last).float()
    return {"lambdas": model.aggregator.mask_bias.values(),
            "stream_rel_diff": float((pose - geo).norm() / pose.norm().clamp_min(1e-12))}


def loss_summary(metrics: list[dict]) -> dict:
    """Mean objective over the first and the last 10 % of the steps (the per-step loss is noisy)."""
    k = max(1, len(metrics) // 10)
    return {"loss_first": statistics.fmean(m["loss"] for m in metrics[:k]),
            "loss_last": statistics.fmean(m["loss"] for m in metrics[-k:]),
            "step_s": statistics.median(m["step_s"] for m in metrics[1:] or metrics),
            "skipped": metrics[-1].get("skipped", 0)}


# ----------------------------------------------------------------------------- the parts


def part_a(work: Path, data: Path, clips: list[Path], opts) -> dict:
    size = opts.size
    before = heldout_metrics(work, clips, None, size)
    run_dir, metrics = train(work, "a_scratch", data, [
        "--preset", "tiny", "--train", "all", "--steps", opts.steps_a, "--frames", 4, "--cameras", 2,
        "--size", size, "--lr", opts.lr, "--lr-new", opts.lr, "--seed", 0, "--save-every", opts.steps_a])
    after = heldout_metrics(work, clips, run_dir, size)
    return {"steps": opts.steps_a, "lr": opts.lr, "size": size, "untrained": before, "trained": after,
            "training": loss_summary(metrics)}


def part_b(work: Path, data: Path, clips: list[Path], opts) -> dict:
    size = opts.size
    pre_dir, pre_metrics = train(work, "b_t1", data, [
        "--preset", "tiny", "--train", "all", "--steps", opts.steps_b1, "--frames", 1, "--cameras", 4,
        "--size", size, "--lr", opts.lr, "--lr-new", opts.lr, "--seed", 0, "--save-every", opts.steps_b1])
    result = {"pretrain": {"steps": opts.steps_b1, "training": loss_summary(pre_metrics),
                           "heldout_T4": heldout_metrics(work, clips, pre_dir, size),
                           **stream_stats(clips, pre_dir, size)}}
    for group in ("new", "page4d"):
        run_dir, metrics = train(work, f"b_{group}", data, [
            "--preset", "tiny", "--init", pre_dir, "--train", group, "--steps", opts.steps_b2, "--frames", 4,
            "--cameras", 2, "--size", size, "--lr", opts.lr_blocks, "--lr-new", opts.lr, "--seed", 0,
            "--save-every", opts.steps_b2])
        result[group] = {"steps": opts.steps_b2, "training": loss_summary(metrics),
                         "heldout_T4": heldout_metrics(work, clips, run_dir, size),
                         **stream_stats(clips, run_dir, size)}
    return result


def part_c(work: Path, data: Path, opts) -> dict:
    rows = []
    configs = [tuple(item.split(":")) for item in opts.cost_configs.split(",")]
    for preset, group in configs:
        for checkpointing in (False, True, False, True)[:2 * opts.cost_repeats]:  # A B (A B): interleaved
            name = f"c_{preset}_{group}_{'ckpt' if checkpointing else 'plain'}_{len(rows)}"
            _, metrics = train(work, name, data, [
                "--preset", preset, "--train", group, "--steps", opts.cost_steps, "--frames", 4, "--cameras", 2,
                "--size", opts.size, "--seed", 0, "--save-every", opts.cost_steps,
                "--checkpointing" if checkpointing else "--no-checkpointing"])
            rows.append({"preset": preset, "group": group, "checkpointing": checkpointing,
                         "step_s": statistics.median(m["step_s"] for m in metrics[1:]),
                         "peak_rss_mb": max(m["peak_memory_mb"] for m in metrics),
                         "images_per_s": statistics.median(m["images_per_s"] for m in metrics[1:])})
    return {"steps_per_run": opts.cost_steps, "size": opts.size, "images_per_step": 8, "rows": rows}


def observed_cost(work: Path) -> list[dict]:
    """Step time and peak RSS of every finished run in WORK/runs (what a) and b) cost), from its logs."""
    rows = []
    for config_path in sorted((work / "runs").glob("*/config.json")):
        metrics_path = config_path.parent / "metrics.jsonl"
        if not metrics_path.is_file():
            continue
        training = json.loads(config_path.read_text())["training"]
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()]
        later = metrics[1:] or metrics
        rows.append({"run": config_path.parent.name, "preset": training["preset"], "group": training["train"],
                     "checkpointing": training["checkpointing"],
                     "images": training["frames"] * training["cameras"] * training["batch"], "size": training["size"],
                     "steps": len(metrics), "step_s": statistics.median(m["step_s"] for m in later),
                     "peak_rss_mb": max(m["peak_memory_mb"] for m in metrics)})
    return rows


# ----------------------------------------------------------------------------- tables


def fmt(value, digits=4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_tables(results: dict, work: Path) -> None:
    if "a" in results:
        a = results["a"]
        print(f"\n### a) from scratch (tiny, --train all, {a['steps']} steps, lr {a['lr']}, {a['size']} px; "
              f"held-out: mean over {a.get('heldout_clips', 8)} clips)\n")
        print("| network | ATE | depth AbsRel | delta<1.25 | RPE rot (deg) |\n|---|---|---|---|---|")
        for label, key in (("untrained (random init)", "untrained"), ("trained", "trained")):
            m = a[key]
            print(f"| {label} | {fmt(m['ate'])} | {fmt(m['abs_rel'])} | {fmt(m['delta_1_25'])} | "
                  f"{fmt(m['rpe_rot_deg'], 2)} |")
        t = a["training"]
        print(f"\ntraining loss {t['loss_first']:.3f} -> {t['loss_last']:.3f} (mean of first / last 10 % of steps), "
              f"median {t['step_s']:.1f} s/step, {t['skipped']} skipped steps")
    if "b" in results:
        b = results["b"]
        print(f"\n### b) T = 1 pretraining, then fine-tuning on T = 4 (tiny; held-out: mean over "
              f"{b.get('heldout_clips', 8)} clips)\n")
        print("| network | steps | held-out ATE (T=4) | AbsRel | delta<1.25 | lambda_pose | lambda_geo | lambda_pose_t "
              "| lambda_geo_t | pose vs geo stream (rel. L2) |\n|---|---|---|---|---|---|---|---|---|---|")
        for label, key in (("pretrained T=1 (--train all)", "pretrain"), ("+ --train new", "new"),
                           ("+ --train page4d", "page4d")):
            m = b[key]
            lam = m["lambdas"]
            h = m["heldout_T4"]
            print(f"| {label} | {m['steps']} | {fmt(h['ate'])} | {fmt(h['abs_rel'])} | {fmt(h['delta_1_25'])} | "
                  f"{fmt(lam.get('lambda_pose'), 4)} | {fmt(lam.get('lambda_geo'), 4)} | "
                  f"{fmt(lam.get('lambda_pose_t'), 4)} | {fmt(lam.get('lambda_geo_t'), 4)} | "
                  f"{fmt(m['stream_rel_diff'], 4)} |")
    if "c" in results:
        c = results["c"]
        print(f"\n### c) cost per optimizer step ({c['images_per_step']} images of {c['size']} px, CPU, "
              f"{c['steps_per_run']} steps per run, median after the first)\n")
        print("| preset | --train | checkpointing | s/step | images/s | peak RSS (MiB) |\n|---|---|---|---|---|---|")
        for r in c["rows"]:
            print(f"| {r['preset']} | {r['group']} | {'on' if r['checkpointing'] else 'off'} | {r['step_s']:.2f} | "
                  f"{r['images_per_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    rows = observed_cost(work)
    if rows:
        print("\n### cost observed in the runs above (median s/step after the first step; peak RSS of the process)\n")
        print("| run | preset | --train | checkpointing | images/step | px | steps | s/step | peak RSS (MiB) |\n"
              "|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['run']} | {r['preset']} | {r['group']} | {'on' if r['checkpointing'] else 'off'} | "
                  f"{r['images']} | {r['size']} | {r['steps']} | {r['step_s']:.1f} | {r['peak_rss_mb']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data, runs and results.json")
    parser.add_argument("--parts", default="a,b,c")
    parser.add_argument("--size", type=int, default=56, help="network width (px)")
    parser.add_argument("--lr", type=float, default=1e-3, help="lr of everything from scratch, and of 'new'")
    parser.add_argument("--lr-blocks", type=float, default=1e-4, help="lr of the blocks when fine-tuning (b)")
    parser.add_argument("--steps-a", type=int, default=40)
    parser.add_argument("--steps-b1", type=int, default=30)
    parser.add_argument("--steps-b2", type=int, default=15)
    parser.add_argument("--cost-steps", type=int, default=3)
    parser.add_argument("--cost-repeats", type=int, default=1, help="A/B pairs per configuration")
    parser.add_argument("--cost-configs", default="tiny:new,tiny:page4d,tiny:all,small:new,small:all",
                        help="preset:group pairs measured in c)")
    parser.add_argument("--heldout-clips", type=int, default=8, help="held-out clips evaluated (of 8)")
    parser.add_argument("--tables-only", action="store_true", help="print the tables of WORK/results.json")
    opts = parser.parse_args()
    work = opts.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if not opts.tables_only:
        os.environ.setdefault("PAGE4D_HOME", str(work / "page4d_home"))  # never the user's registry
        data, heldout = synth(work)
        clips = sorted(p for p in heldout.iterdir() if (p / "gt").is_dir())[:opts.heldout_clips]
        results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                              "python": platform.python_version()}
        for part in opts.parts.split(","):
            started = time.perf_counter()
            if part == "a":
                results["a"] = part_a(work, data, clips, opts)
            elif part == "b":
                results["b"] = part_b(work, data, clips, opts)
            elif part == "c":
                results["c"] = part_c(work, data, opts)
            else:
                raise SystemExit(f"--parts: unknown part {part!r}; use a, b, c")
            results[part]["wall_s"] = time.perf_counter() - started
            results[part]["heldout_clips"] = len(clips)
            on_disk = json.loads(results_path.read_text()) if results_path.is_file() else {}
            results = {**on_disk, "machine": results["machine"], part: results[part]}  # parts may run in parallel
            results_path.write_text(json.dumps(results, indent=1))
            print(f"part {part}: {results[part]['wall_s']:.0f} s", flush=True)
    print_tables(results, work)


if __name__ == "__main__":
    main()
