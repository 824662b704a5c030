"""How long ``reconstruct``'s previews take: 24 instants x 4 cameras at 640 x 480 (network 518 x 392).

Each repeat runs in a FRESH interpreter (``--child``), so the first-use costs a real run pays (importing
matplotlib and imageio's ffmpeg plugin) are included. Reports wall-clock and CPU seconds per part
(overview, depth video, trajectory plot, and the input frames, written by a thread in parallel with the
rest) and in total, min / median over the repeats.
CPU seconds are given for this process and for the ffmpeg encoder (a child process, running in
parallel with the frame rendering); on a CPU shared with other jobs they are the figures to trust.

The prediction is synthetic but shaped like a real one: smooth depth with a moving sphere, smooth
log-normal confidence, a dynamic mask on the sphere; the images are smooth noise (harder to encode
than real video, so the video time is an upper bound).

    python benchmarks/bench_preview.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def synthetic_clip(num_instants: int, num_cameras: int, original=(640, 480), width: int = 518):
    import cv2
    import numpy as np

    from page4d_cli.pipeline.preprocess import make_transform, network_size_for
    from page4d_cli.pipeline.types import CameraInfo, ClipBatch, Prediction

    network = network_size_for(original, width)
    transform = make_transform(original, network, "crop")
    W, H = network
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    images = np.empty((num_instants, num_cameras, 3, H, W), np.float32)
    depth = np.empty((num_instants, num_cameras, H, W), np.float32)
    mask = np.zeros_like(depth)
    for v in range(num_cameras):
        base = cv2.GaussianBlur(rng.random((H, W, 3)).astype(np.float32), (0, 0), 4)
        for t in range(num_instants):
            images[t, v] = np.moveaxis(np.clip(base * 2.5 - 0.7, 0, 1), -1, 0)
            cx, cy = W * (0.2 + 0.6 * t / max(num_instants - 1, 1)), H * (0.4 + 0.1 * v)
            sphere = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.12 * H) ** 2
            depth[t, v] = 1.0 + 3.0 * (1 - yy / H) + 0.2 * v
            depth[t, v][sphere] = 0.8
            mask[t, v][sphere] = 1.0
    noise = rng.normal(1, 1, (num_instants * num_cameras, H, W)).astype(np.float32)
    conf = 1 + np.exp(np.stack([cv2.GaussianBlur(plane, (0, 0), 6) for plane in noise]))
    conf = conf.reshape(num_instants, num_cameras, H, W).astype(np.float32)
    extrinsic = np.broadcast_to(np.eye(4), (num_instants, num_cameras, 4, 4)).copy()
    for v in range(num_cameras):
        angle = 2 * np.pi * v / num_cameras
        extrinsic[:, v, :3, :3] = [[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]]
        extrinsic[:, v, :3, 3] = [0.0, 0.0, 2.0 * (v > 0)]
    K = np.array([[0.9 * W, 0, W / 2], [0, 0.9 * W, H / 2], [0, 0, 1]])
    cameras = [CameraInfo(f"cam{v}", Path(f"cam{v}.mp4"), "video", original, 30.0, num_instants)
               for v in range(num_cameras)]
    frames = np.repeat(np.arange(num_instants)[:, None], num_cameras, axis=1)
    batch = ClipBatch(cameras=cameras, images=images, transforms=[transform] * num_cameras,
                      frame_indices=frames, timestamps=frames / 30.0)
    pred = Prediction(extrinsic=extrinsic, intrinsic=np.broadcast_to(K, (num_instants, num_cameras, 3, 3)).copy(),
                      depth=depth, depth_conf=conf, dynamic_mask=mask)
    return pred, batch


def child(num_instants: int, num_cameras: int) -> None:
    """One measured run (fresh interpreter); prints a JSON line."""
    pred, batch = synthetic_clip(num_instants, num_cameras)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    from page4d_cli.preview.write import write_previews

    with tempfile.TemporaryDirectory() as out:
        record = write_previews(Path(out), pred, batch)
        sizes = {p.name: p.stat().st_size for p in (Path(out) / "preview").iterdir() if p.is_file()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the ffmpeg encoder, once it has exited
    print(json.dumps({"wall": record["seconds"], "wall_total": time.perf_counter() - wall0,
                      "cpu_total": time.process_time() - cpu0, "cpu_ffmpeg": children.ru_utime + children.ru_stime,
                      "sizes": sizes}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instants", type=int, default=24)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.instants, args.cameras)
        return
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, __file__, "--child", "--instants", str(args.instants),
                              "--cameras", str(args.cameras)], cwd=REPO, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"previews of {args.instants} instants x {args.cameras} cameras, 640x480 originals, network 518x392; "
          f"{args.repeats} fresh-interpreter runs")
    print(f"{'part':<22}{'wall min':>10}{'wall med':>10}")
    for part in runs[0]["wall"]:
        values = [run["wall"][part] for run in runs]
        print(f"{part:<22}{min(values):>10.2f}{statistics.median(values):>10.2f}")
    for name, key in (("total wall", "wall_total"), ("CPU, this process", "cpu_total"),
                      ("CPU, ffmpeg child", "cpu_ffmpeg")):
        values = [run[key] for run in runs]
        print(f"{name:<22}{min(values):>10.2f}{statistics.median(values):>10.2f}")
    print("file sizes (bytes):", runs[0]["sizes"])


if __name__ == "__main__":
    main()
