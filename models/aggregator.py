"""The PAGE-4D aggregator: encoder, clip tokens, alternating Time-SA / View-SA layers, two streams.

Shapes (B clips, T instants, V cameras, R registers, P patches, N = 1 + R + P, C channels):

    images [B, T, V, 3, H, W] in [0, 1]
      -> ImageNet normalisation, DINOv2 on B*T*V images          -> patch tokens [B*T*V, P, C]
      -> camera + register tokens (slot 0 at (t=0, v=0), else 1)  -> tokens [B, T, V, N, C]
      -> for layer k = 1 .. depth:
           Time-SA (fixed camera)  on [B*V, T*N, C]   (+ temporal encoding, + mask bias in L_mid)
           View-SA (fixed instant) on [B*T, V*N, C]   (+ mask bias in L_mid)
           layer output for the heads: concat(time_out, view_out) -> [B, T, V, N, 2C]

Dual stream (``enable_dual_stream``): layers before L_mid are shared; from the first L_mid layer the
pose and geometry streams carry their own tokens to the last layer. L_mid layers have per-stream blocks
(``pose_time_blocks`` ... ``geo_view_blocks``); after L_mid both streams use the shared blocks.
The camera head reads the pose stream, the DPT heads the geometry stream.

Optional (docs/design.md, "Sparse Global-SA"): Sparse Global-SA after the View-SA of
``sparse_global_layers`` on all T*V*N tokens (``models/sparse_global.py``: its output replaces the
stream's tokens and the View-SA half of that layer's recorded output); the epipolar prior in the View-SA
of ``epipolar_layers`` when cameras are given (``models/epipolar.py``).

Block containers are indexed by the 0-based layer (``Page4DConfig.*_indices``): ``time_blocks[k - 1]`` is
layer k; in dual-stream
mode the shared containers have no entry for L_mid layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
from torch import nn

from models.config import Page4DConfig
from models.dynamic_mask import MaskBias, MaskFusion, SpatialMaskHead
from models.epipolar import EpipolarPrior, epipolar_view_block
from models.layers.attention import LowRankBias
from models.layers.block import Block
from models.layers.rope import RotaryPositionEmbedding2D, patch_positions
from models.layers.vision_transformer import DinoEncoder
from models.neutral import NeutralityCache, NeutralPlan, decide_plan, plan_inputs
from models.sparse_global import (
    SparseGlobalBlock,
    build_sparse_blocks,
    check_landmark_k,
    container_name,
    keypoint_bias,
    sparse_streams,
)
from models.temporal_encoding import build_temporal_encoding
from models.token_layout import (
    AttentionKind,
    Stream,
    from_time_sequences,
    from_view_sequences,
    to_time_sequences,
    to_view_sequences,
    tokens_from_patches,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LayerModules(nn.ModuleDict):
    """Modules keyed by 0-based layer index; state-dict names read like a ModuleList (``name.7.*``)."""

    def __init__(self, modules: dict[int, nn.Module]) -> None:
        super().__init__({str(k): m for k, m in sorted(modules.items())})

    def __getitem__(self, layer: int) -> nn.Module:  # type: ignore[override]
        return super().__getitem__(str(layer))

    def __contains__(self, layer) -> bool:  # type: ignore[override]
        return super().__contains__(str(layer))

    def layers(self) -> list[int]:
        return sorted(int(k) for k in self.keys())


@dataclass
class AggregatorOutput:
    """Recorded layer outputs per stream and the dynamic mask.

    layers[stream][k] = [B, T, V, N, 2C] for 0-based layer k; streams "shared" (before the split, or
    single-stream), "pose", "geo". Use ``pose(k)`` / ``geo(k)`` to read a stream with fallback to shared.
    """

    layers: dict[Stream, dict[int, torch.Tensor]] = field(default_factory=dict)
    patch_start: int = 5
    grid: tuple[int, int] = (0, 0)
    mask_tilde: Optional[torch.Tensor] = None  # [B, T, V, P]
    mask: Optional[torch.Tensor] = None  # [B, T, V, P]
    mask_alpha: Optional[torch.Tensor] = None
    mask_beta: Optional[torch.Tensor] = None

    def stream(self, name: Stream, k: int) -> torch.Tensor:
        if k in self.layers.get(name, {}):
            return self.layers[name][k]
        return self.layers["shared"][k]

    def pose(self, k: int) -> torch.Tensor:
        return self.stream("pose", k)

    def geo(self, k: int) -> torch.Tensor:
        return self.stream("geo", k)


class Aggregator(nn.Module):
    def __init__(self, cfg: Page4DConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, R = cfg.embed_dim, cfg.num_register_tokens
        self.patch_start = cfg.num_special_tokens
        self.encoder = DinoEncoder(cfg.encoder, C, cfg.patch_size)
        self.camera_token = nn.Parameter(torch.empty(1, 2, 1, C))
        self.register_token = nn.Parameter(torch.empty(1, 2, R, C))
        # Always an attribute (a tensor only with sparse layers, set below); the aggregator's own
        # parameters stay in the order camera_token, register_token, lambda_kpt.
        self.register_parameter("lambda_kpt", None)
        self.reset_parameters()
        self.rope = RotaryPositionEmbedding2D(cfg.rope_freq) if cfg.rope_freq > 0 else None

        self.mid = list(cfg.mid_indices)
        self.dual = bool(cfg.enable_dual_stream and self.mid)
        shared = [k for k in range(cfg.depth) if not (self.dual and k in self.mid)]
        self.time_blocks = LayerModules({k: self._block(k) for k in shared})
        self.view_blocks = LayerModules({k: self._block(k) for k in shared})
        if self.dual:
            self.pose_time_blocks = LayerModules({k: self._block(k) for k in self.mid})
            self.pose_view_blocks = LayerModules({k: self._block(k) for k in self.mid})
            self.geo_time_blocks = LayerModules({k: self._block(k) for k in self.mid})
            self.geo_view_blocks = LayerModules({k: self._block(k) for k in self.mid})
            # Both streams start from the same weights (docs/design.md, "Two streams"), also when randomly initialised.
            self.geo_time_blocks.load_state_dict(self.pose_time_blocks.state_dict(), assign=False)
            self.geo_view_blocks.load_state_dict(self.pose_view_blocks.state_dict(), assign=False)

        self.spatial_mask_head = SpatialMaskHead(C, cfg.mask_head_layout, cfg.mask_head_hidden)
        self.mask_fusion = MaskFusion(cfg.mask_alpha_init, cfg.mask_beta_init, cfg.use_gating)
        self.mask_bias = MaskBias(cfg.lambda_clamp_value)
        temporal = {k: build_temporal_encoding(cfg.temporal_encoding, cfg.num_heads) for k in range(cfg.depth)}
        self.temporal_pos = LayerModules({k: m for k, m in temporal.items() if m is not None})

        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.encoder_chunk = 32  # images per encoder pass: bounds activation memory for long clips
        # Sparse Global-SA (models/sparse_global.py); built last so the other modules' init is unchanged.
        self.sparse_layers = list(cfg.sparse_global_indices)
        if self.sparse_layers:
            for name, blocks in build_sparse_blocks(cfg, self.mid[0] if self.dual else None, self.rope).items():
                setattr(self, name, LayerModules(blocks))
            self.lambda_kpt = nn.Parameter(torch.zeros(()))  # registered as None above
            self.sync_sparse_blocks()
        self.epipolar_layers = cfg.epipolar_indices
        self._neutral = NeutralityCache()
        self.last_plan: Optional[NeutralPlan] = None  # the decisions of the last forward (visible, tested)
        self._position_cache: dict = {}

    def reset_buffers(self) -> None:
        """Restore the (non-persistent) normalisation constants, e.g. after ``to_empty``."""
        with torch.no_grad():
            self.image_mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.image_std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def reset_parameters(self) -> None:
        """Initialise the aggregator's own tensors (the special tokens), as VGGT does."""
        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_token, std=1e-6)
        if self.lambda_kpt is not None:  # Sparse Global-SA keypoint bias (None without sparse layers): neutral at init
            nn.init.zeros_(self.lambda_kpt)

    def _block(self, k: int) -> Block:
        cfg = self.cfg
        norm_eps, qk_eps = cfg.block_eps_at(k)
        return Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qk_norm=True, norm_eps=norm_eps,
                     qk_norm_eps=qk_eps, layerscale_init=cfg.layerscale_init, rope=self.rope)

    # ------------------------------------------------------------------ blocks by layer and stream
    def blocks_of(self, kind: AttentionKind, k: int, stream: Stream) -> Block:
        """The block of ``kind`` ("time" / "view") at 0-based layer k for ``stream``."""
        if self.dual and k in self.mid:
            return getattr(self, f"{stream}_{kind}_blocks")[k]
        return getattr(self, f"{kind}_blocks")[k]

    def all_blocks(self) -> Iterable[tuple[str, int, Block]]:
        """(container name, 0-based layer, block) for every aggregator block."""
        names = ["time_blocks", "view_blocks"]
        if self.dual:
            names += ["pose_time_blocks", "pose_view_blocks", "geo_time_blocks", "geo_view_blocks"]
        for name in names:
            container = getattr(self, name)
            for k in container.layers():
                yield name, k, container[k]

    def sparse_blocks_of(self, k: int, stream: Stream) -> SparseGlobalBlock:
        return getattr(self, container_name(stream))[k]

    def all_sparse_blocks(self) -> Iterable[tuple[str, int, SparseGlobalBlock]]:
        """(stream, 0-based layer, sparse block) for every Sparse Global-SA block."""
        for k in self.sparse_layers:
            for stream in sparse_streams(k, self.mid[0] if self.dual else None):
                yield stream, k, self.sparse_blocks_of(k, stream)

    def sync_sparse_blocks(self) -> None:
        """(Re)copy weights and eps of each sparse block from the View-SA block it follows (after loading)."""
        for stream, k, block in self.all_sparse_blocks():
            block.copy_from(self.blocks_of("view", k, stream))

    # ------------------------------------------------------------------ forward
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, T, V, 3, H, W] in [0, 1] -> tokens [B, T, V, N, C]."""
        B, T, V, _, H, W = images.shape
        # Weights loaded in bf16/fp16 without autocast: compute in the weights' dtype.
        flat = images.reshape(B * T * V, 3, H, W).to(self.camera_token.dtype)
        patches = [
            self.encoder((chunk - self.image_mean.to(chunk.dtype)) / self.image_std.to(chunk.dtype))
            for chunk in flat.split(self.encoder_chunk)
        ]
        patch_tokens = torch.cat(patches).reshape(B, T, V, -1, self.cfg.embed_dim)
        special = torch.cat((self.camera_token, self.register_token), dim=2)  # [1, 2, 1+R, C]
        slot = torch.ones(T, V, dtype=torch.long, device=images.device)
        slot[0, 0] = 0  # the reference image (t=0, v=0) takes slot 0: its camera is the world frame
        special = special[0][slot].unsqueeze(0).expand(B, -1, -1, -1, -1).to(patch_tokens.dtype)
        return torch.cat((special, patch_tokens), dim=3)

    def compute_mask(self, tokens: torch.Tensor, ext_mask: Optional[torch.Tensor], grid: tuple[int, int]):
        """M~ and M from a layer's tokens [B, T, V, N, C] (detached) and M_ext [B, T, V, P] or None."""
        B, T, V, N, C = tokens.shape
        patches = tokens.detach()[:, :, :, self.patch_start:].reshape(B * T * V, -1, C)
        m_tilde = self.spatial_mask_head(patches.to(self.spatial_mask_head.head0[0].weight.dtype), *grid)
        m_tilde = m_tilde.reshape(B, T, V, -1)
        if ext_mask is not None:
            ext_mask = ext_mask.to(m_tilde.dtype)
        mask, alpha, beta = self.mask_fusion(m_tilde, ext_mask)
        return m_tilde, mask, alpha, beta

    # ------------------------------------------------------------------ neutral work (models/neutral.py)
    def neutral_plan(self) -> NeutralPlan:
        """What the next forward may skip, decided from the parameters (cached on their versions)."""
        params, extra = plan_inputs(self)
        return self._neutral.plan(params, extra, lambda grad_needed: decide_plan(self, grad_needed))

    def neutral_report(self) -> dict:
        """The skip decisions in words (run.json's network section): those of the last forward, or, before
        any, those an inference forward (no autograd) would take now."""
        plan = self.last_plan
        if plan is None:
            with torch.no_grad():
                plan = self.neutral_plan()
        return plan.describe(self.dual, len(self.temporal_pos), bool(self.sparse_layers))

    def _positions(self, grid: tuple[int, int], T: int, V: int, device) -> tuple[torch.Tensor, ...]:
        """Cached (per image [1, N, 2], Time-SA [1, T*N, 2], View-SA [1, V*N, 2]) positions: the same
        tensors every call, so the RoPE tables cached on them are reused across layers and forwards."""
        key = (grid, T, V, str(device), torch.is_inference_mode_enabled())  # inference tensors: own entries
        if key not in self._position_cache:
            image = patch_positions(1, grid[0], grid[1], self.patch_start, device=device)
            if len(self._position_cache) >= 4:
                self._position_cache.pop(next(iter(self._position_cache)))
            self._position_cache[key] = (image, image.repeat(1, T, 1), image.repeat(1, V, 1))
        return self._position_cache[key]

    def forward(
        self,
        images: torch.Tensor,
        ext_mask: Optional[torch.Tensor] = None,
        record_layers: Optional[Iterable[int]] = None,
        ext_keypoints: Optional[torch.Tensor] = None,
        intrinsics: Optional[torch.Tensor] = None,
        extrinsics: Optional[torch.Tensor] = None,
    ) -> AggregatorOutput:
        """images [B, T, V, 3, H, W]; ext_mask [B, T, V, P] (patch fractions) or None.

        record_layers: 0-based layers whose outputs to keep (None = all).
        ext_keypoints: K_ext pooled to patches [B, T, V, P] or None (Sparse Global-SA).
        intrinsics [B, T, V, 3, 3], extrinsics [B, T, V, 4|3, 4]: cameras for the epipolar prior, or None.
        """
        B, T, V, _, H, W = images.shape
        grid = (H // self.cfg.patch_size, W // self.cfg.patch_size)
        record = set(range(self.cfg.depth)) if record_layers is None else set(record_layers)
        out = AggregatorOutput(layers={"shared": {}}, patch_start=self.patch_start, grid=grid)
        plan = self.neutral_plan()
        self.last_plan = plan
        tokens = self.encode(images)
        N = tokens.shape[3]
        positions, time_positions, view_positions = self._positions(grid, T, V, images.device)
        state = LayerInputs(plan, time_positions, view_positions,
                            torch.arange(T, device=images.device).repeat_interleave(N))
        mask_after = self.cfg.mask_after_index
        epipolar = None
        if self.epipolar_layers and intrinsics is not None and V > 1:
            epipolar = EpipolarPrior(intrinsics, extrinsics, grid, self.cfg.patch_size, self.patch_start,
                                     self.cfg.epipolar_band, self.cfg.epipolar_penalty)
        lambda_kpt = None
        if self.sparse_layers:
            check_landmark_k(self.cfg, grid[0] * grid[1])
            lambda_kpt = self.lambda_kpt.clamp(-self.cfg.lambda_clamp_value, self.cfg.lambda_clamp_value)
        # The keypoint bias is exactly 0 when lambda_kpt is: no channel then.
        bias_keypoints = None if plan.zero_lambda_kpt else ext_keypoints

        def set_mask(layer_tokens: torch.Tensor) -> None:
            out.mask_tilde, out.mask, out.mask_alpha, out.mask_beta = self.compute_mask(layer_tokens, ext_mask, grid)

        if mask_after == -1:
            set_mask(tokens)
        streams = {"shared": tokens}
        for k in range(self.cfg.depth):
            if self.dual and k == self.mid[0]:
                # Both streams start from the shared tokens of the layer before L_mid; identical streams
                # (models/neutral.py) run once, as "pose", and the geometry stream reads the same tokens.
                streams = {"pose": streams["shared"]}
                if not plan.streams_identical:
                    streams["geo"] = streams["pose"]
                out.layers.update(pose={}, geo={})
            state.key_mask = None
            if out.mask is not None and k in self.mid:
                state.key_mask = tokens_from_patches(out.mask, self.patch_start)  # 0 at camera/register tokens
            for name in list(streams):
                x_time = self._time_sa(k, name, streams[name], state)
                x_view = self._view_sa(k, name, x_time, state, epipolar if k in self.epipolar_layers else None)
                if k in self.sparse_layers:
                    # Replaces the stream's tokens and the View-SA half of the recorded output.
                    kpt = keypoint_bias(lambda_kpt, name, bias_keypoints, self.patch_start)
                    score = ext_keypoints.reshape(B, T * V, -1) if ext_keypoints is not None else None
                    x_view = self.sparse_blocks_of(k, name)(x_view, positions, kpt, score)
                if k in record:
                    out.layers[name][k] = torch.cat((x_time, x_view), dim=-1)
                streams[name] = x_view
            if "pose" in out.layers and "geo" not in streams and k in out.layers["pose"]:
                out.layers["geo"][k] = out.layers["pose"][k]  # identical streams: the same tensor
            if k == mask_after:
                set_mask(streams["shared"])
        return out

    def _time_sa(self, k: int, stream: Stream, x: torch.Tensor, state: LayerInputs) -> torch.Tensor:
        """Time-SA of 0-based layer k: x [B, T, V, N, C] -> [B, T, V, N, C]."""
        B, T, V = x.shape[:3]
        seq = to_time_sequences(x)
        temporal = None
        if k in self.temporal_pos and k not in state.plan.identity_temporal:
            temporal = self.temporal_pos[k]
        rotations = temporal.rotations(state.time_index) if temporal is not None else ()
        biases = [temporal.bias(state.time_index, T) if temporal is not None else None]
        if state.key_mask is not None and not state.plan.mask_bias_is_zero(stream, "time"):
            biases.append(self.mask_bias.bias(to_time_sequences(state.key_mask), stream, "time",
                                              self.patch_start, x.shape[3]))
        block = self.blocks_of("time", k, stream)
        seq = block(seq, state.time_positions, rotations, LowRankBias.concat(biases))
        return from_time_sequences(seq, B, T, V)

    def _view_sa(self, k: int, stream: Stream, x: torch.Tensor, state: LayerInputs,
                 epipolar: Optional[EpipolarPrior] = None) -> torch.Tensor:
        """View-SA of 0-based layer k (with the epipolar prior when given): [B, T, V, N, C] -> same."""
        B, T, V = x.shape[:3]
        seq = to_view_sequences(x)
        bias = None
        if state.key_mask is not None and not state.plan.mask_bias_is_zero(stream, "view"):
            bias = self.mask_bias.bias(to_view_sequences(state.key_mask), stream, "view", self.patch_start,
                                       x.shape[3])
        block = self.blocks_of("view", k, stream)
        if epipolar is not None:
            seq = epipolar_view_block(block, seq, state.view_positions, bias, epipolar)
        else:
            seq = block(seq, state.view_positions, (), bias)
        return from_view_sequences(seq, B, T, V)


@dataclass
class LayerInputs:
    """What every layer of one forward pass reads besides the tokens.

    plan: the skip decisions; time_positions [1, T*N, 2] / view_positions [1, V*N, 2]: RoPE positions
    of the Time-SA / View-SA sequences; time_index [T*N]: the instant of each Time-SA token;
    key_mask [B, T, V, N] or None: the dynamic mask per key token in the mid layers (else None).
    """

    plan: NeutralPlan
    time_positions: torch.Tensor
    view_positions: torch.Tensor
    time_index: torch.Tensor
    key_mask: Optional[torch.Tensor] = None
