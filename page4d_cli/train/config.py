"""The training configuration: one typed, validated dataclass; the CLI's option defaults come from here.

``TrainConfig`` holds what a run does (data, initial weights, what trains, optimisation, saving);
the network's ``Page4DConfig`` is stored beside it in the run's config.json (``run_folder.py``).
Fields that may change when a run is resumed are listed in ``RESUMABLE_CHANGES``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Optional

from models.checks import Checks
from models.errors import Page4DError
from page4d_cli.pipeline.options import DEFAULT_PRESET, NETWORK_WIDTH, PRESET_NAMES, check_network_width

PRESETS = PRESET_NAMES  # the network sizes of models/config.py (full, small, tiny)
TRAIN_CHOICES = ("new", "page4d", "all")
DEVICES = ("auto", "cpu", "cuda")
SAVE_CHOICES = ("trained", "full")
# May differ between a run and its --resume: they change neither the model nor the sequence of updates.
RESUMABLE_CHANGES = frozenset({"stop_at", "workers", "save_every", "eval_data", "eval_every", "progress",
                               "log_every", "device"})


class TrainConfigError(Page4DError):
    """A training option is invalid (one line: the option, what is wrong, the fix)."""


check = Checks(TrainConfigError)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the objective; defaults are PAGE-4D's ``training_final.yaml``."""

    camera_weight: float = 5.0
    camera_gamma: float = 0.6  # refinement iteration i of n weighs gamma ** (n - 1 - i)
    weight_trans: float = 1.0
    weight_rot: float = 1.0
    weight_fov: float = 0.5
    translation_clamp: float = 100.0
    min_valid_pixels: int = 100  # images with <= this many valid GT pixels get no camera loss
    depth_weight: float = 1.0
    depth_gamma: float = 0.3
    depth_alpha: float = 0.06
    depth_grad_scales: int = 4
    point_weight: float = 1.0
    point_gamma: float = 1.0
    point_alpha: float = 0.2
    point_normal_scales: int = 3
    valid_range: float = 0.98  # quantile filter; <= 0 disables it
    mask_weight: float = 0.0  # --mask-loss W: BCE of the fused mask M against GT dynamic masks

    def __post_init__(self) -> None:
        for f in fields(self):
            check.finite_non_negative(f"loss.{f.name}", getattr(self, f.name))
        check.require(self.valid_range < 1, "loss.valid_range", "< 1 (a quantile)", self.valid_range)


@dataclass(frozen=True)
class TrainConfig:
    """A training run. ``data`` are ground-truth clip folders (resolved by the CLI from DATA)."""

    data: tuple[str, ...] = ()
    out: str = ""
    preset: str = DEFAULT_PRESET
    pi3: Optional[str] = None
    page4d: Optional[str] = None
    init: Optional[str] = None  # a run folder or weights file overlaid after pi3/page4d (stage 4)
    train: str = "new"
    train_patterns: tuple[str, ...] = ()
    steps: int = 1000
    batch: int = 1  # clips per process per micro-step
    accumulate: int = 1  # micro-steps per optimizer step
    frames: int = 4
    cameras: int = 4
    size: int = NETWORK_WIDTH
    stride_range: tuple[int, int] = (1, 3)
    lr: float = 1e-5  # transformer blocks (PAGE-4D's lr)
    lr_new: float = 1e-3  # the new, neutral-at-init tensors (lambdas, gates, temporal encodings, ...)
    weight_decay: float = 0.01
    warmup: Optional[int] = None  # optimizer steps of linear warm-up; None = 5 % of steps
    clip_norm: float = 1.0
    loss: LossConfig = field(default_factory=LossConfig)
    checkpointing: bool = False
    save: str = "trained"
    save_every: int = 500
    eval_data: Optional[str] = None
    eval_every: int = 0
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    log_every: int = 1
    stop_at: Optional[int] = None  # stop (with a checkpoint) after this step; continue with --resume
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        object.__setattr__(self, "train_patterns", tuple(self.train_patterns))
        object.__setattr__(self, "stride_range", tuple(int(s) for s in self.stride_range))
        if isinstance(self.loss, dict):
            object.__setattr__(self, "loss", LossConfig(**self.loss))
        _choice("--preset", self.preset, PRESETS)
        _choice("--train", self.train, TRAIN_CHOICES)
        _choice("--device", self.device, DEVICES)
        _choice("--save", self.save, SAVE_CHOICES)
        for name in ("steps", "batch", "accumulate", "frames", "cameras", "size", "save_every", "log_every"):
            value = getattr(self, name)
            check.require(int(value) >= 1, _flag(name), ">= 1", value)
        check_network_width(self.size, TrainConfigError)  # reconstruct's --size rule: what the network reads
        lo, hi = self.stride_range if len(self.stride_range) == 2 else (0, -1)
        if not 1 <= lo <= hi:
            raise TrainConfigError(f"--stride-range must be two integers 1 <= MIN <= MAX, "
                                   f"got {list(self.stride_range)}")
        for name in ("lr", "lr_new", "weight_decay", "clip_norm"):
            check.finite_non_negative(_flag(name), getattr(self, name))
        check.require(self.warmup is None or 0 <= self.warmup <= self.steps, "--warmup", f"in 0..--steps ({self.steps})",
                      self.warmup)
        if self.eval_every < 0 or (self.eval_every > 0) != (self.eval_data is not None):
            raise TrainConfigError("--eval-data DIR and --eval-every K (K >= 1) go together; give both or neither")
        check.require(self.stop_at is None or 1 <= self.stop_at <= self.steps, "--stop-at",
                      f"in 1..--steps ({self.steps})", self.stop_at)
        check.at_least("--workers", self.workers, 0)

    @property
    def warmup_steps(self) -> int:
        return self.warmup if self.warmup is not None else max(1, self.steps // 20)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"training config has unknown fields {unknown}; written by another page4d version")
        return cls(**data)

    def differences(self, other: "TrainConfig", ignore=RESUMABLE_CHANGES) -> list[str]:
        """``["steps: 100 vs 200", ...]`` for fields (outside ``ignore``) where the two differ."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {_show(a[k])} vs {_show(b[k])}" for k in a if k not in ignore and _show(a[k]) != _show(b[k])]


def _show(value):
    return list(value) if isinstance(value, tuple) else value


def _flag(field_name: str) -> str:
    """The command-line option of a field: ``save_every`` -> ``--save-every``."""
    return f"--{field_name.replace('_', '-')}"


def _choice(option: str, value: str, choices) -> None:
    if value not in choices:
        raise TrainConfigError(f"{option} must be one of {', '.join(choices)}; got {value!r}")
