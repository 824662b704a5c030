"""Applying the source map (``source_map.py``) to a model's tensor names: the loading plan, from file
headers only.

``plan_load`` never reads tensor data: it needs our names and shapes (a model on the meta device) and
the source files' key lists and shapes (header-only readers). It returns one ``TensorRecord`` per
tensor of the model, with its place, the role and rule that fill it or the cause of its
initialisation, and, per file, the source keys nobody uses.

Gaps are not silent: a tensor that the file's layout has (``layouts.layout_has``) but the file lacks
(a truncated state dict) stops the plan with :class:`MissingTensorsError` naming them, unless
``allow_missing`` initialises them, which :func:`plan_notes` turns into a warning.
"""

from __future__ import annotations

from typing import Mapping, Optional

from models.loading.checkpoint_reader import CheckpointError, CheckpointReader
from models.loading.layouts import layout_has
from models.loading.provenance import TensorRecord
from models.loading.roles import INITIALISED_STAGE, LAYOUT_DESCRIPTION, PRETRAINED, ROLES
from models.loading.source_map import PlanContext, match_rule, stage3_place

_SHOWN = 4  # missing tensor names quoted in a message


class SizeMismatchError(CheckpointError):
    """A source tensor's shape does not fit the model (another model size)."""


class MissingTensorsError(CheckpointError):
    """A file of a known layout lacks tensors that layout has (e.g. a truncated state dict)."""


def plan_load(
    target_shapes: Mapping[str, tuple],
    readers: Mapping[str, CheckpointReader],
    ctx: PlanContext,
    on_size_mismatch: str = "error",
    layouts: Optional[Mapping[str, str]] = None,
    allow_missing: bool = False,
) -> tuple[list[TensorRecord], dict[str, list[str]]]:
    """One record per target tensor (in ``target_shapes`` order) and the unused source keys per role.

    on_size_mismatch: "error" raises ``SizeMismatchError`` naming the tensor, the file and both shapes;
    "init" records the tensor as initialised (cause "shape_mismatch").
    layouts: the layout of each role's file; with it, a key its layout has but the file lacks raises
    ``MissingTensorsError`` (or, with ``allow_missing``, is initialised with cause "missing").
    """
    layouts = layouts or {}
    records = [_plan_one(name, tuple(shape), readers, ctx, on_size_mismatch, layouts)
               for name, shape in target_shapes.items()]
    _initialise_partial_units(records)
    missing = [r for r in records if r.cause == "missing"]
    if missing and not allow_missing:
        raise _missing_error(missing, readers, layouts)
    used: dict[str, set] = {role: set() for role in readers}
    for r in records:
        if r.role in used:
            used[r.role].update(r.source)
    unused = {role: [k for k in reader.keys() if k not in used[role]] for role, reader in readers.items()}
    return records, unused


def _plan_one(name, shape, readers, ctx, on_size_mismatch, layouts) -> TensorRecord:
    rule, m = match_rule(name)
    if rule is None:
        place = stage3_place(name)
        return TensorRecord(name, shape, place.group, INITIALISED_STAGE, layer=place.layer, kind=place.kind,
                            stream=place.stream, cause="new",
                            reason="new in this network: initialised neutral (no checkpoint has it)")
    place = rule.place(m)
    where = dict(layer=place.layer, kind=place.kind, stream=place.stream, rule=rule.name)
    reasons, cause, cause_role = [], None, None
    for index, cand in enumerate(rule.candidates):
        reader = readers.get(cand.role)
        if not cand.when(m, ctx):
            continue
        if reader is None:
            reasons.append(f"no {ROLES[cand.role].label} file")
            cause, cause_role = cause or "no_file", cause_role or cand.role
            continue
        key = cand.source(m)
        if key not in reader:
            layout = layouts.get(cand.role)
            if layout is not None and layout_has(layout, key):
                # Recorded with the key and file it should have come from (stage 3, cause "missing").
                return TensorRecord(name, shape, place.group, INITIALISED_STAGE, file=str(reader.path), source=[key],
                                    reason=f"{key} missing from {reader.path.name}, although its {layout} layout "
                                           f"has it: initialised (allow_missing)",
                                    cause="missing", cause_role=cand.role, **where)
            reasons.append(f"{key} absent from {reader.path.name}")
            cause, cause_role = cause or "not_in_layout", cause_role or cand.role
            continue
        source_shape = tuple(reader.shape(key))
        produced = cand.adaptation.shape(source_shape) if cand.adaptation else source_shape
        if produced != shape:
            message = (f"{reader.path}: tensor {key} has shape {list(source_shape)} but the model's {name} needs "
                       f"{list(shape)}")
            if rule.on_mismatch == "init":
                reasons.append(f"layout variant: {key} is {list(source_shape)}, model needs {list(shape)}")
                cause, cause_role = "layout_variant", cand.role
                break
            if on_size_mismatch == "init":
                reasons.append(f"shape mismatch: {key} is {list(source_shape)}, model needs {list(shape)}")
                cause, cause_role = cause or "shape_mismatch", cause_role or cand.role
                continue
            raise SizeMismatchError(message + "; the file is from a different model size/layout — use a matching "
                                    "--preset, or allow initialisation of mismatched tensors")
        adaptation = [cand.adaptation.describe] if cand.adaptation else []
        if place.stream in ("pose", "geo"):
            adaptation.append(f"copy for the {place.stream} stream")
        if cand.note:
            adaptation.append(cand.note)
        return TensorRecord(name, shape, place.group, ROLES[cand.role].stage, file=str(reader.path), source=[key],
                            source_dtype=str(reader.dtype(key)).replace("torch.", ""), adaptation=adaptation,
                            role=cand.role, candidate=index, **where)
    return TensorRecord(name, shape, place.group, INITIALISED_STAGE, reason="; ".join(reasons) or "no rule provides it",
                        cause=cause or "new", cause_role=cause_role, **where)


