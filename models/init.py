"""Re-initialising selected tensors of a model (stage 3 of the weight loading).

Convention: every module that owns parameters directly has ``reset_parameters()`` that initialises
exactly those direct parameters as its constructor does (torch's built-in layers already follow it).
A model built on the meta device and materialised with ``to_empty`` holds garbage; calling
``reset_owners_(model, names)`` gives the named tensors their constructor initialisation.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def owner_of(model: nn.Module, name: str) -> nn.Module:
    """The module that directly owns parameter ``name``."""
    module_name = name.rpartition(".")[0]
    return model.get_submodule(module_name) if module_name else model


def reset_owners_(model: nn.Module, names: Iterable[str]) -> list[str]:
    """Call reset_parameters() once on each module owning one of ``names``; returns the module names."""
    done: dict[str, nn.Module] = {}
    for name in names:
        module_name = name.rpartition(".")[0]
        if module_name in done:
            continue
        module = owner_of(model, name)
        reset = getattr(module, "reset_parameters", None)
        if reset is None:
            raise TypeError(f"{type(module).__name__} ({module_name or 'model'}) owns parameters but has no "
                            "reset_parameters(); add one so stage-3 initialisation can restore it")
        with torch.no_grad():
            reset()
        done[module_name] = module
    return sorted(done)
