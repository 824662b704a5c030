"""Rotary position embeddings: 2D (patch row/column) and the relative temporal rotation of Time-SA.

2D RoPE follows the pretrained models exactly (docs/design.md, "Attention numerics"): the head dimension D is split
in two halves; the first half is rotated by the row y, the second by the column x. Within a half of
size D/2 the inverse frequencies are 1 / base^(2i / (D/2)), i = 0 .. D/4 - 1, the angles are
duplicated to D/2 and applied rotate-half style: x * cos + rotate_half(x) * sin, with
rotate_half(a, b) = (-b, a).

The temporal rotation adds an angle ``f_h * inv_freq_i * t`` on the same planes (2D rotations of one
plane commute and add up), so q_t . k_t' depends on t' - t only: a relative encoding. ``f_h`` is a
learnable per-head frequency that starts at 0, which makes the rotation the identity at
initialization (docs/design.md, "New parts start neutral").
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(a, b) -> (-b, a) on the last dimension, split in two halves."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def inverse_frequencies(dim: int, base: float, device=None) -> torch.Tensor:
    """Inverse frequencies of a RoPE over ``dim`` features: [dim // 2] float32."""
    exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim
    return 1.0 / (base**exponents)


class RotaryPositionEmbedding2D(nn.Module):
    """2D RoPE on integer (y, x) positions.

    forward(x [B, H, L, D], positions [B or 1, L, 2] (y, x), integer-valued) -> [B, H, L, D]

    The cos/sin tables depend only on the positions, D, dtype and device, so they are cached per
    positions tensor (the aggregator hands the same positions tensor to every layer and every forward
    on one grid): keyed on its storage, version, shape and strides, holding a reference to it so the
    storage cannot be reused while an entry lives. At most ``CACHE_ENTRIES`` tables are kept.
    """

    CACHE_ENTRIES = 8

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.frequency = float(frequency)
        self._tables: OrderedDict = OrderedDict()

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos_y, sin_y, cos_x, sin_x = self.tables(positions, x.shape[-1], x.dtype, x.device)
        rows, cols = x.chunk(2, dim=-1)
        rows = rows * cos_y + rotate_half(rows) * sin_y
        cols = cols * cos_x + rotate_half(cols) * sin_x
        return torch.cat((rows, cols), dim=-1)

    def tables(self, positions: torch.Tensor, head_dim: int, dtype: torch.dtype, device) -> tuple:
        """(cos_y, sin_y, cos_x, sin_x), each [B|1, 1, L, D/2] in ``dtype`` (float32 trig, as trained)."""
        # Tables made under inference mode are inference tensors, which autograd cannot save: own entries.
        key = (positions.data_ptr(), _version(positions), tuple(positions.shape), positions.stride(),
               head_dim, dtype, str(device), torch.is_inference_mode_enabled())
        entry = self._tables.get(key)
        if entry is not None:
            self._tables.move_to_end(key)
            return entry[1]
        inv_freq = inverse_frequencies(head_dim // 2, self.frequency, device=device)
        tables = (*_cos_sin(positions[..., 0].float(), inv_freq, dtype),
                  *_cos_sin(positions[..., 1].float(), inv_freq, dtype))
        if not torch.compiler.is_compiling():
            self._tables[key] = (positions, tables)
            while len(self._tables) > self.CACHE_ENTRIES:
                self._tables.popitem(last=False)
        return tables


def _version(tensor: torch.Tensor) -> int:
    """The in-place version counter; inference tensors have none (they are never changed in place here)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def _cos_sin(position: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype) -> tuple:
    """position [B|1, L] * inv_freq [d/2] -> cos, sin [B|1, 1, L, d] in ``dtype``."""
    angles = position[..., None] * inv_freq  # [B, L, d/2]
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # [B, 1, L, d]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def temporal_rotation(x: torch.Tensor, time_index: torch.Tensor, freq: torch.Tensor,
                      base: float = 100.0) -> torch.Tensor:
    """Relative temporal rotation for Time-SA, one frequency per head (0 = identity).

    x [B, H, L, D]; time_index [L] or [B, L]; freq [H]. Adds freq_h * inv_freq_i * t to the angle of
    every rotate-half plane of both halves (the planes of the 2D RoPE), so q_t . k_t' depends on
    t' - t only.
    """
    head_dim = x.shape[-1]
    inv_freq = inverse_frequencies(head_dim // 2, base, device=x.device)  # [D/4]
    t = time_index.float()
    if t.dim() == 1:
        t = t[None]
    angles = freq.float()[None, :, None, None] * t[:, None, :, None] * inv_freq  # [B, H, L, D/4]
    angles = torch.cat((angles, angles), dim=-1)
    cos = angles.cos().to(x.dtype)
    sin = angles.sin().to(x.dtype)
    rows, cols = x.chunk(2, dim=-1)
    rows = rows * cos + rotate_half(rows) * sin
    cols = cols * cos + rotate_half(cols) * sin
    return torch.cat((rows, cols), dim=-1)


def patch_positions(batch: int, rows: int, cols: int, num_special: int, device=None) -> torch.Tensor:
    """Per-image token positions [batch, num_special + rows*cols, 2] as (y, x).

    Patches in raster order get (row + 1, col + 1); the special tokens (camera + registers) get (0, 0),
    exactly as the pretrained aggregators.
    """
    y = torch.arange(rows, device=device)
    x = torch.arange(cols, device=device)
    grid = torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(rows * cols, 2) + 1
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat((special, grid), dim=0)[None].expand(batch, -1, -1)
