"""The network's notices (``models.errors.NetworkWarning``) reach the user through the reporter, once each:
``pipeline.predict.network_warnings_to`` routes them; other warnings pass through unchanged."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

import models.layers.attention as attention
from models.errors import NetworkWarning
from models.vggt import VGGT
from page4d_cli.pipeline import reconstruct as pipeline
from page4d_cli.pipeline.predict import network_warnings_to
from page4d_cli.pipeline.reconstruct import ReconstructOptions, reconstruct
from page4d_cli.pipeline.types import Reporter
from tests.helpers import CAMS, random_images


def test_each_distinct_network_warning_reaches_the_report_once_and_others_pass_through():
    lines: list[str] = []
    with pytest.warns(DeprecationWarning, match="not ours") as passed:
        with network_warnings_to(lines.append):
            for _ in range(3):
                warnings.warn("epipolar prior: pair (0, 1)\n  skipped", NetworkWarning)
            warnings.warn("FlexAttention unavailable", NetworkWarning)
            warnings.warn("not ours", DeprecationWarning)
    assert lines == ["epipolar prior: pair (0, 1) skipped", "FlexAttention unavailable"]
    assert [w.category for w in passed] == [DeprecationWarning]  # the network's never reach Python's channel
    with pytest.warns(NetworkWarning, match="after the context"):  # the routing ends with the context
        warnings.warn("after the context", NetworkWarning)
    assert lines == ["epipolar prior: pair (0, 1) skipped", "FlexAttention unavailable"]


def test_a_user_filter_turning_warnings_into_errors_still_applies_to_other_categories():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lines: list[str] = []
        with network_warnings_to(lines.append):
            warnings.warn("routed", NetworkWarning)
            with pytest.raises(RuntimeWarning):
                warnings.warn("raised as the filter says", RuntimeWarning)
    assert lines == ["routed"]


def cameras(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """K [B, T, V, 3, 3] (network pixels) and world-to-camera E [B, T, V, 4, 4]: cameras 0 and 1 share a
    centre (1 turns about it), the others stand on a line 1 unit apart."""
    B, T, V, _, H, W = images.shape
    K = torch.tensor([[W, 0.0, W / 2], [0.0, W, H / 2], [0.0, 0.0, 1.0]])
    E = torch.eye(4).repeat(V, 1, 1)
    turn = math.radians(20)
    E[1, :3, :3] = torch.tensor([[math.cos(turn), 0, math.sin(turn)], [0, 1, 0], [-math.sin(turn), 0, math.cos(turn)]])
    for v in range(2, V):
        E[v, 0, 3] = -float(v)  # centre at x = v
    return K.expand(B, T, V, 3, 3), E.expand(B, T, V, 4, 4)


def test_the_epipolar_prior_on_a_rig_without_baseline_reports_one_line_naming_the_pair():
    torch.manual_seed(0)
    model = VGGT.from_preset("tiny", enable_epipolar_prior=True).eval()
    images = random_images(T=2, V=3, H=42, W=42)
    K, E = cameras(images)
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        with network_warnings_to(lines.append), torch.no_grad():
            model(images, intrinsics=K, extrinsics=E)
            model(images, intrinsics=K, extrinsics=E)  # a second pass (a window): the same notice, not repeated
    assert len(lines) == 1, lines
    assert "2 camera pair(s) share a camera centre" in lines[0]
    assert "(b=0, t=0, cams 0-1)" in lines[0] and "(b=0, t=1, cams 0-1)" in lines[0]
    assert not [w for w in raw if issubclass(w.category, NetworkWarning)]


class Recorder(Reporter):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)


@pytest.mark.slow
def test_reconstruct_hands_network_warnings_to_the_reporter_and_run_json_once(tmp_path, monkeypatch, recwarn):
    """Two windows through a real tiny network with the epipolar prior on a rig where cameras 0 and 1 share a
    centre, and FlexAttention failing to compile. ``reconstruct`` gives the network no cameras and runs
    FlexAttention only on CUDA, so the test wraps the loaded network (cameras passed to every forward,
    nonzero mask-bias lambdas so a bias reaches the attention) and makes FlexAttention apply and fail."""

    def load_with_prior(options, selection, policy, finetuned=None):
        torch.manual_seed(options.seed)
        model = VGGT.from_preset(options.preset, enable_epipolar_prior=True).eval()
        with torch.no_grad():
            for name in model.aggregator.mask_bias.NAMES:
                getattr(model.aggregator.mask_bias, name).fill_(1.0)
        forward = model.forward

        def forward_with_cameras(images, *args, **kwargs):
            K, E = cameras(images)
            return forward(images, *args, intrinsics=K, extrinsics=E, **kwargs)

        model.forward = forward_with_cameras
        return model, None

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no compiler for this test\n(traceback lines follow)")

    monkeypatch.setattr(pipeline, "load_network", load_with_prior)
    monkeypatch.setattr(attention, "_flex_applies", lambda *args: True)
    monkeypatch.setattr(attention, "flex_biased_attention", no_compiler)
    monkeypatch.setattr(attention, "_flex_broken", False)
    reporter = Recorder()
    options = ReconstructOptions(frames=3, size=70, preset="tiny", weights="random", out=tmp_path / "out",
                                 max_images_per_pass=8, overlap=1, preview=False)
    result = reconstruct(CAMS, options, progress=reporter)

    assert len(result.windows) == 2
    epipolar = [line for line in reporter.warnings if "share a camera centre" in line]
    flex = [line for line in reporter.warnings if "FlexAttention" in line]
    assert len(epipolar) == 1 and "cams 0-1" in epipolar[0] and "cams 2-3" not in epipolar[0]
    assert flex == ["FlexAttention unavailable (RuntimeError: no compiler for this test); "
                    "using padded bias channels instead"]
    recorded = json.loads((tmp_path / "out" / "run.json").read_text())["warnings"]
    assert recorded.count(epipolar[0]) == 1 and recorded.count(flex[0]) == 1
    assert not [w for w in recwarn if issubclass(w.category, NetworkWarning)]  # nothing as a raw UserWarning


@pytest.mark.slow
def test_training_logs_each_network_warning_once(tmp_path, monkeypatch, recwarn):
    """Every training forward emits the same notice (as the network would from a layer): logged once."""
    from page4d_cli.train.loop import train
    from tests.train_fakes import FakeClipDataset, tiny_config

    forward = VGGT.forward

    def forward_with_notice(self, *args, **kwargs):
        warnings.warn("FlexAttention unavailable (test); using padded bias channels instead", NetworkWarning)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(VGGT, "forward", forward_with_notice)
    reporter = Recorder()
    cfg = tiny_config(tmp_path, steps=2, size=28)
    train(cfg, dataset=FakeClipDataset(length=2, frames=2, cameras=2, size=28), reporter=reporter)
    assert [line for line in reporter.warnings if "FlexAttention" in line] == [
        "FlexAttention unavailable (test); using padded bias channels instead"]
    assert not [w for w in recwarn if issubclass(w.category, NetworkWarning)]
