"""Key sets of the sparse global attention strategies ``landmark`` and ``dilated``.

All T*V*N tokens of a clip are flattened in (t, v, n) order: token index ((t * V) + v) * N + n, N = S + P
(S special tokens - camera + registers - then P patches). q/k/v are [B, H, L, D] with L = T*V*N.
Neither strategy builds an L x L tensor: queries are processed one instant at a time (V*N queries)
against a key set whose size does not grow with L quadratically.

``landmark`` (anchors = per image the S special tokens plus the top ``landmark_k`` patches by score):
    a query of image i attends to  (all N tokens of image i)  UNION  (anchors of every image j != i).
    Image i's own anchors are reached through its own-image block only: they are masked out of the
    global anchor block, so no key is counted twice. Keys per query: N + (T*V - 1) * (S + K);
    cost ~ L * (T*V*(S+K) + N), memory per instant ~ V * (T*V*(S+K) + N) * D.

``dilated`` (levels, e.g. (1, 2, 4)):
    a query at instant t attends to every token of every camera at the instants
    {t} UNION {t - l, t + l for l in levels}, instants outside 0..T-1 dropped (not wrapped).
    Keys per query <= (1 + 2 * len(levels)) * V * N: cost linear in T for fixed levels.

The keypoint bias (``KeypointBias``) is key-only (plus a per-query on/off weight for the shared stream)
and travels as extra q/k channels (``biased_attention``), gathered with the keys it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from models.layers.attention import LowRankBias, biased_attention


@dataclass(frozen=True)
class TokenLayout:
    """Sizes of a flattened clip: T instants, V cameras, N tokens per image of which S are special."""

    T: int
    V: int
    N: int
    S: int

    @property
    def images(self) -> int:
        return self.T * self.V

    @property
    def tokens(self) -> int:
        return self.T * self.V * self.N

    @property
    def patches(self) -> int:
        return self.N - self.S


@dataclass
class KeypointBias:
    """logits[q, k] += query_weight[q] * key_value[k].

    key_value: [B, L] (lambda_kpt * K_ext per token, 0 at special tokens). query_weight: [N], one per
    token of an image, or None for "every query" (geometry stream). In the shared stream it is 1 at
    patch queries and 0 at camera/register queries, so the pose-feeding rows stay neutral.
    """

    key_value: torch.Tensor
    query_weight: Optional[torch.Tensor] = None

    def for_chunk(self, key_value: torch.Tensor, query_tokens: int) -> LowRankBias:
        """LowRankBias for a chunk: key_value [Bc, Lk] gathered by the caller; queries are whole images."""
        if self.query_weight is None:
            query = key_value.new_ones(1, 1, query_tokens, 1)
        else:
            images = query_tokens // self.query_weight.shape[0]
            query = self.query_weight.repeat(images).to(key_value.dtype)[None, None, :, None]
        return LowRankBias(query, key_value[:, None, :, None])


# --------------------------------------------------------------------------------------------- landmark
def select_anchors(saliency: torch.Tensor, k: int, num_special: int,
                   keypoint_score: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Anchor token indices per image: [B, I, S + k] (specials 0..S-1 first, then patches by rank).

    saliency: [B, I, P] default score; keypoint_score: [B, I, P] or None. With a keypoint score the
    order is by keypoint score, ties (e.g. the many zeros of a sparse heatmap) broken by saliency.
    """
    P = saliency.shape[-1]
    if not 0 < k <= P:
        raise ValueError(f"landmark_k must be in 1..{P} (patches per image), got {k}")
    order = saliency.argsort(dim=-1, descending=True, stable=True)
    if keypoint_score is not None:
        by_keypoint = keypoint_score.gather(-1, order).argsort(dim=-1, descending=True, stable=True)
        order = order.gather(-1, by_keypoint)
    patches = order[..., :k] + num_special
    specials = torch.arange(num_special, device=saliency.device).expand(*saliency.shape[:-1], num_special)
    return torch.cat((specials, patches), dim=-1)


