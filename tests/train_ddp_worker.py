"""Test helper: one training run on the fake clips, as a plain process or as one torchrun rank.

    python tests/train_ddp_worker.py OUT BATCH ACCUMULATE   (also under python -m torch.distributed.run)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from page4d_cli.train.loop import train  # noqa: E402
from tests.train_fakes import FakeClipDataset, tiny_config  # noqa: E402

if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # torchrun gives each rank 1 thread: the same kernels (reduction orders) here
    out, batch, accumulate = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    cfg = tiny_config(out.parent, out=str(out), steps=3, batch=batch, accumulate=accumulate, size=28, train="all",
                      lr=1e-5, lr_new=1e-3, save="full", device="cpu")
    train(cfg, dataset=FakeClipDataset(length=4, frames=2, cameras=2, size=28))
