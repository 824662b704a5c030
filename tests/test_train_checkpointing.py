"""Activation checkpointing per block gives the same gradients and keeps parameter names
(page4d_cli/train/checkpointing.py)."""

from __future__ import annotations

import pytest
import torch

from models.vggt import VGGT
from page4d_cli.train.checkpointing import enable_activation_checkpointing
from page4d_cli.train.config import LossConfig
from page4d_cli.train.losses import compute_losses
from tests.train_fakes import FakeClipDataset


@pytest.mark.slow
def test_checkpointed_blocks_give_the_same_gradients():
    torch.manual_seed(0)
    model = VGGT.from_preset("tiny")
    item = FakeClipDataset(length=1, frames=2, cameras=2, size=28)[0]
    batch = {k: v[None] for k, v in item.items()}

    def gradients():
        model.zero_grad(set_to_none=True)
        compute_losses(model(batch["images"]), batch, LossConfig())["objective"].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    names = [n for n, _ in model.named_parameters()]
    calls = []
    model.aggregator.time_blocks[0].attn.register_forward_hook(lambda *_: calls.append(1))
    plain = gradients()
    assert len(calls) == 1
    wrapped = enable_activation_checkpointing(model)
    assert wrapped == len(list(model.aggregator.all_blocks()))
    assert [n for n, _ in model.named_parameters()] == names
    assert enable_activation_checkpointing(model) == wrapped  # idempotent: no double wrapping
    calls.clear()
    checkpointed = gradients()
    assert len(calls) == 2  # the block ran again in the backward pass: its activations were not kept
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
