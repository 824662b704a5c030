"""Applying the rules of ``rules.py`` to a model's tensor names: the loading plan, from file headers only.

``plan_load`` never reads tensor data: it needs our names and shapes (a model on the meta device) and
the source files' key lists and shapes (header-only readers). It returns one ``TensorRecord`` per
tensor of the model and, per file, the source keys nobody uses.
"""

from __future__ import annotations

from typing import Mapping

from models.loading.checkpoint_io import CheckpointError, CheckpointReader
from models.loading.provenance import TensorRecord
from models.loading.rules import STAGE_OF_ROLE, PlanContext, match_rule, stage3_group

ROLE_LABEL = {"pi3": "Pi3", "page4d": "PAGE-4D"}


class SizeMismatchError(CheckpointError):
    """A source tensor's shape does not fit the model (another model size)."""


def plan_load(
    target_shapes: Mapping[str, tuple],
    readers: Mapping[str, CheckpointReader],
    ctx: PlanContext,
    on_size_mismatch: str = "error",
) -> tuple[list[TensorRecord], dict[str, list[str]]]:
    """One record per target tensor (in ``target_shapes`` order) and the unused source keys per role.

    on_size_mismatch: "error" raises ``SizeMismatchError`` naming the tensor, the file and both shapes;
    "init" records the tensor as initialised (stage 3, reason "shape mismatch").
    """
    records = [_plan_one(name, tuple(shape), readers, ctx, on_size_mismatch) for name, shape in target_shapes.items()]
    _initialise_partial_units(records)
    used: dict[str, set] = {role: set() for role in readers}
    for r in records:
        if r.stage in (1, 2):
            used[_role_of_stage(r.stage)].update(r.source)
    unused = {role: [k for k in reader.keys() if k not in used[role]] for role, reader in readers.items()}
    return records, unused


def _role_of_stage(stage: int) -> str:
    return {v: k for k, v in STAGE_OF_ROLE.items()}[stage]


def _plan_one(name, shape, readers, ctx, on_size_mismatch) -> TensorRecord:
    rule, m = match_rule(name)
    if rule is None:
        return TensorRecord(name, shape, stage3_group(name), 3,
                            reason="new in this network: initialised neutral (no checkpoint has it)")
    group = rule.group(m)
    reasons = []
    for cand in rule.candidates:
        reader = readers.get(cand.role)
        if not cand.when(m, ctx):
            continue
        if reader is None:
            reasons.append(f"no {ROLE_LABEL[cand.role]} file")
            continue
        key = cand.source(m)
        if key not in reader:
            reasons.append(f"{key} absent from {reader.path.name}")
            continue
        source_shape = tuple(reader.shape(key))
        produced = cand.adaptation.shape(source_shape) if cand.adaptation else source_shape
        if produced != shape:
            message = (f"{reader.path}: tensor {key} has shape {list(source_shape)} but the model's {name} needs "
                       f"{list(shape)}")
            if rule.on_mismatch == "init":
                reasons.append(f"layout variant: {key} is {list(source_shape)}, model needs {list(shape)}")
                break
            if on_size_mismatch == "init":
                reasons.append(f"shape mismatch: {key} is {list(source_shape)}, model needs {list(shape)}")
                continue
            raise SizeMismatchError(message + "; the file is from a different model size/layout — use a matching "
                                    "--preset, or allow initialisation of mismatched tensors")
        adaptation = [cand.adaptation.describe] if cand.adaptation else []
        if m.groupdict().get("stream"):
            adaptation.append(f"copy for the {m['stream']} stream")
        if cand.note:
            adaptation.append(cand.note)
        return TensorRecord(name, shape, group, STAGE_OF_ROLE[cand.role], file=str(reader.path), source=[key],
                            source_dtype=str(reader.dtype(key)).replace("torch.", ""), adaptation=adaptation)
    return TensorRecord(name, shape, group, 3, reason="; ".join(reasons) or "no rule provides it")


def _initialise_partial_units(records: list[TensorRecord]) -> None:
    """The mask head is one unit: if any of its tensors must be initialised, initialise all of them.

    (Mixing a layout variant's depthwise conv with freshly initialised layers would be meaningless.)
    """
    unit = [r for r in records if r.group == "mask head"]
    failed = [r for r in unit if r.stage == 3]
    if failed and len(failed) < len(unit):
        why = failed[0].reason
        for r in unit:
            if r.stage != 3:
                r.stage, r.file, r.source, r.adaptation = 3, None, [], []
                r.reason = f"mask head initialised as a whole ({why})"
