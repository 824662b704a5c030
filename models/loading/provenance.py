"""Provenance of every tensor of the network: which stage, file and source key(s) filled it, how.

``TensorRecord``: one tensor of the model, with its place (group label, 1-based layer, kind, stream),
the role and source-map rule that filled it, or the cause of its initialisation. Code reads those
fields; ``group``, ``adaptation`` and ``reason`` are the texts shown to people. ``LoadReport``: all
records plus the files, their layouts, the source tensors nobody used, notes and warnings. Both
serialise to JSON (``to_json``) and the report summarises per stage (``counts``) and per module group
(``by_group``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from models.loading.roles import STAGE_NAMES

if TYPE_CHECKING:  # models.token_layout imports torch; this module stays light
    from models.token_layout import Stream

__all__ = ["CAUSES", "STAGE_NAMES", "LoadReport", "TensorRecord"]

#: Why a tensor was initialised (``TensorRecord.cause``, stage 3).
CAUSES = {
    "new": "new in this network (no checkpoint has it)",
    "no_file": "the role's file was not given",
    "not_in_layout": "the file's layout has no such tensor (e.g. a VGGT-1B file has no mask head)",
    "missing": "the file's layout has it but the file lacks it (allowed with allow_missing)",
    "layout_variant": "the file's tensor has the other layout variant's shape",
    "shape_mismatch": "the file's tensor has another shape (allowed with on_size_mismatch='init')",
    "unit": "initialised with the rest of its all-or-nothing unit (the mask head)",
}


@dataclass
class TensorRecord:
    name: str  # our tensor name
    shape: tuple
    group: str  # "encoder", "tokens", "layer 3 / Time-SA / pose", "mask head", "camera head", ...
    stage: int  # 1 = Pi3, 2 = PAGE-4D, 3 = initialised, 4 = fine-tuned (a page4d train run)
    file: Optional[str] = None
    source: list = field(default_factory=list)  # source key(s)
    source_dtype: Optional[str] = None
    adaptation: list = field(default_factory=list)  # "slice ...", "repeat ...", "copy of layer ...", "dtype ..."
    reason: Optional[str] = None  # stage 3: why initialised, for people
    # -- structure (what code reads) --------------------------------------------------------------
    layer: Optional[int] = None  # 1-based layer of a Time/View/sparse block or temporal encoding
    kind: Optional[str] = None  # "time" | "view" | "sparse" (source_map.KINDS); None outside blocks
    stream: Optional[Stream] = None  # a block's stream: "shared" | "pose" | "geo"; None outside blocks
    role: Optional[str] = None  # stage 1/2: the file role that filled it (models.loading.roles)
    rule: Optional[str] = None  # the source-map rule that matched (source_map.RULES_BY_NAME)
    candidate: Optional[int] = None  # stage 1/2: the index of the chosen candidate in that rule
    cause: Optional[str] = None  # stage 3: a key of CAUSES
    cause_role: Optional[str] = None  # stage 3: the role whose file was absent / lacked the tensor

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    def to_json(self) -> dict:
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["numel"] = self.numel
        return data


@dataclass
class LoadReport:
    records: list[TensorRecord]
    files: dict = field(default_factory=dict)  # role -> {"path", "layout", "format", "tensors"}
    unused: dict = field(default_factory=dict)  # role -> [source keys not used]
    config: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # how the plan came about ("no page4d file: ...")
    warnings: list = field(default_factory=list)  # what the user should act on (tensors missing ...)
    dtype: str = "float32"

    def record(self, name: str) -> TensorRecord:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(name)

    def counts(self) -> dict:
        """{stage: {"tensors": n, "parameters": n}} for stages 1-3 (all present, possibly 0), and stage 4
        (fine-tuned, ``models.loading.finetuned``) when any tensor comes from a training run."""
        stages = (1, 2, 3, 4) if any(r.stage == 4 for r in self.records) else (1, 2, 3)
        counts = {stage: {"tensors": 0, "parameters": 0} for stage in stages}
        for r in self.records:
            counts[r.stage]["tensors"] += 1
            counts[r.stage]["parameters"] += r.numel
        return counts

    def by_group(self) -> dict:
        """{group: {stage: tensors}} in model order."""
        groups: dict = defaultdict(lambda: defaultdict(int))
        for r in self.records:
            groups[r.group][r.stage] += 1
        return {g: dict(s) for g, s in groups.items()}

    def summary(self) -> dict:
        """A compact JSON-able summary (for run.json and logs)."""
        return {
            "files": self.files,
            "dtype": self.dtype,
            "per_stage": {STAGE_NAMES[s]: c for s, c in self.counts().items()},
            "unused_source_tensors": {role: len(keys) for role, keys in self.unused.items()},
            "notes": self.notes,
            "warnings": self.warnings,
        }

    def to_json(self) -> dict:
        return {
            "summary": self.summary(),
            "config": self.config,
            "tensors": [r.to_json() for r in self.records],
            "unused_source_tensors": self.unused,
        }

    def write_json(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path
