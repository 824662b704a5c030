"""Typed configuration of the PAGE-4D network, with named presets.

Layer numbers in this file are **1-based** (layer 1 ... layer ``depth``), as in the design document
("layers 8-12", ``sparse_global_layers=[23, 24]``). Module lists are 0-based: ``time_blocks[k - 1]``
is layer ``k``. Every field is validated when the config is constructed, so a bad value fails early
with a message that names the field.

Presets (``Page4DConfig.preset(name)``):

- ``full``: the pretrained size (DINOv2 ViT-L/14 encoder, embed 1024, 24 layers, 16 heads), dual stream,
  mid-stage layers 8-12, heads reading layers 5, 12, 18, 24 (VGGT's 0-based 4, 11, 17, 23).
- ``small``: embed 128, 8 layers, for CPU experiments.
- ``tiny``: embed 64, 4 layers: the sizes of the fidelity fixtures (tests/test_fidelity_fixtures.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from models.checks import Checks
from models.errors import Page4DError

MASK_HEAD_LAYOUTS = ("official", "ckpt150")
TEMPORAL_ENCODINGS = ("rope", "alibi", "none")
SPARSE_STRATEGIES = ("landmark", "dilated", "memory_bank")

# Numerics of the two sources of aggregator blocks (docs/design.md, "Attention numerics"): Pi3 blocks use
# LayerNorm eps 1e-6 with q/k norms at 1e-5; VGGT / PAGE-4D aggregator blocks use 1e-5 everywhere.
PI3_BLOCK_EPS = (1e-6, 1e-5)
VGGT_BLOCK_EPS = (1e-5, 1e-5)


class ConfigError(Page4DError, ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


check = Checks(ConfigError)


@dataclass(frozen=True)
class EncoderConfig:
    """DINOv2 ViT encoder (ViT-L/14 with 4 registers at full size)."""

    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    pos_embed_grid: int = 37  # the learned absolute table is 37 x 37 (+ cls), 518 / 14 = 37
    norm_eps: float = 1e-6
    layerscale_init: float = 1.0

    def __post_init__(self) -> None:
        check.positive("encoder.depth", self.depth)
        check.positive("encoder.num_heads", self.num_heads)
        check.positive("encoder.pos_embed_grid", self.pos_embed_grid)
        check.at_least("encoder.num_register_tokens", self.num_register_tokens, 0)


@dataclass(frozen=True)
class CameraHeadConfig:
    """VGGT camera head: iterative refinement of the absT_quaR_FoV pose encoding."""

    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: float = 4.0
    iterations: int = 4

    def __post_init__(self) -> None:
        check.positive("camera_head.trunk_depth", self.trunk_depth)
        check.positive("camera_head.num_heads", self.num_heads)
        check.positive("camera_head.iterations", self.iterations)


@dataclass(frozen=True)
class DPTHeadConfig:
    """VGGT DPT heads (depth and point). ``layers`` are 1-based aggregator layers (None = scaled default)."""

    features: int = 256
    out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    layers: Optional[tuple[int, int, int, int]] = None
    frames_chunk: int = 8  # images per head pass, as the reference implementation

    def __post_init__(self) -> None:
        check.positive("dpt.features", self.features)
        if len(self.out_channels) != 4:
            raise ConfigError(f"dpt.out_channels needs 4 values, got {self.out_channels}")
        if self.layers is not None and len(self.layers) != 4:
            raise ConfigError(f"dpt.layers needs 4 layer numbers, got {self.layers}")
        check.positive("dpt.frames_chunk", self.frames_chunk)


@dataclass(frozen=True)
class Page4DConfig:
    """Everything that fixes the network's structure. See the module docstring for numbering."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    rope_freq: float = 100.0
    layerscale_init: float = 0.01
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    camera_head: CameraHeadConfig = field(default_factory=CameraHeadConfig)
    dpt: DPTHeadConfig = field(default_factory=DPTHeadConfig)

    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True

    # Layers 1..pi3_layers are built with Pi3's block numerics (and filled from Pi3 at stage 1);
    # the others with VGGT / PAGE-4D numerics.
    pi3_layers: int = 18

    # Mid-stage layers L_mid where the dynamic-mask biases act (and the two streams have own blocks).
    mid_layers: tuple[int, ...] = (8, 9, 10, 11, 12)
    enable_dual_stream: bool = True
    lambda_clamp_value: float = 4.0

    # Dynamic mask head: which layer's output it reads (0 = encoder tokens; None = the layer just
    # before the first mid layer), its checkpoint layout, and the fusion with an external mask.
    mask_source_layer: Optional[int] = None
    mask_head_layout: str = "official"
    mask_head_hidden: int = 256
    use_gating: bool = False
    mask_alpha_init: float = 1.0
    mask_beta_init: float = 1.0

    # Relative temporal position encoding inside Time-SA.
    temporal_encoding: str = "rope"

    # Sparse Global-SA and the epipolar prior (docs/design.md, "Sparse Global-SA").
    enable_sparse_global: bool = False
    sparse_global_layers: tuple[int, ...] = ()
    sparse_strategy: str = "landmark"
    landmark_k: int = 64
    dilated_levels: tuple[int, ...] = (1, 2, 4)
    memory_tokens_num: int = 32
    enable_epipolar_prior: bool = False
    epipolar_penalty: float = 4.0  # logits subtracted off the epipolar band (see models/epipolar.py)
    epipolar_band: float = 2.0  # half-width of the band, in patches
    epipolar_layers: Optional[tuple[int, ...]] = None  # 1-based View-SA layers; None = mid_layers

    def __post_init__(self) -> None:
        # Normalise list-like fields to tuples so configs stay hashable and comparable.
        for name in ("mid_layers", "sparse_global_layers", "dilated_levels", "epipolar_layers"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("img_size", "patch_size", "embed_dim", "depth", "num_heads"):
            check.positive(name, getattr(self, name))
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.embed_dim % self.encoder.num_heads:
            raise ConfigError(
                f"embed_dim ({self.embed_dim}) must be divisible by encoder.num_heads ({self.encoder.num_heads})"
            )
        if (2 * self.embed_dim) % self.camera_head.num_heads:
            raise ConfigError(
                f"2*embed_dim ({2 * self.embed_dim}) must be divisible by camera_head.num_heads "
                f"({self.camera_head.num_heads})"
            )
        head_dim = self.embed_dim // self.num_heads
        if head_dim % 4:
            raise ConfigError(f"head dim embed_dim/num_heads = {head_dim} must be divisible by 4 for 2D RoPE")
        if self.num_register_tokens != self.encoder.num_register_tokens:
            # The aggregator's registers and the encoder's internal registers are separate sets,
            # but both are 4 in every published checkpoint; mixing them is almost surely a typo.
            raise ConfigError(
                f"num_register_tokens ({self.num_register_tokens}) must equal encoder.num_register_tokens "
                f"({self.encoder.num_register_tokens})"
            )
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size ({self.img_size}) must be a multiple of patch_size ({self.patch_size})")
        check.require(0 <= self.pi3_layers <= self.depth, "pi3_layers", f"in 0..{self.depth}", self.pi3_layers)
        self._check_layers("mid_layers", self.mid_layers)
        mid = list(self.mid_layers)
        check.require(mid == sorted(set(mid)), "mid_layers", "increasing and unique", mid)
        check.require(not mid or mid == list(range(mid[0], mid[-1] + 1)), "mid_layers", "a contiguous range", mid)
        if self.mask_source_layer is not None:
            check.require(0 <= self.mask_source_layer <= self.depth, "mask_source_layer", f"in 0..{self.depth}",
                          self.mask_source_layer)
            if self.mid_layers and self.mask_source_layer >= self.mid_layers[0]:
                raise ConfigError(
                    f"mask_source_layer ({self.mask_source_layer}) must come before the first mid layer "
                    f"({self.mid_layers[0]}): the mask must exist before the biases use it"
                )
        check.one_of("mask_head_layout", self.mask_head_layout, MASK_HEAD_LAYOUTS)
        check.one_of("temporal_encoding", self.temporal_encoding, TEMPORAL_ENCODINGS)
        check.positive("lambda_clamp_value", self.lambda_clamp_value)
        check.one_of("sparse_strategy", self.sparse_strategy, SPARSE_STRATEGIES)
        self._check_layers("sparse_global_layers", self.sparse_global_layers)
        if self.enable_sparse_global:
            self._check_sparse_global()
        if self.epipolar_layers is not None:
            self._check_layers("epipolar_layers", self.epipolar_layers)
        check.require(self.epipolar_penalty >= 0 and math.isfinite(self.epipolar_penalty), "epipolar_penalty",
                      "a finite value >= 0 (logits)", self.epipolar_penalty)
        check.require(self.epipolar_band > 0 and math.isfinite(self.epipolar_band), "epipolar_band", "> 0 (patches)",
                      self.epipolar_band)
        self._check_layers("dpt.layers", self.dpt_layers)

    def _check_sparse_global(self) -> None:
        layers = self.sparse_global_layers
        if not layers:
            raise ConfigError("enable_sparse_global=True needs sparse_global_layers, e.g. "
                              f"[{self.depth - 1}, {self.depth}] (1-based, 1..{self.depth}); got an empty list")
        if len(set(layers)) != len(layers):
            raise ConfigError(f"sparse_global_layers has duplicates: {list(layers)}")
        patches = (self.img_size // self.patch_size) ** 2
        if self.sparse_strategy == "landmark":
            check.require(1 <= self.landmark_k <= patches, "landmark_k", f"in 1..{patches} (patches per image at "
                          f"img_size={self.img_size}, patch_size={self.patch_size})", self.landmark_k)
        if self.sparse_strategy == "dilated":
            if not self.dilated_levels or any(level <= 0 for level in self.dilated_levels):
                raise ConfigError(f"dilated_levels must be a non-empty list of positive time offsets, "
                                  f"e.g. [1, 2, 4]; got {list(self.dilated_levels)}")
        if self.sparse_strategy == "memory_bank":
            check.positive("memory_tokens_num", self.memory_tokens_num)

    def _check_layers(self, name: str, layers: Sequence[int]) -> None:
        bad = [k for k in layers if not 1 <= k <= self.depth]
        if bad:
            raise ConfigError(f"{name}: layer numbers are 1-based, 1..{self.depth}; got {bad}")

    # ----------------------------------------------------------------- derived values
    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def num_special_tokens(self) -> int:
        """Camera token + registers: patches start at this index in every image's token list."""
        return 1 + self.num_register_tokens

    @property
    def dpt_layers(self) -> tuple[int, int, int, int]:
        """1-based layers read by the DPT heads; default scales VGGT's (5, 12, 18, 24 of 24) to ``depth``."""
        if self.dpt.layers is not None:
            return tuple(self.dpt.layers)  # type: ignore[return-value]
        return tuple(max(1, round(k * self.depth / 24)) for k in (5, 12, 18, 24))  # type: ignore[return-value]

    @property
    def resolved_epipolar_layers(self) -> tuple[int, ...]:
        """1-based layers whose View-SA uses the epipolar prior (default: the mid layers)."""
        return self.mid_layers if self.epipolar_layers is None else self.epipolar_layers

    @property
    def resolved_mask_source_layer(self) -> int:
        if self.mask_source_layer is not None:
            return self.mask_source_layer
        return self.mid_layers[0] - 1 if self.mid_layers else 0

    # ----------------------------------------------------------------- 0-based layer indices
    # The fields above are 1-based layer numbers (as the paper and the CLI speak); the code indexes
    # containers 0-based. These are the only conversions.
    @property
    def mid_indices(self) -> tuple[int, ...]:
        """0-based L_mid layers."""
        return tuple(k - 1 for k in self.mid_layers)

    @property
    def sparse_global_indices(self) -> tuple[int, ...]:
        """0-based layers followed by Sparse Global-SA (empty unless ``enable_sparse_global``), increasing."""
        return tuple(sorted(k - 1 for k in self.sparse_global_layers)) if self.enable_sparse_global else ()

    @property
    def epipolar_indices(self) -> frozenset[int]:
        """0-based layers whose View-SA uses the epipolar prior (empty unless ``enable_epipolar_prior``)."""
        return frozenset(k - 1 for k in self.resolved_epipolar_layers) if self.enable_epipolar_prior else frozenset()

    @property
    def dpt_indices(self) -> tuple[int, int, int, int]:
        """0-based layers read by the DPT heads."""
        return tuple(k - 1 for k in self.dpt_layers)  # type: ignore[return-value]

    @property
    def mask_after_index(self) -> int:
        """The mask is computed from the tokens after 0-based layer ``mask_after_index`` (-1: the encoder's)."""
        return self.resolved_mask_source_layer - 1

    def block_eps(self, layer: int) -> tuple[float, float]:
        """(LayerNorm eps, q/k-norm eps) of the blocks of 1-based ``layer`` as built."""
        return PI3_BLOCK_EPS if layer <= self.pi3_layers else VGGT_BLOCK_EPS

    def block_eps_at(self, index: int) -> tuple[float, float]:
        """``block_eps`` of 0-based layer ``index``."""
        return self.block_eps(index + 1)

    def replace(self, **changes) -> "Page4DConfig":
        """A copy with ``changes``; nested configs accept dicts (``encoder={"depth": 2}``)."""
        for name in ("encoder", "camera_head", "dpt"):
            if isinstance(changes.get(name), dict):
                changes[name] = dataclasses.replace(getattr(self, name), **changes[name])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Page4DConfig":
        data = dict(data)
        nested = {"encoder": EncoderConfig, "camera_head": CameraHeadConfig, "dpt": DPTHeadConfig}
        for name, kind in nested.items():
            if isinstance(data.get(name), dict):
                sub = dict(data[name])
                for key in ("out_channels", "layers"):
                    if isinstance(sub.get(key), list):
                        sub[key] = tuple(sub[key])
                data[name] = kind(**sub)
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> "Page4DConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


PRESETS: dict[str, Page4DConfig] = {
    "full": Page4DConfig(),
    "small": Page4DConfig(
        img_size=518,
        embed_dim=128,
        depth=8,
        num_heads=4,
        encoder=EncoderConfig(depth=4, num_heads=4),
        camera_head=CameraHeadConfig(trunk_depth=2, num_heads=4),
        dpt=DPTHeadConfig(features=64, out_channels=(32, 64, 128, 128)),
        pi3_layers=6,
        mid_layers=(3, 4, 5),
    ),
    "tiny": Page4DConfig(
        img_size=518,
        embed_dim=64,
        depth=4,
        num_heads=4,
        encoder=EncoderConfig(depth=2, num_heads=4),
        camera_head=CameraHeadConfig(trunk_depth=2, num_heads=4),
        dpt=DPTHeadConfig(features=32, out_channels=(16, 32, 64, 64), layers=(1, 2, 3, 4)),
        pi3_layers=3,
        mid_layers=(2, 3),
    ),
}