def _initialise_partial_units(records: list[TensorRecord]) -> None:
    """An all-or-nothing unit (the mask head): if any of its tensors is initialised, all of them are.

    (Mixing a layout variant's depthwise conv with freshly initialised layers would be meaningless; the
    same holds when ``allow_missing`` lets a tensor missing from its file be initialised.)
    """
    from models.loading.source_map import RULES_BY_NAME

    for rule in (r for r in RULES_BY_NAME.values() if r.unit):
        unit = [r for r in records if r.rule == rule.name]
        failed = [r for r in unit if r.stage == INITIALISED_STAGE]
        if failed and len(failed) < len(unit):
            why, role = failed[0].reason, failed[0].cause_role
            for r in unit:
                if r.stage != INITIALISED_STAGE:
                    r.stage, r.file, r.source, r.adaptation = INITIALISED_STAGE, None, [], []
                    r.role, r.candidate, r.source_dtype = None, None, None
                    r.cause, r.cause_role = "unit", role
                    r.reason = f"{r.group} initialised as a whole ({why})"


def _missing_error(missing: list[TensorRecord], readers, layouts) -> MissingTensorsError:
    role = missing[0].cause_role
    path = readers[role].path
    keys = [r.source[0] for r in missing if r.cause_role == role]
    shown = ", ".join(keys[:_SHOWN]) + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")
    return MissingTensorsError(
        f"{path}: incomplete {LAYOUT_DESCRIPTION.get(layouts.get(role), '')} checkpoint: it lacks {len(keys)} "
        f"tensor(s) its layout has ({shown}); re-download or re-export it, or pass --allow-missing to "
        f"initialise them")


def plan_notes(records: list[TensorRecord], readers: Mapping[str, CheckpointReader],
               layouts: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(notes, warnings) about what was initialised and why, read off the records' fields."""
    notes: list[str] = []
    warnings: list[str] = []

    def groups(cause: str, role: str) -> list[str]:
        return list(dict.fromkeys(r.group for r in records if r.cause == cause and r.cause_role == role))

    for role in PRETRAINED:
        if role not in readers:
            provided = groups("no_file", role)
            if provided:
                more = " ..." if len(provided) > 6 else ""
                notes.append(f"no {role} file: initialised {', '.join(provided[:6])}{more}")
            continue
        name, layout = readers[role].path.name, layouts.get(role, "?")
        lacking = groups("not_in_layout", role)
        if lacking:
            notes.append(f"{name} ({LAYOUT_DESCRIPTION.get(layout, layout)} layout) has no "
                         f"{', '.join(lacking)}: initialised")
        for group in dict.fromkeys(groups("layout_variant", role) + groups("unit", role)):
            causes = {r.cause for r in records if r.group == group}
            why = ("the file has the other layout variant" if "layout_variant" in causes
                   else "some of its tensors are missing from the file")
            notes.append(f"{name}: {group} initialised as a whole ({why})")
        missing = [r for r in records if r.cause == "missing" and r.cause_role == role]
        if missing:
            warnings.append(f"{readers[role].path}: lacks {len(missing)} tensor(s) its {layout} layout has "
                            f"(in {', '.join(dict.fromkeys(r.group for r in missing))}); initialised them "
                            f"because missing tensors were allowed")
        mismatched = groups("shape_mismatch", role)
        if mismatched:
            warnings.append(f"{readers[role].path}: tensors of another shape in {', '.join(mismatched)}; "
                            f"initialised them because mismatched tensors were allowed")
    return notes, warnings
