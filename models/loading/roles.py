"""The one table of what a weights file can be to the network: its role, loading stage, label and the
checkpoint layouts accepted for it. Used by the planner and loader (``models.loading``), by
``page4d weights add`` and by the registry (``page4d_cli.weights``). Imports nothing heavy.

Stages (docs/design.md, "Three-stage loading"): 1 = the Pi3 file, 2 = the PAGE-4D file (or VGGT-1B),
3 = initialised here, 4 = overlaid from a ``page4d train`` run (``models.loading.finetuned``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceRole:
    """A file role: ``name`` (registry / API key), ``stage``, ``label`` for people, ``flag`` on the
    command line, and the checkpoint ``layouts`` (:func:`models.loading.layouts.detect_layout`) it accepts."""

    name: str
    stage: int
    label: str
    flag: str
    layouts: tuple[str, ...]


ROLES: dict[str, SourceRole] = {
    "pi3": SourceRole("pi3", 1, "Pi3", "--pi3", ("pi3",)),
    "page4d": SourceRole("page4d", 2, "PAGE-4D", "--page4d", ("page4d", "page4d_ckpt150", "vggt")),
    # A `page4d train` run (a folder, not a checkpoint layout), overlaid last; never fetched.
    "finetuned": SourceRole("finetuned", 4, "fine-tuned", "--finetuned", ("page4d-train-run",)),
}
#: The roles whose files the three-stage plan reads (stages 1 and 2).
PRETRAINED = ("pi3", "page4d")

#: What every layout is, for messages.
LAYOUT_DESCRIPTION = {
    "pi3": "Pi3",
    "pi3x": "Pi3X",
    "page4d": "PAGE-4D (official mask head)",
    "page4d_ckpt150": "PAGE-4D checkpoint_150",
    "vggt": "VGGT-1B (no mask head)",
}

INITIALISED_STAGE = 3
STAGE_NAMES = {role.stage: f"stage {role.stage} ({role.label})" for role in ROLES.values()}
STAGE_NAMES[INITIALISED_STAGE] = f"stage {INITIALISED_STAGE} (initialised)"
STAGE_NAMES = dict(sorted(STAGE_NAMES.items()))


def accepted_layouts() -> dict[str, tuple[str, ...]]:
    """``{role name: accepted layouts}``."""
    return {name: role.layouts for name, role in ROLES.items()}
