"""Re-arranging clip tokens for the two attention kinds.

Canonical layout: ``[B, T, V, N, ...]`` with N = 1 + R + P tokens per image (camera, registers,
patches). Time-SA attends over one camera across time: ``[B*V, T*N, ...]``. View-SA attends over one
instant across cameras: ``[B*T, V*N, ...]``. Both round-trip exactly.
"""

from __future__ import annotations

from typing import Literal

import torch

# The token streams of the aggregator: "shared" (single stream, or before the split), then "pose"
# (read by the camera head) and "geo" (read by the DPT heads) from the first mid layer on.
Stream = Literal["shared", "pose", "geo"]
# The two attention kinds of a layer.
AttentionKind = Literal["time", "view"]


def to_time_sequences(x: torch.Tensor) -> torch.Tensor:
    """[B, T, V, N, *rest] -> [B*V, T*N, *rest] (one sequence per camera)."""
    B, T, V, N = x.shape[:4]
    return x.transpose(1, 2).reshape(B * V, T * N, *x.shape[4:])


def from_time_sequences(x: torch.Tensor, B: int, T: int, V: int) -> torch.Tensor:
    """[B*V, T*N, *rest] -> [B, T, V, N, *rest]."""
    N = x.shape[1] // T
    return x.reshape(B, V, T, N, *x.shape[2:]).transpose(1, 2)


def to_view_sequences(x: torch.Tensor) -> torch.Tensor:
    """[B, T, V, N, *rest] -> [B*T, V*N, *rest] (one sequence per instant)."""
    B, T, V, N = x.shape[:4]
    return x.reshape(B * T, V * N, *x.shape[4:])


def from_view_sequences(x: torch.Tensor, B: int, T: int, V: int) -> torch.Tensor:
    """[B*T, V*N, *rest] -> [B, T, V, N, *rest]."""
    N = x.shape[1] // V
    return x.reshape(B, T, V, N, *x.shape[2:])


def tokens_from_patches(patch_values: torch.Tensor, num_special: int) -> torch.Tensor:
    """Broadcast a per-patch value [B, T, V, P] to tokens [B, T, V, S+P]: 0 at the S special tokens."""
    zeros = patch_values.new_zeros(*patch_values.shape[:3], num_special)
    return torch.cat((zeros, patch_values), dim=-1)
