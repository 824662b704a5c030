"""Run the PAGE-4D network on a ``ClipBatch`` and hand back a numpy ``Prediction``.

    predictor = NetworkPredictor(model, select_device("auto"))
    prediction = predictor(batch, progress=lambda done, total, detail: ...)

One call is one forward pass over every (t, v) image of the batch (windowing long clips is the
caller's job, see ``reconstruct``). Progress is reported per stage of the forward pass (encode, each
aggregator layer, each head) through forward hooks, so the model itself needs no callback argument;
a model without those sub-modules simply reports less often.

The network speaks to the user only through ``warnings.warn(..., models.errors.NetworkWarning)`` (it
knows no reporter); ``network_warnings_to(report)`` around the forward passes hands each distinct one,
as one line, to ``report`` (``reconstruct``'s warnings, the training log).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from models.errors import NetworkWarning, one_line
from page4d_cli.pipeline.device import DevicePolicy
from page4d_cli.pipeline.types import ClipBatch, Prediction

# progress(done, total, detail): units of one forward pass (encode + layers + heads).
PassProgress = Optional[Callable[[int, int, str], None]]
HEAD_NAMES = ("camera_head", "depth_head", "point_head")


class NetworkPredictor:
    """Callable ``ClipBatch -> Prediction`` around a loaded network and a device policy."""

    def __init__(self, model: nn.Module, policy: DevicePolicy, skip_heads: tuple[str, ...] = ()) -> None:
        """skip_heads: heads not run (e.g. ``("point_head",)`` when no output needs the point map: it costs
        as much time and memory as the depth head). Their outputs are None in the prediction."""
        self.model = model.to(policy.device).eval()
        self.policy = policy
        self.skip_heads = tuple(name for name in skip_heads if getattr(model, name, None) is not None)

    @property
    def units_per_pass(self) -> int:
        """How many progress units one forward pass reports (encode + aggregator layers + heads)."""
        with _without(self.model, self.skip_heads):
            return len(_progress_stages(self.model)[1]) + 1

    def __call__(self, batch: ClipBatch, progress: PassProgress = None) -> Prediction:
        device = self.policy.device
        images = torch.from_numpy(np.ascontiguousarray(batch.images))[None].to(device)
        ext_mask = None
        if batch.ext_masks is not None:
            ext_mask = torch.from_numpy(np.ascontiguousarray(batch.ext_masks, dtype=np.float32))[None].to(device)
        with self.policy.inference(), _without(self.model, self.skip_heads), _reporting(self.model, progress):
            output = self.model(images, ext_mask=ext_mask)
        output.pop("images", None)  # the input, handed back: not part of the prediction
        return prediction_from_output(output)


@contextlib.contextmanager
def network_warnings_to(report: Callable[[str], None]) -> Iterator[None]:
    """Inside: each distinct ``NetworkWarning`` goes to ``report`` (one line) once, as it is raised.

    Every other warning is left alone: same filters, shown by the ``warnings.showwarning`` in force
    before (the terminal, or pytest's recorder). Not thread-safe (nor is ``warnings``).
    """
    seen: set[str] = set()
    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        passed_on = warnings.showwarning
        warnings.simplefilter("always", NetworkWarning)  # a repeat must reach us, not a user's filter

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if not issubclass(category, NetworkWarning):
                passed_on(message, category, filename, lineno, file, line)
                return
            text = one_line(message)
            if text not in seen:
                seen.add(text)
                report(text)

        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _without(model: nn.Module, heads: tuple[str, ...]) -> Iterator[None]:
    """Run ``model`` with the named heads detached (the network skips a head that is None)."""
    saved = {name: getattr(model, name) for name in heads}
    try:
        for name in heads:
            setattr(model, name, None)
        yield
    finally:
        for name, head in saved.items():
            setattr(model, name, head)


def prediction_from_output(output: dict) -> Prediction:
    """The network's dict (batch of one) -> ``Prediction`` (numpy float32, 4 x 4 extrinsics).

    extrinsic ``[1, T, V, 3, 4]`` -> ``[T, V, 4, 4]``; depth ``[1, T, V, H, W, 1]`` -> ``[T, V, H, W]``;
    ``mask_image`` (dynamic probability at image resolution) -> ``dynamic_mask``. Optional outputs
    (point head, mask) are None when the model does not produce them.
    """

    def numpy(name: str) -> Optional[np.ndarray]:
        value = output.get(name)
        if value is None:
            return None
        if value.shape[0] != 1:
            raise ValueError(f"expected a batch of one clip, got {name} with shape {tuple(value.shape)}")
        return value[0].detach().float().cpu().numpy()

    extrinsic_3x4 = numpy("extrinsic")
    num_t, num_v = extrinsic_3x4.shape[:2]
    extrinsic = np.zeros((num_t, num_v, 4, 4), dtype=np.float32)
    extrinsic[..., :3, :] = extrinsic_3x4
    extrinsic[..., 3, 3] = 1.0
    return Prediction(
        extrinsic=extrinsic,
        intrinsic=numpy("intrinsic"),
        depth=numpy("depth")[..., 0],
        depth_conf=numpy("depth_conf"),
        world_points=numpy("world_points"),
        world_points_conf=numpy("world_points_conf"),
        dynamic_mask=numpy("mask_image"),
    )


FALLBACK_FOV_DEGREES = 60.0


def repair_intrinsics(pred: Prediction) -> tuple[Prediction, int]:
    """Replace degenerate focal lengths; return the prediction and how many images needed it.

    The camera head ReLUs the field of view, so an untrained (or confused) network can predict
    FoV 0, i.e. an infinite focal length, which no output format can hold. Such images get the
    median focal length of the valid images of the clip (per axis), or a 60 degree FoV when none is
    valid. The caller reports the count as a warning.
    """
    focal = pred.intrinsic[..., [0, 1], [0, 1]]  # [T, V, 2]: fx, fy
    bad = ~np.all(np.isfinite(focal) & (focal > 0), axis=-1)
    count = int(bad.sum())
    if count == 0:
        return pred, 0
    width, height = pred.depth.shape[-1], pred.depth.shape[-2]
    if count < bad.size:
        fill = np.median(focal[~bad], axis=0)
    else:
        half_angle = np.tan(np.radians(FALLBACK_FOV_DEGREES) / 2)
        fill = np.array([width / 2 / half_angle, height / 2 / half_angle])
    intrinsic = pred.intrinsic.copy()
    intrinsic[bad, 0, 0], intrinsic[bad, 1, 1] = fill[0], fill[1]
    return replace(pred, intrinsic=intrinsic), count


# ----------------------------------------------------------------------------- progress hooks


def _progress_stages(model: nn.Module) -> tuple[Optional[nn.Module], list[tuple[str, list[nn.Module]]]]:
    """(encoder, [(label, modules that run in that stage), ...]) in execution order.

    Aggregator layers are found as the ``*blocks`` containers keyed by layer (``LayerModules``:
    time/view blocks, one per stream); heads by name. Anything missing is skipped.
    """
    aggregator = getattr(model, "aggregator", None)
    encoder = getattr(aggregator, "encoder", None) if aggregator is not None else None
    layers: dict[int, list[nn.Module]] = {}
    if aggregator is not None:
        for name, child in aggregator.named_children():
            if name.endswith("blocks") and hasattr(child, "layers"):
                for k in child.layers():
                    layers.setdefault(int(k), []).append(child[k])
    stages = [(f"aggregate layer {k + 1}/{len(layers)}", layers[k]) for k in sorted(layers)]
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if head is not None:
            stages.append((f"{name.replace('_', ' ')}", [head]))
    return encoder, stages


@contextlib.contextmanager
def _reporting(model: nn.Module, progress: PassProgress) -> Iterator[None]:
    """Install forward pre-hooks that report ``(stages finished, total, what runs now)``."""
    if progress is None:
        yield
        return
    encoder, stages = _progress_stages(model)
    total = len(stages) + 1
    state = {"done": -1}

    def enter(done: int, detail: str) -> None:
        if done > state["done"]:  # a stage runs several blocks (streams, time + view): report it once
            state["done"] = done
            progress(done, total, detail)

    handles = []
    if encoder is not None:
        handles.append(encoder.register_forward_pre_hook(lambda *_: enter(0, "encode")))
    for index, (label, modules) in enumerate(stages, start=1):
        for module in modules:
            handles.append(module.register_forward_pre_hook(lambda *_, i=index, d=label: enter(i, d)))
    enter(0, "encode")
    try:
        yield
        progress(total, total, "done")
    finally:
        for handle in handles:
            handle.remove()