def _gather_tokens(x: torch.Tensor, anchors: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """x [B, H, L, E], anchors [B, I, A] -> [B, H, I*A, E]."""
    B, H, _, E = x.shape
    per_image = x.reshape(B, H, layout.images, layout.N, E)
    index = anchors[:, None, :, :, None].expand(B, H, -1, -1, E)
    return per_image.gather(3, index).reshape(B, H, -1, E)


def landmark_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                       layout: TokenLayout, anchors: torch.Tensor,
                       keypoints: Optional[KeypointBias] = None) -> torch.Tensor:
    """q, k [B, H, L, D], v [B, H, L, E], anchors [B, T*V, A] token indices -> [B, H, L, E]."""
    B, H, L, D = q.shape
    E = v.shape[-1]
    T, V, N = layout.T, layout.V, layout.N
    A = anchors.shape[-1]
    anchor_k = _gather_tokens(k, anchors, layout)  # [B, H, T*V*A, D]
    anchor_v = _gather_tokens(v, anchors, layout)
    anchor_b = None
    if keypoints is not None:
        anchor_b = keypoints.key_value.reshape(B, layout.images, N).gather(2, anchors).reshape(B, -1)
    total = anchor_k.shape[2]
    q_img = q.reshape(B, H, layout.images, N, D)
    k_img = k.reshape(B, H, layout.images, N, D)
    v_img = v.reshape(B, H, layout.images, N, E)
    outs = []
    for t in range(T):
        images = slice(t * V, (t + 1) * V)
        # Batch the V images of instant t: [B*V, H, N, .]; every image gets all anchors + its own tokens.
        q_t = q_img[:, :, images].transpose(1, 2).reshape(B * V, H, N, D)
        keys = torch.cat((anchor_k[:, None].expand(B, V, H, total, D),
                          k_img[:, :, images].transpose(1, 2)), dim=3).reshape(B * V, H, total + N, D)
        values = torch.cat((anchor_v[:, None].expand(B, V, H, total, E),
                            v_img[:, :, images].transpose(1, 2)), dim=3).reshape(B * V, H, total + N, E)
        allowed = torch.ones(V, total + N, dtype=torch.bool, device=q.device)
        for v_idx in range(V):
            own = t * V + v_idx
            allowed[v_idx, own * A:(own + 1) * A] = False  # own anchors: already in the own-image block
        mask = allowed[None, :, None, None, :].expand(B, V, 1, 1, total + N).reshape(B * V, 1, 1, total + N)
        bias = None
        if keypoints is not None:
            own_b = keypoints.key_value.reshape(B, layout.images, N)[:, images]  # [B, V, N]
            key_value = torch.cat((anchor_b[:, None].expand(B, V, total), own_b), dim=2).reshape(B * V, -1)
            bias = keypoints.for_chunk(key_value, N)
        o = biased_attention(q_t, keys, values, scale, bias, mask)  # [B*V, H, N, E]
        outs.append(o.reshape(B, V, H, N, E).transpose(1, 2))
    return torch.cat(outs, dim=2).reshape(B, H, L, E)


# --------------------------------------------------------------------------------------------- dilated
def dilated_neighbours(t: int, num_instants: int, levels: Sequence[int]) -> list[int]:
    """Instants image (t, .) attends to: sorted {t} U {t +- l for l in levels}, inside 0..T-1."""
    found = {t}
    for level in levels:
        for s in (t - level, t + level):
            if 0 <= s < num_instants:
                found.add(s)
    return sorted(found)


def dilated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                      layout: TokenLayout, levels: Sequence[int],
                      keypoints: Optional[KeypointBias] = None) -> torch.Tensor:
    """q, k [B, H, L, D], v [B, H, L, E] -> [B, H, L, E]; no mask: all queries of an instant share keys."""
    B, H, L, D = q.shape
    E = v.shape[-1]
    T, VN = layout.T, layout.V * layout.N
    q_t = q.reshape(B, H, T, VN, D)
    k_t = k.reshape(B, H, T, VN, D)
    v_t = v.reshape(B, H, T, VN, E)
    key_value = keypoints.key_value.reshape(B, T, VN) if keypoints is not None else None
    outs = []
    for t in range(T):
        instants = torch.tensor(dilated_neighbours(t, T, levels), device=q.device)
        keys = k_t.index_select(2, instants).reshape(B, H, -1, D)
        values = v_t.index_select(2, instants).reshape(B, H, -1, E)
        bias = None
        if keypoints is not None:
            bias = keypoints.for_chunk(key_value.index_select(1, instants).reshape(B, -1), VN)
        outs.append(biased_attention(q_t[:, :, t], keys, values, scale, bias))
    return torch.cat(outs, dim=2)
