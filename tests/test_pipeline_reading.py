"""Reading side of ``page4d reconstruct``: discovery, sampling, streaming decode, masks (preprocessing:
``tests/test_preprocess_mapping.py``).

Fixtures are tiny videos / PNG folders written into tmp_path. Each frame carries its own frame number
as 8 black/white bars (bit k = bar k), so a test can tell exactly which frame was decoded.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from page4d_cli.pipeline.errors import InputError
from page4d_cli.pipeline.preprocess import (
    resize_mask,
)
from page4d_cli.pipeline.read_clip import read_clip
from page4d_cli.pipeline.sampling import plan_samples
from page4d_cli.pipeline.sources import discover_cameras, natural_key
from tests.helpers import SHARED, needs_shared

BITS = 8
SHARED_CLIP = SHARED / "data" / "dexycb-4view"


# ------------------------------------------------------------------------------------------ helpers
def index_frame(index: int, width: int = 160, height: int = 120) -> np.ndarray:
    """RGB uint8 frame whose middle band shows ``index`` in binary as 8 bars (white = 1)."""
    frame = np.full((height, width, 3), 90, dtype=np.uint8)
    bar = width // (BITS + 2)
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[height // 4: 3 * height // 4, (bit + 1) * bar:(bit + 2) * bar] = value
    return frame


def read_index(image_rgb: np.ndarray) -> int:
    """Inverse of ``index_frame`` for an image of any size ([H, W, 3] or [3, H, W], uint8 or [0, 1])."""
    image = np.asarray(image_rgb, dtype=np.float32)
    if image.shape[0] == 3:
        image = image.transpose(1, 2, 0)
    if image.max() <= 1.0:
        image = image * 255.0
    height, width = image.shape[:2]
    bar = width / (BITS + 2)
    index = 0
    for bit in range(BITS):
        x0, x1 = int((bit + 1.3) * bar), int((bit + 1.7) * bar)
        if image[int(height * 0.4): int(height * 0.6), x0:x1].mean() > 172:
            index |= 1 << bit
    return index


def write_video(path: Path, count: int, fps: float = 30.0, size=(160, 120), offset: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(count):
        writer.write(cv2.cvtColor(index_frame(i + offset, *size), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_image_folder(folder: Path, count: int, size=(160, 120), names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = names(i) if names else f"{i:03d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(index_frame(i, *size), cv2.COLOR_RGB2BGR))
    return folder


def video_rig(root: Path, names=("cam0", "cam1"), count: int = 12, **kwargs) -> Path:
    for name in names:
        write_video(root / f"{name}.mp4", count, **kwargs)
    return root


def assert_one_line_naming(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert name in message, message


def decoded_indices(batch) -> np.ndarray:
    """Frame number shown in each network image (read inside the camera's valid box)."""
    T, V = batch.frame_indices.shape
    boxes = [tf.valid_box for tf in batch.transforms]
    return np.array([[read_index(batch.images[t, v][:, boxes[v][1]:boxes[v][3], boxes[v][0]:boxes[v][2]])
                      for v in range(V)] for t in range(T)])


# ---------------------------------------------------------------------------------------- discovery
def test_index_frames_survive_encoding(tmp_path):
    path = write_video(tmp_path / "a.mp4", 5, offset=170)
    capture = cv2.VideoCapture(str(path))
    seen = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        seen.append(read_index(frame[..., ::-1]))
    assert seen == [170, 171, 172, 173, 174]


def test_natural_order_ref_camera_and_ignored_files(tmp_path):
    video_rig(tmp_path, names=("cam10", "cam2", "Cam1"), count=3)
    (tmp_path / "notes.txt").write_text("not a camera")
    (tmp_path / "calibration.json").write_text("{}")
    (tmp_path / ".hidden.mp4").write_bytes(b"junk")
    (tmp_path / "outputs").mkdir()  # a folder without images in a video layout: ignored
    cameras = discover_cameras(tmp_path)
    assert [cam.name for cam in cameras] == ["Cam1", "cam2", "cam10"]
    assert all(cam.kind == "video" and cam.num_frames == 3 and cam.size == (160, 120) for cam in cameras)
    assert cameras[0].fps == pytest.approx(30.0)
    moved = discover_cameras(tmp_path, ref_camera="cam10")
    assert [cam.name for cam in moved] == ["cam10", "Cam1", "cam2"]
    with pytest.raises(InputError) as error:
        discover_cameras(tmp_path, ref_camera="cam7")
    assert_one_line_naming(error, "cam7")
    assert "cam10" in str(error.value)


def test_natural_key_orders_numbers_by_value():
    assert sorted(["f10.png", "f9.png", "f100.png"], key=natural_key) == ["f9.png", "f10.png", "f100.png"]


def test_image_folders_frames_in_natural_order(tmp_path):
    for cam in ("cam1", "cam0"):
        write_image_folder(tmp_path / cam, 12, names=lambda i: f"{i + 1}.png")  # 1.png .. 12.png
    (tmp_path / "cam0" / "readme.txt").write_text("ignored")
    batch = read_clip(tmp_path, size=224)
    assert [cam.name for cam in batch.cameras] == ["cam0", "cam1"]
    assert batch.cameras[0].kind == "images" and batch.cameras[0].fps is None
    np.testing.assert_array_equal(batch.frame_indices[:, 0], np.arange(12))
    np.testing.assert_array_equal(decoded_indices(batch), batch.frame_indices)
    np.testing.assert_array_equal(batch.timestamps, batch.frame_indices.astype(float))


def test_upper_case_video_extension(tmp_path):
    write_video(tmp_path / "camA.MP4", 4)
    write_video(tmp_path / "camB.mov", 4)
    batch = read_clip(tmp_path, size=224)
    assert [cam.name for cam in batch.cameras] == ["camA", "camB"]


def test_single_camera_is_allowed_with_a_notice(tmp_path):
    video_rig(tmp_path, names=("solo",), count=4)
    batch = read_clip(tmp_path, size=224)
    assert batch.images.shape[:2] == (4, 1)
    assert any("only one camera" in w and "solo" in w for w in batch.warnings)


# ------------------------------------------------------------------------------------- bad inputs
def _corrupt_video(root: Path) -> str:
    video_rig(root, names=("cam0",), count=4)
    (root / "cam1.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    return "cam1.mp4"


def _empty_video(root: Path) -> str:
    video_rig(root, names=("cam0",), count=4)
    (root / "cam1.mp4").write_bytes(b"")
    return "cam1.mp4"


def _mixed_layout(root: Path) -> str:
    video_rig(root, names=("cam0",), count=4)
    write_image_folder(root / "cam1", 4)
    return "cam1/"


def _camera_without_frames(root: Path) -> str:
    write_image_folder(root / "cam0", 4)
    (root / "cam1").mkdir()
    return "cam1"


def _garbage_image(root: Path) -> str:
    write_image_folder(root / "cam0", 4)
    write_image_folder(root / "cam1", 4)
    (root / "cam1" / "002.png").write_bytes(b"this is not a png")
    return "002.png"


def _truncated_image(root: Path) -> str:
    write_image_folder(root / "cam0", 4)
    write_image_folder(root / "cam1", 4)
    data = (root / "cam1" / "001.png").read_bytes()
    (root / "cam1" / "001.png").write_bytes(data[: len(data) // 3])  # valid signature, broken data
    return "001.png"


def _image_size_changes(root: Path) -> str:
    write_image_folder(root / "cam0", 4)
    write_image_folder(root / "cam1", 4)
    cv2.imwrite(str(root / "cam1" / "003.png"), np.zeros((60, 80, 3), np.uint8))
    return "003.png"


def _empty_folder(root: Path) -> str:
    return root.name


def _images_at_top_level(root: Path) -> str:
    write_image_folder(root, 3)
    return root.name


def _duplicate_camera_names(root: Path) -> str:
    write_video(root / "cam0.mp4", 3)
    write_video(root / "cam0.avi", 3)
    return "cam0.avi"


@pytest.mark.parametrize("make_bad_input", [
    _corrupt_video, _empty_video, _mixed_layout, _camera_without_frames, _garbage_image, _truncated_image,
    _image_size_changes, _empty_folder, _images_at_top_level, _duplicate_camera_names])
def test_bad_input_is_one_line_naming_the_file(tmp_path, make_bad_input):
    root = tmp_path / "cams"
    root.mkdir()
    name = make_bad_input(root)
    with pytest.raises(InputError) as error:
        read_clip(root, size=224)
    assert_one_line_naming(error, name)


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(InputError) as error:
        read_clip(tmp_path / "nope", size=224)
    assert_one_line_naming(error, "nope")
    path = write_video(tmp_path / "cam0.mp4", 2)
    with pytest.raises(InputError) as error:
        read_clip(path, size=224)
    assert_one_line_naming(error, "cam0.mp4")


def test_bad_options(tmp_path):
    video_rig(tmp_path, count=6)
    for options, named in [({"size": 500}, "--size 500"), ({"mode": "stretch"}, "stretch"),
                           ({"frames": 0}, "--frames 0"), ({"stride": 0}, "--stride 0"),
                           ({"start": 6}, "--start 6"), ({"end": 9}, "--end 9"),
                           ({"masks_dir": tmp_path, "auto_masks": True}, "--auto-masks")]:
        with pytest.raises(InputError) as error:
            read_clip(tmp_path, **{"size": 224, **options})
        assert_one_line_naming(error, named)


# ---------------------------------------------------------------------------------------- sampling
def test_frames_larger_than_available_says_how_many(tmp_path):
    video_rig(tmp_path, count=24)
    with pytest.raises(InputError) as error:
        read_clip(tmp_path, frames=30, size=224)
    assert_one_line_naming(error, "--frames 30")
    assert "24" in str(error.value)


def test_start_end_stride_and_even_spread(tmp_path):
    video_rig(tmp_path, count=24)
    def picked(**options):
        cameras = discover_cameras(tmp_path)
        return plan_samples(cameras, **options).frame_indices[:, 0].tolist()
    assert picked(start=2, end=20, stride=3) == [2, 5, 8, 11, 14, 17]
    assert picked(frames=4, stride=5) == [0, 5, 10, 15]
    assert picked(frames=5, start=4, end=14) == [4, 6, 9, 11, 13]
    assert picked(frames=3) == [0, 12, 23]
    assert picked() == list(range(24))
    with pytest.raises(InputError) as error:
        picked(frames=6, stride=5)
    assert "5 frames are available" in str(error.value)


def test_different_frame_counts_use_common_span(tmp_path):
    write_video(tmp_path / "cam0.mp4", 24)
    write_video(tmp_path / "cam1.mp4", 20)
    batch = read_clip(tmp_path, frames=6, size=224)
    assert batch.frame_indices[:, 1].max() == 19
    np.testing.assert_array_equal(batch.frame_indices[:, 0], batch.frame_indices[:, 1])
    np.testing.assert_array_equal(decoded_indices(batch), batch.frame_indices)
    warning = next(w for w in batch.warnings if "frame counts" in w)
    assert "cam0: 24" in warning and "cam1: 20" in warning


def test_different_frame_rates_sample_by_timestamp(tmp_path):
    write_video(tmp_path / "cam0.mp4", 30, fps=30.0)
    write_video(tmp_path / "cam1.mp4", 10, fps=10.0)
    batch = read_clip(tmp_path, size=224)
    assert batch.frame_indices.shape == (29, 2)  # cam1's last frame (t = 0.9 s) is nearest to cam0 frame 28
    # Every sample uses the cam1 frame nearest in time to cam0's frame.
    gap = np.abs(batch.timestamps[:, 1] - batch.timestamps[:, 0])
    assert gap.max() <= 0.5 / 10.0 + 1e-9
    np.testing.assert_allclose(batch.timestamps[:, 0], batch.frame_indices[:, 0] / 30.0)
    np.testing.assert_array_equal(decoded_indices(batch), batch.frame_indices)
    assert any("frame rates" in w and "10 fps" in w for w in batch.warnings)


def test_different_resolutions_keep_own_transforms(tmp_path):
    write_video(tmp_path / "cam0.mp4", 5, size=(160, 120))
    write_video(tmp_path / "cam1.mp4", 5, size=(320, 180))
    batch = read_clip(tmp_path, size=224, mode="pad")  # pad keeps cam1's full width (bars at the sides)
    assert batch.images.shape == (5, 2, 3, 168, 224)
    assert [tf.original_size for tf in batch.transforms] == [(160, 120), (320, 180)]
    assert batch.transforms[0].scale != batch.transforms[1].scale
    np.testing.assert_array_equal(decoded_indices(batch), batch.frame_indices)
    assert any("different resolutions" in w for w in batch.warnings)


# ---------------------------------------------------------------------------------- streaming decode
def test_decoding_streams_only_the_needed_frames(tmp_path, monkeypatch):
    video_rig(tmp_path, count=40)
    calls = {"retrieve": 0, "read": 0}
    real_capture = cv2.VideoCapture

    class CountingCapture:
        def __init__(self, *args):
            self._inner = real_capture(*args)

        def retrieve(self, *args):
            calls["retrieve"] += 1
            return self._inner.retrieve(*args)

        def read(self, *args):
            calls["read"] += 1
            return self._inner.read(*args)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    cameras = discover_cameras(tmp_path)  # probing may read; only the decoding is counted
    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)
    progress = []
    batch = read_clip(tmp_path, frames=5, start=7, end=37, size=224, progress=lambda d, t: progress.append((d, t)))
    assert len(cameras) == 2
    np.testing.assert_array_equal(batch.frame_indices[:, 0], [7, 14, 22, 29, 36])
    np.testing.assert_array_equal(decoded_indices(batch), batch.frame_indices)
    decode_retrieves = calls["retrieve"]
    assert decode_retrieves == 5 * 2  # one retrieve per needed frame, per camera
    assert progress[-1] == (10, 10) and [d for d, _ in progress] == sorted(d for d, _ in progress)


# --------------------------------------------------------------------------------------------- masks
def square_mask(index: int, size=(160, 120)) -> np.ndarray:
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[20:60, 10 + 5 * index: 40 + 5 * index] = 255
    return mask


def test_external_masks_png_folders_and_videos(tmp_path):
    cams = video_rig(tmp_path / "cams", count=12)
    masks = tmp_path / "masks"
    (masks / "cam0").mkdir(parents=True)
    for i in range(12):
        cv2.imwrite(str(masks / "cam0" / f"{i}.png"), square_mask(i))  # natural order: 0..11
    writer = cv2.VideoWriter(str(masks / "cam1.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (160, 120))
    for i in range(12):
        writer.write(cv2.cvtColor(square_mask(i), cv2.COLOR_GRAY2BGR))
    writer.release()
    batch = read_clip(cams, frames=4, size=224, masks_dir=masks)
    assert batch.ext_masks.shape == (4, 2, 168, 224) and batch.ext_masks.dtype == np.float32
    assert set(np.unique(batch.ext_masks)) == {0.0, 1.0}
    for t, index in enumerate(batch.frame_indices[:, 0]):
        expected = resize_mask(square_mask(index), batch.transforms[0])
        np.testing.assert_array_equal(batch.ext_masks[t, 0], expected)
        from_video = batch.ext_masks[t, 1]
        assert np.mean(from_video != expected) < 0.01  # lossy video: only edge pixels may differ


def test_external_mask_errors_name_the_file(tmp_path):
    cams = video_rig(tmp_path / "cams", count=6)
    masks = tmp_path / "masks"
    for i in range(6):
        (masks / "cam0").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(masks / "cam0" / f"{i:02d}.png"), square_mask(0))
    with pytest.raises(InputError) as error:  # no masks for cam1
        read_clip(cams, size=224, masks_dir=masks)
    assert_one_line_naming(error, "cam1")
    (masks / "cam1").mkdir()
    for i in range(4):
        cv2.imwrite(str(masks / "cam1" / f"{i:02d}.png"), square_mask(0))
    with pytest.raises(InputError) as error:  # too few masks
        read_clip(cams, size=224, masks_dir=masks)
    assert_one_line_naming(error, "cam1")
    assert "4 masks" in str(error.value)
    for i in range(4, 6):
        cv2.imwrite(str(masks / "cam1" / f"{i:02d}.png"), square_mask(0))
    cv2.imwrite(str(masks / "cam1" / "03.png"), np.zeros((60, 80), np.uint8))  # wrong size
    with pytest.raises(InputError) as error:
        read_clip(cams, size=224, masks_dir=masks)
    assert_one_line_naming(error, "03.png")
    with pytest.raises(InputError) as error:
        read_clip(cams, size=224, masks_dir=tmp_path / "no_masks")
    assert_one_line_naming(error, "no_masks")


def test_auto_masks_find_a_moving_square(tmp_path):
    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
    squares = []
    writer = cv2.VideoWriter(str(tmp_path / "cam0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (160, 120))
    for i in range(20):
        frame = background.copy()
        x, y = 10 + 6 * i, 30 + 2 * i
        frame[y:y + 30, x:x + 30] = (30, 220, 60)
        mask = np.zeros((120, 160), bool)
        mask[y:y + 30, x:x + 30] = True
        squares.append(mask)
        writer.write(frame)
    writer.release()
    batch = read_clip(tmp_path, frames=5, size=224, auto_masks=True)
    for t, index in enumerate(batch.frame_indices[:, 0]):
        truth = resize_mask(squares[index], batch.transforms[0]) > 0
        found = batch.ext_masks[t, 0] > 0
        iou = (truth & found).sum() / (truth | found).sum()
        assert iou > 0.7, (index, iou)


# ------------------------------------------------------------------------------------ real clip
@needs_shared("data", "dexycb-4view")
def test_real_dexycb_clip_with_external_masks():
    batch = read_clip(SHARED_CLIP, frames=24, masks_dir=SHARED_CLIP / "masks")
    assert [cam.name for cam in batch.cameras] == ["cam0", "cam1", "cam2", "cam3"]
    assert all(cam.size == (640, 480) and cam.num_frames == 24 for cam in batch.cameras)
    assert batch.images.shape == (24, 4, 3, 392, 518)
    assert batch.ext_masks.shape == (24, 4, 392, 518)
    np.testing.assert_array_equal(batch.frame_indices, np.repeat(np.arange(24)[:, None], 4, axis=1))
    fraction = batch.ext_masks.mean()
    assert 0.005 < fraction < 0.6
    first = cv2.imread(str(SHARED_CLIP / "masks" / "cam2" / "005.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(batch.ext_masks[5, 2], resize_mask(first, batch.transforms[2]))
    assert batch.warnings == []
