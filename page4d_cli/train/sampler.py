"""A DistributedSampler that can start in the middle of an epoch (the sampler position of a resume).

Epoch e's order is ``DistributedSampler``'s (a permutation seeded by seed + e, split round-robin over the
ranks), so 2 processes with batch 1 see, step by step, the same clips as 1 process with batch 2.
``position`` = (epoch, samples of this rank already consumed in the epoch).
"""

from __future__ import annotations

from typing import Iterator

from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start
