"""External masks are matched to frames by name, never by position.

A user's masks folder with one file missing must fail naming that file (not shift the next mask onto
the frame), and the ``masks/camXX/frame_TTTT.png`` folder a ``reconstruct`` run writes can be fed back.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from page4d_cli.pipeline.errors import InputError
from page4d_cli.pipeline.preprocess import resize_mask
from page4d_cli.pipeline.read_clip import read_clip
from tests.helpers import CAMS, tiny_run
from tests.test_pipeline_reading import square_mask, video_rig, write_image_folder


def write_masks(folder, numbers, name=lambda i: f"{i:03d}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in numbers:
        cv2.imwrite(str(folder / name(i)), square_mask(i))  # the square's position encodes the frame


def assert_masks_are_of_frames(batch, v):
    for t, index in enumerate(batch.frame_indices[:, v]):
        expected = resize_mask(square_mask(int(index)), batch.transforms[v])
        np.testing.assert_array_equal(batch.ext_masks[t, v], expected, err_msg=f"instant {t}: frame {index}")


def test_a_missing_mask_is_named_and_never_replaced_by_the_next_one(tmp_path):
    cams = video_rig(tmp_path / "cams", count=12)
    masks = tmp_path / "masks"
    write_masks(masks / "cam0", [i for i in range(12) if i != 8])  # 008.png missing
    write_masks(masks / "cam1", range(12), name=lambda i: f"frame_{i:04d}.png")
    with pytest.raises(InputError) as error:
        read_clip(cams, frames=None, size=224, masks_dir=masks)  # every frame, 8 included
    message = str(error.value)
    assert "\n" not in message and str(masks / "cam0" / "008.png") in message, message
    assert "frame 8 of cam0" in message

    # Frames that skip 8 (0, 3, 6, 9) read fine, each with its own mask: 009.png is frame 9, not 8.
    batch = read_clip(cams, frames=None, stride=3, size=224, masks_dir=masks)
    assert batch.frame_indices[:, 0].tolist() == [0, 3, 6, 9]
    assert_masks_are_of_frames(batch, 0)
    assert_masks_are_of_frames(batch, 1)  # frame_TTTT.png names, matched by number too


def test_image_folder_cameras_match_masks_by_frame_stem(tmp_path):
    cams = tmp_path / "cams"
    for camera in ("cam0", "cam1"):
        write_image_folder(cams / camera, 6, names=lambda i: f"img_{i + 1:04d}.jpg")  # frame k is img_{k+1}
    masks = tmp_path / "masks"
    for camera in ("cam0", "cam1"):
        (masks / camera).mkdir(parents=True)
        for k in range(6):
            cv2.imwrite(str(masks / camera / f"img_{k + 1:04d}.png"), square_mask(k))
    batch = read_clip(cams, frames=None, size=224, masks_dir=masks)
    assert_masks_are_of_frames(batch, 0)
    (masks / "cam1" / "img_0004.png").unlink()
    with pytest.raises(InputError) as error:
        read_clip(cams, frames=None, size=224, masks_dir=masks)
    assert str(masks / "cam1" / "img_0004.png") in str(error.value)


@pytest.mark.slow
def test_a_runs_masks_folder_can_be_fed_back(tmp_path):
    first = tmp_path / "first"
    tiny_run(CAMS, first, "--frames", 3, "--size", 70)
    cameras = json.loads((first / "cameras.json").read_text())["cameras"]
    assert sorted(p.name for p in (first / "masks").iterdir()) == [camera["dir"] for camera in cameras]

    batch = read_clip(CAMS, frames=3, size=70, masks_dir=first / "masks")
    for v, camera in enumerate(batch.cameras):
        entry = next(c for c in cameras if c["name"] == camera.name)
        for t in range(3):
            assert entry["frames"][t]["source_frame"] == batch.frame_indices[t, v]
            written = cv2.imread(str(first / "masks" / entry["dir"] / f"frame_{t:04d}.png"), cv2.IMREAD_GRAYSCALE)
            np.testing.assert_array_equal(batch.ext_masks[t, v], resize_mask(written, batch.transforms[v]))

    # The same folder through the CLI; a frame the first run did not sample is named as missing.
    second = tmp_path / "second"
    run = tiny_run(CAMS, second, "--frames", 3, "--size", 70, "--masks", first / "masks")
    assert run["input"]["masks"]["source"] == "external"
    with pytest.raises(InputError) as error:
        read_clip(CAMS, frames=4, size=70, masks_dir=first / "masks")
    kept = [frame["source_frame"] for frame in cameras[0]["frames"]]
    assert "no mask for frame" in str(error.value), error.value
    assert f"sampled frames {', '.join(map(str, kept))}" in str(error.value)
    (first / "masks" / "cam01" / "frame_0002.png").unlink()
    with pytest.raises(InputError) as error:
        read_clip(CAMS, frames=3, size=70, masks_dir=first / "masks")
    assert str(first / "masks" / "cam01" / "frame_0002.png") in str(error.value)
