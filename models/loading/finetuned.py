"""Stage 4 of weight loading: the tensors of a ``page4d train`` run overlay stages 1-3.

A run folder (written by ``page4d train``) holds::

    RUN/config.json          {"format": "page4d-train-run", "version": 1, "network": <Page4DConfig dict>, ...}
    RUN/weights.safetensors  trained tensors under the model's own state_dict names,
                             metadata "step" (optimizer steps done) and "run" (the run's name)

``open_run(path)`` accepts the folder or its weights file and checks, from the JSON and the file
header only, that it is a run page4d can use. ``check_network(run, config)`` refuses a model whose
configuration differs from the network the run trained (one line naming every differing field).
``plan_finetuned`` turns the plan's records of the overlaid tensors into stage 4 ("stage 4: fine-tuned,
run NAME, step N, over stage K"); ``overlay_finetuned`` copies the tensors into a built model, last,
after stages 1-3 (so copies made for stage 3 - geometry stream from pose stream, sparse blocks from
their layer - never overwrite trained tensors).

A run that saved only the trained tensors (``--train new``/``page4d``) needs the same stages 1-3 it
was trained from; the report's notes say how many tensors the run covers and which initial weights
the run recorded, when they differ from the files loaded now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from models.config import ConfigError, Page4DConfig
from models.errors import Page4DError, PathLike
from models.loading.checkpoint_io import open_checkpoint
from models.loading.checkpoint_reader import CheckpointError, CheckpointReader

RUN_FORMAT = "page4d-train-run"
RUN_VERSION = 1
RUN_CONFIG = "config.json"
RUN_WEIGHTS = "weights.safetensors"
STAGE = 4
MAX_CHAIN = 8  # runs initialised from runs (--init), followed at most this deep


class FinetunedError(CheckpointError, Page4DError):
    """A fine-tuned run cannot be used with this model (one line: the file, what is wrong, the fix)."""


@dataclass
class FinetunedRun:
    """A training run's weights, checked from headers: where they are and which network they fit."""

    run_dir: Path
    weights_path: Path
    config_path: Path
    network: dict  # Page4DConfig.to_dict() of the network the run trained
    name: str  # the run's name ("run" metadata, else the folder name)
    step: Optional[int]  # optimizer steps behind the weights ("step" metadata)
    init: dict = field(default_factory=dict)  # config.json "init": the pi3 / page4d files and the run it started from
    tensors: dict = field(default_factory=dict)  # name -> shape, from the weights header
    dtypes: dict = field(default_factory=dict)  # name -> dtype name, from the weights header

    @property
    def label(self) -> str:
        """``run NAME, step N`` (the provenance of every overlaid tensor)."""
        return f"run {self.name}, step {self.step if self.step is not None else '?'}"

    @property
    def started_from(self) -> Optional[str]:
        """The run (folder or weights file) this run was initialised from (``page4d train --init``), if any."""
        value = self.init.get("init")
        return str(value) if value else None

    def file_record(self) -> dict:
        """The report's ``files`` entry of this run."""
        return {"path": str(self.weights_path), "layout": RUN_FORMAT, "format": "safetensors",
                "tensors": len(self.tensors), "run": self.name, "step": self.step, "run_dir": str(self.run_dir)}


