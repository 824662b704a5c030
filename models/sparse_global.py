"""Sparse Global-SA: attention over all T*V*N tokens of a clip, without the (T*V*N)^2 cost.

Where it acts (``Page4DConfig.sparse_global_layers``, 1-based): right after the View-SA of each listed
layer, on the stream's tokens flattened to [B, T*V*N, C] (order t, v, n) and restored to
[B, T, V, N, C]. Its output replaces the stream's tokens going into the next layer **and** the
View-SA half of that layer's recorded output (concat(time_out, sparse_out), 2C channels) - otherwise a
sparse block after the last layer (the usage example's ``[23, 24]`` of 24) would reach no head.
Dual stream: at/after the stream split (first mid layer) each stream has its own sparse block; a
sparse layer before the split acts once on the shared stream. No temporal encoding is applied (the
blocks are copies of View-SA blocks, which have none); tokens keep their per-image 2D RoPE positions.

Strategies (``sparse_strategy``; key sets in ``sparse_strategies``):
- ``landmark``: anchors per image = the S camera/register tokens (always: they summarise the image and
  feed the camera head; S = 5 is cheap) + the top ``landmark_k`` patches by score. Score: the external
  keypoint heatmap K_ext (max-pooled to patches) when given, ties broken by the default; default =
  patch distinctiveness ||h_p - mean_p h|| of the block's normalised input h = norm1(x) within its
  image (uniform regions sit near the image mean, textured/structured ones far from it). A query
  sees its own image's N tokens plus the anchors of every other image.
- ``dilated``: a query at instant t sees all cameras at instants t and t +- l, l in ``dilated_levels``.
- ``memory_bank``: ``memory_tokens_num`` learnable tokens (per sparse block). Read: memory queries
  attend over all L tokens, then the memory runs the block's MLP half. Write: every token attends
  over the updated memory only, then the MLP half. Cost O(L * M).

Keypoint bias (lambda_kpt, one learnable scalar, 0 at init, clamped to +-lambda_clamp_value):
logits[q, k] += lambda_kpt * K_ext[k] on patch keys (0 at specials and memory keys). Geometry stream:
every query; shared stream: patch queries only (camera/register rows feed the pose); pose stream: no
bias. Key-only, carried as extra q/k channels (``LowRankBias``), never an L x L tensor.
With ``memory_bank`` the keypoint-carrying keys (clip tokens) are attended only by the memory read, whose
queries are the memory tokens: the geometry stream biases that read; in the shared stream lambda_kpt has
NO effect, by design - memory queries are not patch queries, and a biased read would carry the keypoint
preference through the write into the camera/register tokens that feed the pose, which the shared-stream
rule exists to prevent (tests/test_sparse_global.py checks both).

Initialisation (stage-3 rule): each sparse block starts as a copy of the View-SA block of the layer it
follows, same stream (``Aggregator.blocks_of("view", k, stream)``), and enters through a per-channel
gate at 0: out = x + gate * (block(x) - x), so the network is exactly unchanged at init.
``Aggregator.sync_sparse_blocks()`` re-copies the source weights and LayerNorm eps (the weight loader
calls it after loading, and must call it after changing the View-SA blocks' eps); it leaves gates,
memory tokens and lambda_kpt alone.

Tensor names (0-based layer k, e.g. 22 for layer 23), as the aggregator's other block containers:
    aggregator.sparse_blocks.<k>.*        shared stream (single-stream mode, or a layer before the split)
    aggregator.pose_sparse_blocks.<k>.*   aggregator.geo_sparse_blocks.<k>.*   (dual stream, after split)
  each with
    .block.{norm1,attn.qkv,attn.q_norm,attn.k_norm,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*
                         the copied View-SA block (same names as aggregator.view_blocks.<k>.*)
    .gate                [C]    zeros
    .memory_tokens       [M, C] normal(0, 0.02), memory_bank only
    aggregator.lambda_kpt  []   zero
"""


from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.attention_ops import attention_half, mlp_half
from models.config import ConfigError, Page4DConfig
from models.inputs import InputShapeError
from models.layers.attention import biased_attention
from models.layers.block import Block
from models.sparse_strategies import (
    KeypointBias,
    TokenLayout,
    dilated_attention,
    landmark_attention,
    select_anchors,
)
from models.token_layout import Stream, tokens_from_patches

MEMORY_INIT_STD = 0.02


