"""Preprocessing of ``page4d reconstruct``: network size, crop/pad transforms, intrinsics and per-pixel maps
between the original and the network resolution (``page4d_cli/pipeline/preprocess.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from page4d_cli.pipeline.preprocess import (
    intrinsics_to_network,
    intrinsics_to_original,
    make_transform,
    network_map_to_original,
    network_size_for,
    resize_image,
    resize_mask,
)


def original_to_network_xy(xy: np.ndarray, tf) -> np.ndarray:
    """``[..., 2]`` original pixel coordinates -> network pixel coordinates (the transform's scale + offset)."""
    return np.asarray(xy, dtype=np.float64) * np.asarray(tf.scale) + np.asarray(tf.offset)


def network_to_original_xy(xy: np.ndarray, tf) -> np.ndarray:
    """``[..., 2]`` network pixel coordinates -> original pixel coordinates."""
    return (np.asarray(xy, dtype=np.float64) - np.asarray(tf.offset)) / np.asarray(tf.scale)


def test_network_size_and_modes():
    assert network_size_for((640, 480)) == (518, 392)
    assert network_size_for((1920, 1080)) == (518, 294)
    assert network_size_for((160, 120), 224) == (224, 168)
    crop = make_transform((640, 480), (518, 392), "crop")
    assert crop.valid_box == (0, 0, 518, 392) and min(crop.offset) <= 0
    pad = make_transform((300, 100), (224, 168), "pad")
    x0, y0, x1, y1 = pad.valid_box
    assert (x1 - x0, y1 - y0) == (224, 75) and y0 == (168 - 75) // 2
    image = resize_image(np.zeros((100, 300, 3), np.uint8), pad)
    assert image.shape == (3, 168, 224) and image.dtype == np.float32
    assert np.all(image[:, :y0] == 1.0) and np.all(image[:, y1:] == 1.0)  # white padding
    assert np.all(image[:, y0:y1] == 0.0)


@pytest.mark.parametrize("original, mode", [((640, 480), "crop"), ((640, 480), "pad"), ((300, 100), "crop"),
                                            ((300, 100), "pad"), ((90, 160), "crop"), ((90, 160), "pad")])
def test_intrinsics_round_trip_and_projection(original, mode):
    tf = make_transform(original, (224, 168), mode)
    w, h = original
    K = np.array([[0.9 * w, 0.0, 0.52 * w], [0.0, 0.88 * w, 0.47 * h], [0.0, 0.0, 1.0]])
    K_net = intrinsics_to_network(K, tf)
    np.testing.assert_allclose(intrinsics_to_original(K_net, tf), K, rtol=0, atol=1e-9)
    points = np.random.default_rng(1).uniform([-1, -1, 2], [1, 1, 5], size=(50, 3))
    def project(K_, X):
        uvw = X @ K_.T
        return uvw[:, :2] / uvw[:, 2:]
    original_px = project(K, points)
    network_px = project(K_net, points)
    np.testing.assert_allclose(network_to_original_xy(network_px, tf), original_px, atol=1e-9)
    np.testing.assert_allclose(original_to_network_xy(original_px, tf), network_px, atol=1e-9)


@pytest.mark.parametrize("original, mode", [((640, 480), "crop"), ((300, 100), "pad"), ((90, 160), "crop"),
                                            ((120, 90), "pad")])
def test_transform_matches_the_resized_pixels(original, mode):
    """A blurred dot at a known sub-pixel spot lands where ``original_to_network_xy`` says."""
    w, h = original
    tf = make_transform(original, (224, 168), mode)
    centre = np.array([0.43 * w + 0.3, 0.55 * h + 0.2])
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    sigma = 0.04 * min(w, h) + 2.0
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    image = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    network = resize_image(image, tf)[0]
    x0, y0, x1, y1 = tf.valid_box
    weights = np.zeros_like(network)
    weights[y0:y1, x0:x1] = network[y0:y1, x0:x1]
    gx, gy = np.meshgrid(np.arange(224) + 0.5, np.arange(168) + 0.5)
    found = np.array([(weights * gx).sum(), (weights * gy).sum()]) / weights.sum()
    np.testing.assert_allclose(found, original_to_network_xy(centre, tf), atol=0.15)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_map_back_to_original_resolution(mode):
    original = (200, 100)
    tf = make_transform(original, (224, 168), mode)
    W, H = tf.network_size
    gx, gy = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    x_map = gx.astype(np.float32)  # each network pixel holds its own x coordinate
    back = network_map_to_original(x_map, tf)
    assert back.shape == (100, 200)
    ox = (np.arange(200) + 0.5) * tf.scale[0] + tf.offset[0]
    inside = (ox >= tf.valid_box[0]) & (ox < tf.valid_box[2])
    if mode == "crop":
        assert not inside.all() and np.isnan(back[:, ~inside]).all()  # cropped-away columns are NaN
    else:
        assert inside.all()
    # each original pixel takes the network pixel holding its centre (x coordinate floor(ox) + 0.5)
    expected = np.clip(np.floor(ox), tf.valid_box[0], tf.valid_box[2] - 1) + 0.5
    np.testing.assert_array_equal(back[:, inside], np.broadcast_to(expected[inside], back[:, inside].shape))
    # masks survive network -> original -> network unchanged away from edges
    mask = np.zeros((100, 200), bool)
    mask[30:70, 60:150] = True
    network_mask = resize_mask(mask, tf)
    back_mask = network_map_to_original(network_mask, tf, fill=0)
    assert set(np.unique(back_mask)) <= {0.0, 1.0}
    disagree = (back_mask != mask) & inside[None, :]
    assert disagree.sum() <= 2 * (40 + 90)  # at most a one-pixel rim


def test_depth_maps_back_without_invented_depths():
    tf = make_transform((100, 50), (56, 28), "crop")
    depth = np.full((28, 56), 2.0, np.float32)
    depth[:, 28:] = 6.0
    depth[10:12, 5:8] = np.linspace(2.0, 2.02, 6, dtype=np.float32).reshape(2, 3)
    back = network_map_to_original(depth, tf, fill=0.0)
    assert set(np.unique(back)) <= set(np.unique(depth)) | {0.0}  # no depth between foreground and background
    assert back.dtype == np.float32 and (back == 6.0).any() and (back == 2.0).any()