def open_run(path: PathLike) -> FinetunedRun:
    """The run at ``path`` (a run folder or its weights file); ``FinetunedError`` when unusable.

    Reads config.json and the weights file's header only (no tensor data).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FinetunedError(f"{path}: no such run folder or weights file; pass the folder `page4d train --out` "
                             f"wrote (or its {RUN_WEIGHTS})")
    run_dir, weights_path = (path, path / RUN_WEIGHTS) if path.is_dir() else (path.parent, path)
    config_path = run_dir / RUN_CONFIG
    if not config_path.is_file():
        raise FinetunedError(f"{config_path}: missing; {path} is not a `page4d train` run folder (pass the folder "
                             f"`page4d train --out` wrote, which holds {RUN_CONFIG} and {RUN_WEIGHTS})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FinetunedError(f"{config_path}: unreadable run config ({type(exc).__name__}: {exc}); "
                             "the run folder is damaged, use another run or checkpoint") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise FinetunedError(f"{config_path}: format is {found!r}, not {RUN_FORMAT!r}; pass a folder written by "
                             "`page4d train`")
    if config.get("version") != RUN_VERSION:
        raise FinetunedError(f"{config_path}: run format version {config.get('version')!r}, this page4d reads "
                             f"version {RUN_VERSION}; use the page4d version that wrote the run")
    network = config.get("network")
    if not isinstance(network, dict):
        raise FinetunedError(f"{config_path}: no 'network' configuration; the run folder is incomplete "
                             "(was the run interrupted before its first checkpoint?)")
    if not weights_path.is_file():
        raise FinetunedError(f"{weights_path}: missing; the run has not written a checkpoint yet (wait for its "
                             "first checkpoint or pass another run)")
    try:
        with open_checkpoint(weights_path) as reader:
            tensors = {key: tuple(reader.shape(key)) for key in reader.keys()}
            dtypes = {key: str(reader.dtype(key)).replace("torch.", "") for key in reader.keys()}
            metadata = dict(reader.metadata)
    except CheckpointError as exc:
        raise FinetunedError(str(exc)) from None
    if not tensors:
        raise FinetunedError(f"{weights_path}: holds no tensors; use a checkpoint written after training started")
    step = metadata.get("step")
    try:
        step = int(step) if step is not None else None
    except ValueError:
        step = None
    return FinetunedRun(run_dir=run_dir, weights_path=weights_path, config_path=config_path, network=network,
                        name=str(metadata.get("run") or run_dir.name), step=step,
                        init=config.get("init") if isinstance(config.get("init"), dict) else {},
                        tensors=tensors, dtypes=dtypes)


def open_chain(path: PathLike) -> list[FinetunedRun]:
    """The run at ``path`` and the runs it was initialised from (``--init``), oldest first.

    A run that saved only its trained tensors needs the run it started from; an ancestor that no longer
    exists is reported by ``plan_finetuned`` only when the network is not covered without it.
    """
    chain = [open_run(path)]
    seen = {chain[0].weights_path.resolve()}
    while chain[0].started_from is not None and Path(chain[0].started_from).exists():
        parent = open_run(chain[0].started_from)
        if parent.weights_path.resolve() in seen or len(chain) >= MAX_CHAIN:
            raise FinetunedError(f"{chain[0].config_path}: the runs' --init references loop or exceed {MAX_CHAIN} "
                                 "runs; train with --save full to make a run self-contained")
        seen.add(parent.weights_path.resolve())
        chain.insert(0, parent)
    return chain


def prepare_finetuned(path: Optional[PathLike], config: Page4DConfig) -> list[FinetunedRun]:
    """``open_chain`` + ``check_network`` for every run ([] when ``path`` is None), before any tensor is read."""
    if path is None:
        return []
    chain = open_chain(path)
    for run in chain:
        check_network(run, config)
    return chain


def run_config(run: FinetunedRun) -> Page4DConfig:
    """The network configuration the run trained (``FinetunedError`` when it is not a valid one)."""
    try:
        return Page4DConfig.from_dict(run.network)
    except (ConfigError, TypeError, ValueError) as exc:
        raise FinetunedError(f"{run.config_path}: invalid 'network' configuration ({exc}); the run was written "
                             "by another page4d version") from None


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def config_differences(trained: Page4DConfig, built: Page4DConfig) -> list[str]:
    """``["depth: run 4, model 24", ...]`` for every field where the two configurations differ."""
    a, b = _flatten(trained.to_dict()), _flatten(built.to_dict())
    return [f"{key}: run {a.get(key)!r}, model {b.get(key)!r}" for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)]


def matching_preset(config: Page4DConfig) -> Optional[str]:
    """The preset whose configuration equals ``config`` (None when the run used overrides)."""
    from models.config import PRESETS

    return next((name for name, preset in PRESETS.items() if preset == config), None)


def check_network(run: FinetunedRun, config: Page4DConfig) -> None:
    """``FinetunedError`` naming every differing field unless ``config`` is the network the run trained."""
    trained = run_config(run)
    differences = config_differences(trained, config)
    if not differences:
        return
    preset = matching_preset(trained)
    fix = (f"build the same network (--preset {preset})" if preset else
           "build the network with the run's configuration (load_model(config=...) from its config.json)")
    shown = "; ".join(differences[:6]) + (f"; ... {len(differences) - 6} more" if len(differences) > 6 else "")
    raise FinetunedError(f"{run.config_path}: the run trained a different network ({shown}); {fix}")


def plan_finetuned(report, runs: list[FinetunedRun]) -> None:
    """Mark the records of the tensors the runs provide as stage 4 (header-only, no data read).

    ``report`` is the ``LoadReport`` of stages 1-3; ``runs`` oldest first (``prepare_finetuned``), a later
    run's tensor replacing an earlier one's. Records are updated in place, ``files`` gains one entry per run
    (``finetuned`` for the newest) and ``notes`` say how much of the network the runs cover.
    """
    from models.loading.provenance import STAGE_NAMES

    by_name = {r.name: r for r in report.records}
    for k, run in enumerate(runs):
        unknown = [key for key in run.tensors if key not in by_name]
        if unknown:
            raise FinetunedError(f"{run.weights_path}: tensor {unknown[0]!r} (and {len(unknown) - 1} more) is not "
                                 "in this network; the file is not from a page4d run of this configuration")
        for key, shape in run.tensors.items():
            record = by_name[key]
            if tuple(shape) != tuple(record.shape):
                raise FinetunedError(f"{run.weights_path}: tensor {key} has shape {list(shape)} but the model needs "
                                     f"{list(record.shape)}; the file does not belong to this run's network")
            below = (f"run {Path(record.file).parent.name}" if record.stage == STAGE
                     else STAGE_NAMES.get(record.stage, f"stage {record.stage}"))
            record.stage, record.file, record.source = STAGE, str(run.weights_path), [key]
            record.source_dtype = run.dtypes.get(key)
            record.adaptation = [f"fine-tuned, {run.label}", f"over {below}"]
            record.reason = None
        role = "finetuned" if k == len(runs) - 1 else f"finetuned (start of {runs[k + 1].name})"
        report.files[role] = run.file_record()
    covered = [r for r in report.records if r.stage == STAGE]
    total = sum(r.numel for r in report.records)
    labels = " then ".join(run.label for run in runs)
    report.notes.append(f"stage 4 (fine-tuned, {labels}): {len(covered)} of {len(report.records)} tensors, "
                        f"{sum(r.numel for r in covered):,} of {total:,} parameters; the others come from stages 1-3")
    oldest = runs[0]
    if oldest.started_from is not None and len(covered) < len(report.records):
        raise FinetunedError(f"{oldest.config_path}: the run started from {oldest.started_from}, which is missing, "
                             "and saved only its trained tensors; restore that run or train with --save full")
    report.notes.extend(_init_notes(oldest, report))


def _init_notes(run: FinetunedRun, report) -> list[str]:
    """A note per initial-weights file the run recorded that differs from the file loaded now."""
    notes = []
    for role in ("pi3", "page4d"):
        recorded = run.init.get(role)
        if not isinstance(recorded, (str, type(None))) or role not in run.init:
            continue
        loaded = report.files.get(role, {}).get("path")
        if _same_file(recorded, loaded):
            continue
        notes.append(f"the run was trained from {role} = {recorded or 'none (initialised)'} but {loaded or 'none'} "
                     "is loaded now: tensors the run did not save differ from its training")
    return notes


def _same_file(a: Optional[str], b: Optional[str]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def overlay_finetuned(model: torch.nn.Module, report, runs: list[FinetunedRun]) -> None:
    """Copy the runs' tensors into ``model`` (built and filled by stages 1-3), oldest run first, casting
    to each tensor's dtype.

    Call after ``plan_finetuned`` and after every stage-1-3 step. Non-finite values are refused (the
    tensor is named) rather than loaded.
    """
    from models.loading.loader import copy_source_into

    params = dict(model.named_parameters())
    records = {r.name: r for r in report.records}
    for run in runs:
        reader: CheckpointReader = open_checkpoint(run.weights_path)
        try:
            with torch.no_grad():
                for key in run.tensors:
                    dest = params[key]
                    copy_source_into(reader, key, dest)
                    if dest.is_floating_point() and not bool(torch.isfinite(dest).all()):
                        raise FinetunedError(f"{run.weights_path}: tensor {key} holds NaN/Inf values; use an "
                                             "earlier checkpoint of the run")
        finally:
            reader.close()
    for record in records.values():
        if record.stage == STAGE:
            target = str(params[record.name].dtype).replace("torch.", "")
            if record.source_dtype and record.source_dtype != target:
                record.adaptation.append(f"dtype {record.source_dtype} -> {target}")