class SparseGlobalBlock(nn.Module):
    """A View-SA block's weights (``block``) run with a sparse global pattern, behind a zero gate.

    forward(x [B, T, V, N, C], positions [1, N, 2], keypoints: KeypointBias | None,
            keypoint_score [B, T*V, P] | None) -> [B, T, V, N, C]
    """

    def __init__(self, cfg: Page4DConfig, layer: int, rope: Optional[nn.Module] = None) -> None:
        """The sparse block after the View-SA of 0-based ``layer`` (its sizes, numerics and strategy)."""
        super().__init__()
        dim = cfg.embed_dim
        norm_eps, qk_norm_eps = cfg.block_eps_at(layer)
        self.block = Block(dim, cfg.num_heads, cfg.mlp_ratio, qk_norm=True, norm_eps=norm_eps,
                           qk_norm_eps=qk_norm_eps, layerscale_init=cfg.layerscale_init, rope=rope)
        self.strategy = strategy = cfg.sparse_strategy
        self.num_special = cfg.num_special_tokens
        self.landmark_k = cfg.landmark_k
        self.dilated_levels = tuple(cfg.dilated_levels)
        memory_tokens = cfg.memory_tokens_num
        self.gate = nn.Parameter(torch.empty(dim))
        if strategy == "memory_bank":
            self.memory_tokens = nn.Parameter(torch.empty(memory_tokens, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the tensors this module owns directly (the block's are the copied View-SA weights)."""
        with torch.no_grad():
            nn.init.zeros_(self.gate)
            if self.strategy == "memory_bank":
                nn.init.normal_(self.memory_tokens, std=MEMORY_INIT_STD)

    @torch.no_grad()
    def copy_from(self, source: Block) -> None:
        """Take the weights and LayerNorm eps of ``source`` (the View-SA block this one follows)."""
        mine = dict(self.block.named_parameters())
        for name, tensor in source.named_parameters():
            mine[name].copy_(tensor)
        self.block.set_eps(*source.eps)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, keypoints: Optional[KeypointBias] = None,
                keypoint_score: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, T, V, N, C = x.shape
        flat = x.reshape(B, T * V * N, C)
        layout = TokenLayout(T, V, N, self.num_special)
        if self.strategy == "memory_bank":
            updated = self._memory_bank(flat, positions.repeat(1, T * V, 1), keypoints)[0]
        else:
            updated = self._sparse(flat, positions.repeat(1, T * V, 1), layout, keypoints, keypoint_score)
        gate = self.gate.to(flat.dtype)
        return (flat + gate * (updated - flat)).reshape(B, T, V, N, C)

    # ------------------------------------------------------------------ strategies
    def anchors(self, h: torch.Tensor, layout: TokenLayout, keypoint_score: Optional[torch.Tensor]) -> torch.Tensor:
        """Anchor token indices [B, T*V, S + landmark_k] from h = norm1(x) [B, L, C]."""
        B, _, C = h.shape
        patches = h.detach().reshape(B * layout.images, layout.N, C)[:, layout.S:]
        # ||h_p - mean||^2 = ||h_p||^2 - 2 h_p.mean + ||mean||^2: no [B, L, C] temporary.
        mean = patches.mean(dim=1, keepdim=True)  # [B*I, 1, C]
        squared = (torch.linalg.vector_norm(patches, dim=-1).float() ** 2
                   - 2 * (patches @ mean.transpose(1, 2))[..., 0].float()
                   + torch.linalg.vector_norm(mean, dim=-1).float() ** 2)
        saliency = squared.clamp(min=0).sqrt().reshape(B, layout.images, -1)  # [B, I, P]
        if self.landmark_k > layout.patches:
            raise ConfigError(f"landmark_k ({self.landmark_k}) exceeds the {layout.patches} patches per image of "
                              f"this input; use larger images or a smaller landmark_k")
        score = keypoint_score.float() if keypoint_score is not None else None
        return select_anchors(saliency, self.landmark_k, layout.S, score)

    def _pattern(self, q, k, v, h, layout, keypoints, keypoint_score) -> torch.Tensor:
        scale = self.block.attn.scale
        if self.strategy == "landmark":
            anchors = self.anchors(h, layout, keypoint_score)
            return landmark_attention(q, k, v, scale, layout, anchors, keypoints)
        return dilated_attention(q, k, v, scale, layout, self.dilated_levels, keypoints)

    def _sparse(self, x, positions, layout, keypoints, keypoint_score) -> torch.Tensor:
        """Un-gated block output [B, L, C] (landmark / dilated)."""
        h = self.block.norm1(x)
        q, k, v = self.block.attn.project(h, positions)
        o = self._pattern(q, k, v, h, layout, keypoints, keypoint_score)
        return mlp_half(self.block, attention_half(self.block, x, o))

    def _memory_bank(self, x, positions, keypoints):
        """(tokens [B, L, C], memory [B, M, C]) after read + write."""
        B = x.shape[0]
        scale = self.block.attn.scale
        memory = self.memory_tokens.to(x.dtype)[None].expand(B, -1, -1)
        q_x, k_x, v_x = self.block.attn.project(self.block.norm1(x), positions)
        # Memory tokens have no image position; RoPE at (0, 0) (the specials' position) is the identity.
        q_m = self.block.attn.project(self.block.norm1(memory))[0]
        read_bias = None
        if keypoints is not None and keypoints.query_weight is None:  # geometry stream: memory rows biased
            read_bias = keypoints.for_chunk(keypoints.key_value, memory.shape[1])
        read = biased_attention(q_m, k_x, v_x, scale, read_bias)
        memory = mlp_half(self.block, attention_half(self.block, memory, read))
        _, k_m, v_m = self.block.attn.project(self.block.norm1(memory))
        tokens = mlp_half(self.block, attention_half(self.block, x, biased_attention(q_x, k_m, v_m, scale)))
        return tokens, memory


def sparse_streams(k: int, split_layer: Optional[int]) -> tuple[Stream, ...]:
    """Streams with a sparse block at 0-based layer k; split_layer = first per-stream layer (None: single)."""
    return ("pose", "geo") if split_layer is not None and k >= split_layer else ("shared",)


def container_name(stream: Stream) -> str:
    """``sparse_blocks`` (shared) / ``pose_sparse_blocks`` / ``geo_sparse_blocks``."""
    return "sparse_blocks" if stream == "shared" else f"{stream}_sparse_blocks"


def build_sparse_blocks(cfg: Page4DConfig, split_layer: Optional[int],
                        rope: Optional[nn.Module]) -> dict[str, dict[int, SparseGlobalBlock]]:
    """{container name: {0-based layer: block}} for ``cfg.sparse_global_layers``."""
    containers: dict[str, dict[int, SparseGlobalBlock]] = {}
    for k in cfg.sparse_global_indices:
        for stream in sparse_streams(k, split_layer):
            containers.setdefault(container_name(stream), {})[k] = SparseGlobalBlock(cfg, k, rope)
    return containers


def keypoint_bias(lambda_kpt: torch.Tensor, stream: Stream, keypoints: Optional[torch.Tensor],
                  num_special: int) -> Optional[KeypointBias]:
    """lambda_kpt (clamped value) and keypoints [B, T, V, P] (pooled K_ext) -> bias for ``stream`` or None."""
    if keypoints is None or stream == "pose":
        return None
    per_token = tokens_from_patches(keypoints, num_special)  # [B, T, V, N], 0 at specials
    key_value = lambda_kpt.to(per_token.dtype) * per_token.reshape(per_token.shape[0], -1)
    query_weight = None
    if stream == "shared":
        query_weight = (torch.arange(per_token.shape[-1], device=keypoints.device) >= num_special)
        query_weight = query_weight.to(per_token.dtype)
    return KeypointBias(key_value, query_weight)


def check_landmark_k(cfg: Page4DConfig, patches_per_image: int) -> None:
    """Forward-time check of landmark_k against the actual image size."""
    if cfg.sparse_strategy == "landmark" and cfg.landmark_k > patches_per_image:
        raise ConfigError(
            f"landmark_k ({cfg.landmark_k}) exceeds the {patches_per_image} patches per image of this input; "
            f"use larger images or construct the model with landmark_k <= {patches_per_image}")


def keypoints_to_patches(heatmap: torch.Tensor, image_shape: torch.Size, grid: tuple[int, int],
                         patch_size: int) -> torch.Tensor:
    """K_ext [B, T, V, H, W] (max-pooled: one detected pixel marks its patch) or [B, T, V, h, w] -> [B, T, V, P]."""
    B, T, V, _, H, W = image_shape
    allowed = [(B, T, V, H, W), (B, T, V, *grid)]
    if not isinstance(heatmap, torch.Tensor) or tuple(heatmap.shape) not in allowed:
        shape = tuple(heatmap.shape) if isinstance(heatmap, torch.Tensor) else type(heatmap).__name__
        raise InputShapeError(f"ext_keypoints must have shape {allowed[0]} (image) or {allowed[1]} (patch grid), "
                              f"got {shape}")
    if not torch.isfinite(heatmap.float()).all():
        raise InputShapeError("ext_keypoints contains NaN or infinite values")
    if tuple(heatmap.shape[-2:]) == (H, W) and (H, W) != tuple(grid):
        pooled = F.max_pool2d(heatmap.reshape(-1, 1, H, W).float(), patch_size)
        return pooled.reshape(B, T, V, -1)
    return heatmap.reshape(B, T, V, -1)
