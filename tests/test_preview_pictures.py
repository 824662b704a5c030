"""Previews of a known synthetic output: the overview puts the right colours where the depth says, the
trajectory plot puts the cameras where they are, every file is written with the expected size."""

from __future__ import annotations

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

from page4d_cli.pipeline.preprocess import make_transform
from page4d_cli.preview import PreviewOptions, write_previews
from page4d_cli.preview.grid import DEPTH_COLUMN, GridLayout
from page4d_cli.preview.source import PreviewClip
from page4d_cli.preview.trajectory import project, trajectory_figure
from page4d_cli.preview.write import network_image_to_original
from tests.preview_fixtures import FAR, NEAR, ORIGINAL, camera_centres, known_clip


def _turbo(level: int) -> np.ndarray:
    """Turbo's colour at a level, straight from OpenCV (independent of the preview's own lookup)."""
    bgr = cv2.applyColorMap(np.array([[level]], dtype=np.uint8), cv2.COLORMAP_TURBO)[0, 0]
    return bgr[::-1].astype(int)


@pytest.fixture(scope="module")
def previews(tmp_path_factory):
    pred, batch = known_clip(num_instants=3)
    out = tmp_path_factory.mktemp("preview")
    record = write_previews(out, pred, batch, PreviewOptions(tile_width=64))
    return out, record, pred, batch


