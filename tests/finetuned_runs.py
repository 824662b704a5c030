"""Test helper: write a ``page4d train`` run folder (the contract of ``models.loading.finetuned``) without
training: config.json + weights.safetensors holding chosen tensors of a model, shifted so they differ
from any initialisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import torch
from safetensors.torch import save_file


def write_run(run: Path, model: torch.nn.Module, names: Iterable[str], step: int = 7, shift: float = 0.5,
              init: Optional[dict] = None, network: Optional[dict] = None) -> dict:
    """Write RUN/config.json and RUN/weights.safetensors (``names`` of ``model`` + ``shift``); return the tensors."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    params = dict(model.named_parameters())
    tensors = {name: (params[name].detach().float() + shift).contiguous() for name in names}
    save_file(tensors, str(run / "weights.safetensors"), metadata={"step": str(step), "run": run.name,
                                                                      "format": "page4d-train-run"})
    config = {"format": "page4d-train-run", "version": 1,
              "network": network if network is not None else model.config.to_dict(),
              "training": {}, "init": init or {"pi3": None, "page4d": None, "init": None}}
    (run / "config.json").write_text(json.dumps(config))
    return tensors
