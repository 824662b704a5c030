"""Relative temporal position encoding for Time-SA: RoPE (default) or ALiBi.

Both start neutral (docs/design.md, "New parts start neutral"): the RoPE variant has learnable
per-head frequencies at 0 (the rotation is the identity), the ALiBi variant learnable per-head slopes
at 0 (the bias is zero). Both depend on time differences only. One module per layer; the two streams
of a mid layer share it.

``is_identity()`` says whether the module is exactly neutral now (all frequencies / slopes 0): the
aggregator then applies nothing (``models/neutral.py``). ``rotations(time_index)`` returns the
callables applied to q and k; ``bias(time_index)`` returns the low-rank logit bias (ALiBi over T
instants is rank T: A[q, j] = -slope_h * |t_q - j| on the query side, the one-hot of t_k on the key side).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from models.layers.attention import LowRankBias
from models.layers.rope import temporal_rotation
from models.neutral import is_zero


class TemporalRoPE(nn.Module):
    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.zeros(num_heads))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.freq)  # zero frequency: the identity rotation (neutral)

    def is_identity(self) -> bool:
        return is_zero(self.freq)

    def rotations(self, time_index: torch.Tensor) -> tuple:
        return (lambda x: temporal_rotation(x, time_index, self.freq),)

    def bias(self, time_index: torch.Tensor, num_instants: int) -> Optional[LowRankBias]:
        return None


class TemporalALiBi(nn.Module):
    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.zeros(num_heads))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.slope)  # zero slope: no bias (neutral)

    def is_identity(self) -> bool:
        return is_zero(self.slope)

    def rotations(self, time_index: torch.Tensor) -> tuple:
        return ()

    def bias(self, time_index: torch.Tensor, num_instants: int) -> Optional[LowRankBias]:
        if num_instants < 2:
            return None  # a single instant has no time differences
        instants = torch.arange(num_instants, device=time_index.device, dtype=torch.float32)
        distance = (time_index.float()[:, None] - instants[None]).abs()  # [L, T]
        query = -self.slope.float()[None, :, None, None] * distance[None, None]  # [1, H, L, T]
        key = F.one_hot(time_index.long(), num_instants).float()[None, None]  # [1, 1, L, T]
        return LowRankBias(query, key)


def build_temporal_encoding(kind: str, num_heads: int) -> Optional[nn.Module]:
    if kind == "rope":
        return TemporalRoPE(num_heads)
    if kind == "alibi":
        return TemporalALiBi(num_heads)
    return None
