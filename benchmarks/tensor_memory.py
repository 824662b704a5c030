"""Peak bytes of tensors alive during a computation, from a tensor-allocation recorder (any device, CPU too).

``LiveTensorBytes`` is a ``TorchDispatchMode``: every op output whose storage is new (not shared with an
input: views and in-place results are not allocations) is counted until the last Python tensor
referring to that storage dies. ``peak`` is the largest total seen. Storages created before the mode
(parameters, inputs) are not counted, so the number is the computation's own working memory.
Allocator caching and tensors held only inside C++ are invisible: use it to compare implementations
of the same computation, not as a process-wide measure.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveTensorBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        inputs = {_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(result):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                self._track(tensor, inputs)
        return result

    def _track(self, tensor: torch.Tensor, inputs: set) -> None:
        key = _key(tensor)
        if key == 0:
            return
        if key not in self._refs:
            if key in inputs:
                return  # a view of / in-place result on a storage made outside the recorder
            self._refs[key] = 0
            self._sizes[key] = tensor.untyped_storage().nbytes()
            self.current += self._sizes[key]
            self.peak = max(self.peak, self.current)
        self._refs[key] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.current -= self._sizes.pop(key)


def _key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def peak_bytes(function, *args, **kwargs) -> tuple[int, object]:
    """(peak live bytes, result) of ``function(*args, **kwargs)`` under ``torch.no_grad``."""
    with torch.no_grad(), LiveTensorBytes() as recorder:
        result = function(*args, **kwargs)
    return recorder.peak, result