def test_overview_shows_the_two_known_depths_in_their_colours(previews):
    out, record, pred, batch = previews
    # Half the depth is NEAR and half FAR: the robust range is exactly [NEAR, FAR].
    assert record["depth_colour_range"] == pytest.approx([NEAR, FAR])
    overview = cv2.cvtColor(cv2.imread(str(out / "preview" / "overview.png")), cv2.COLOR_BGR2RGB).astype(int)
    layout = GridLayout.for_clip(PreviewClip(pred, batch), len(record["overview_instants"]), tile_width=64)
    assert overview.shape[:2] == (layout.size[1], layout.size[0])
    for section in range(layout.num_sections):
        for v in range(2):
            x0, y0, x1, y1 = layout.tile_box(section, v, DEPTH_COLUMN)
            near = overview[(y0 + y1) // 2, x0 + (x1 - x0) // 4]  # left half of the tile
            far = overview[(y0 + y1) // 2, x0 + 3 * (x1 - x0) // 4]  # right half
            assert np.abs(near - _turbo(0)).max() <= 2
            assert np.abs(far - _turbo(255)).max() <= 2
            assert near[2] > near[0] and far[0] > far[2]  # near is blue, far is red


def test_overview_mask_column_tints_only_the_dynamic_rows(previews):
    out, record, pred, batch = previews
    overview = cv2.cvtColor(cv2.imread(str(out / "preview" / "overview.png")), cv2.COLOR_BGR2RGB).astype(int)
    layout = GridLayout.for_clip(PreviewClip(pred, batch), len(record["overview_instants"]), tile_width=64)
    x0, y0, x1, y1 = layout.tile_box(0, 1, 2)  # camera 1: top third dynamic
    top = overview[y0 + 2:y0 + (y1 - y0) // 3 - 2, x0:x1]
    bottom = overview[y0 + (y1 - y0) // 2:y1, x0:x1]
    assert (top[..., 0] - top[..., 1]).mean() > 60  # red tint
    assert abs((bottom[..., 0] - bottom[..., 1]).mean()) < 20  # plain (darkened) input
    x0, y0, x1, y1 = layout.tile_box(0, 0, 2)  # camera 0: nothing dynamic
    assert abs((overview[y0:y1, x0:x1, 0] - overview[y0:y1, x0:x1, 1]).mean()) < 20


def test_projection_of_the_plot_panels():
    points = np.array([[1.0, 2.0, 3.0], [-1.0, -2.0, 0.5]])
    assert np.allclose(project(points, "top"), [[1.0, 3.0], [-1.0, 0.5]])  # x right, z up the page
    assert np.allclose(project(points, "side"), [[3.0, -2.0], [0.5, 2.0]])  # z right, up = -y
    with pytest.raises(ValueError, match="unknown view"):
        project(points, "front")


def test_trajectory_plot_puts_every_camera_where_it_is():
    pred, _ = known_clip(num_instants=4)
    centres = camera_centres(pred)
    assert np.allclose(centres[3, 1], [1.0, 0.0, 1.5])  # the fixture's own statement, checked
    figure = trajectory_figure(pred.extrinsic, ["cam00", "cam01"])
    for axes, view in zip(figure.axes[:2], ("top", "side")):
        lines = {line.get_label(): line for line in axes.get_lines()}
        for v, label in enumerate(["cam00", "cam01"]):
            xy = np.stack([lines[label].get_xdata(), lines[label].get_ydata()], axis=-1)
            assert np.allclose(xy, project(centres[:, v], view))
        assert axes.get_aspect() == 1.0  # equal axis scales
        stars = [line for line in axes.get_lines() if line.get_marker() == "*"]
        assert len(stars) == 1 and np.allclose(stars[0].get_xydata(), project(centres[0, 0], view))


def test_preview_files_and_sizes(previews):
    out, record, _, _ = previews
    folder = out / "preview"
    assert record["video"] == "preview/depth.mp4"
    reader = imageio.get_reader(folder / "depth.mp4")
    frames = [frame for frame in reader]
    assert len(frames) == 3
    overview_width = cv2.imread(str(folder / "overview.png")).shape[1]
    assert frames[0].shape[1] == overview_width + (-overview_width) % 16
    trajectory = cv2.imread(str(folder / "trajectory.png"))
    assert trajectory.shape[:2] == (520, 1100)
    for t in range(3):
        for v in range(2):
            frame = cv2.imread(str(out / record["frames"].format(t=t, v=v)))
            assert frame.shape[:2] == (ORIGINAL[1], ORIGINAL[0])


def test_gif_when_mp4_is_not_allowed(tmp_path):
    pred, batch = known_clip(num_instants=2)
    record = write_previews(tmp_path, pred, batch, PreviewOptions(tile_width=32, allow_mp4=False, frames=False))
    assert record["video"] == "preview/depth.gif" and "frames" not in record
    assert len(imageio.mimread(tmp_path / "preview" / "depth.gif")) == 2


def bilinear_to_original(image: np.ndarray, transform) -> np.ndarray:
    """Reference: each original pixel centre mapped into the network image (pixel-centre convention), bilinear
    between the network pixels of the content box (clamped to it); centres outside the box are 0."""
    (sx, sy), (ox, oy) = transform.scale, transform.offset
    x0, y0, x1, y1 = transform.valid_box
    width, height = transform.original_size
    xs, ys = (np.arange(width) + 0.5) * sx + ox, (np.arange(height) + 0.5) * sy + oy

    def corners(pos, lo, hi):
        left = np.floor(pos - 0.5)
        weight = (pos - 0.5 - left)
        return np.clip(left, lo, hi).astype(int), np.clip(left + 1, lo, hi).astype(int), weight

    (c0, c1, wx), (r0, r1, wy) = corners(xs, x0, x1 - 1), corners(ys, y0, y1 - 1)
    wx, wy = wx[None, :, None], wy[:, None, None]
    top = image[r0][:, c0] * (1 - wx) + image[r0][:, c1] * wx
    bottom = image[r1][:, c0] * (1 - wx) + image[r1][:, c1] * wx
    out = top * (1 - wy) + bottom * wy
    out[~((ys >= y0) & (ys < y1))] = 0
    out[:, ~((xs >= x0) & (xs < x1))] = 0
    return out


@pytest.mark.parametrize("original, network, mode", [((640, 480), (518, 392), "crop"), ((640, 480), (518, 518), "pad"),
                                                     ((300, 500), (224, 168), "crop")])
def test_input_frames_follow_the_reference_mapping(original, network, mode):
    transform = make_transform(original, network, mode)
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur((rng.random((network[1], network[0], 3)) * 255).astype(np.uint8), (0, 0), 3)
    reference = bilinear_to_original(image.astype(np.float32), transform)
    got = network_image_to_original(image, transform)
    assert got.shape == reference.shape
    assert np.abs(got.astype(float) - reference).max() <= 1.0  # rounding only


def test_colour_range_labels_and_constant_maps():
    from page4d_cli.preview.colors import ValueRange, format_range, robust_range

    assert format_range(ValueRange(1.0707, 1.0803)) == ("1.0707", "1.0803")  # narrow range: enough decimals
    assert format_range(ValueRange(1.3, 5.2)) == ("1.3", "5.2")
    assert format_range(ValueRange(10.0, 250.0)) == ("10", "250")
    flat = robust_range(np.full((4, 4), 2.0))
    assert flat.constant and flat.low < 2.0 < flat.high
    assert robust_range(np.zeros((4, 4))).constant  # nothing valid
    assert not robust_range(np.array([1.0, 2.0, 3.0])).constant
