"""COLMAP for splatting users: a binary model on request, a settable and documented
points cap, and ``colmap/sparse/0/points3D.ply`` as gaussian-splatting reads it."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tests.helpers import CAMS, TINY_RUN, reconstruct_cli, tiny_run

RUN = ["--frames", 2, "--size", 70, "--colmap", "--colmap-frame", 1]


def read_binary_model(sparse):
    """COLMAP's binary layout read with ``struct`` (as colmap's scripts/python/read_write_model.py does)."""
    data = (sparse / "cameras.bin").read_bytes()
    cameras, at = {}, 8
    for _ in range(struct.unpack_from("<Q", data)[0]):
        cid, model, width, height, *params = struct.unpack_from("<iiQQ4d", data, at)
        at += struct.calcsize("<iiQQ4d")
        cameras[cid] = (model, width, height, params)
    assert at == len(data)
    data = (sparse / "images.bin").read_bytes()
    images, at = {}, 8
    for _ in range(struct.unpack_from("<Q", data)[0]):
        iid, *values = struct.unpack_from("<i7di", data, at)
        at += struct.calcsize("<i7di")
        end = data.index(b"\x00", at)
        name = data[at:end].decode()
        num_points2d = struct.unpack_from("<Q", data, end + 1)[0]
        at = end + 1 + 8 + 24 * num_points2d
        images[name] = (iid, values[:4], values[4:7], values[7])
    assert at == len(data)
    data = (sparse / "points3D.bin").read_bytes()
    points, at = [], 8
    for _ in range(struct.unpack_from("<Q", data)[0]):
        pid, x, y, z, r, g, b, error, track = struct.unpack_from("<Q3d3BdQ", data, at)
        at += struct.calcsize("<Q3d3BdQ") + 8 * track
        points.append((x, y, z, r, g, b))
    assert at == len(data)
    return cameras, images, np.array(points)


def read_text_model(sparse):
    rows = lambda name: [line.split() for line in (sparse / name).read_text().splitlines()  # noqa: E731
                         if line and not line.startswith("#")]
    cameras = {int(r[0]): (r[1], int(r[2]), int(r[3]), [float(x) for x in r[4:]]) for r in rows("cameras.txt")}
    images = {r[9]: (int(r[0]), [float(x) for x in r[1:5]], [float(x) for x in r[5:8]], int(r[8]))
              for r in rows("images.txt")}
    points = np.array([[float(x) for x in r[1:7]] for r in rows("points3D.txt")])
    return cameras, images, points


def read_splatting_ply(path):
    """What gaussian-splatting's fetchPly reads: x y z, nx ny nz, red green blue."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    count = int(next(line.split()[-1] for line in header if line.startswith("element vertex")))
    names = [line.split()[-1] for line in header if line.startswith("property")]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "red", "green", "blue"]
    vertex = np.frombuffer(data[end:], dtype=[(n, "<f4") for n in names[:6]] + [(n, "u1") for n in names[6:]])
    assert len(vertex) == count
    return vertex


@pytest.mark.slow
def test_binary_model_equals_the_text_model_and_the_cap_is_settable(tmp_path):
    outs = {}
    for fmt in ("text", "bin"):
        outs[fmt] = tmp_path / fmt
        tiny_run(CAMS, outs[fmt], *RUN, "--colmap-format", fmt, "--colmap-max-points", 300)
    text_sparse, bin_sparse = outs["text"] / "colmap" / "sparse" / "0", outs["bin"] / "colmap" / "sparse" / "0"
    assert sorted(p.name for p in bin_sparse.iterdir()) == ["cameras.bin", "images.bin", "points3D.bin",
                                                            "points3D.ply"]
    text_cameras, text_images, text_points = read_text_model(text_sparse)
    bin_cameras, bin_images, bin_points = read_binary_model(bin_sparse)
    assert len(bin_points) == len(text_points) == 300  # the cap, an even random subsample
    np.testing.assert_allclose(bin_points, text_points, rtol=1e-6, atol=1e-7)
    assert sorted(bin_images) == sorted(text_images) == [f"cam{v:02d}.png" for v in range(4)]
    for name, (iid, qvec, tvec, cid) in bin_images.items():
        assert (iid, cid) == (text_images[name][0], text_images[name][3])
        np.testing.assert_allclose(qvec + tvec, text_images[name][1] + text_images[name][2], rtol=1e-9, atol=1e-10)
    for cid, (model, width, height, params) in bin_cameras.items():
        assert model == 1 and text_cameras[cid][0] == "PINHOLE"
        assert (width, height) == text_cameras[cid][1:3] == (224, 168)
        np.testing.assert_allclose(params, text_cameras[cid][3], rtol=1e-8)

    ply = read_splatting_ply(bin_sparse / "points3D.ply")
    np.testing.assert_allclose(np.stack([ply["x"], ply["y"], ply["z"]], 1), bin_points[:, :3], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.stack([ply["red"], ply["green"], ply["blue"]], 1), bin_points[:, 3:])
    run = json.loads((outs["bin"] / "run.json").read_text())
    assert run["export"]["colmap"]["format"] == "binary" and run["export"]["colmap"]["num_points"] == 300


def test_bad_colmap_options_fail_before_reading(tmp_path):
    for args, named in ((["--colmap-format", "json"], "--colmap-format"), (["--colmap-max-points", "-1"],
                                                                              "--colmap-max-points")):
        result = reconstruct_cli(tmp_path / "missing", *TINY_RUN, "--no-preview", *RUN, *args, "--out", tmp_path / "out")
        assert result.exit_code != 0 and named in result.output, result.output
        assert not (tmp_path / "out").exists()
