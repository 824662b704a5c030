"""Three-stage weight loading: Pi3, then PAGE-4D, then initialisation of the rest, with provenance.

    model, report = load_model(pi3="model.safetensors", page4d="checkpoint_mask.pt", preset="full")
    report.counts()          # tensors / parameters per stage
    report.write_json(path)  # every tensor: stage, file, source key(s), adaptation or reason

Memory: the model is built on the meta device (no allocation), materialised once with ``to_empty`` in
the requested dtype, and filled tensor by tensor. Safetensors tensors are read straight from the file
into the destination (no memory map); torch pickles are memory-mapped and each tensor's pages are
released from the process after its copy, so peak resident memory stays close to the model's size.

With ``dtype`` bfloat16/float16 the aggregator is stored in that dtype and the heads stay float32.

``inspect_load`` computes the same plan from the file headers alone (seconds on 5 GB files).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys
from pathlib import Path
from typing import Iterator, Optional

import torch

from models.config import PI3_BLOCK_EPS, VGGT_BLOCK_EPS, Page4DConfig
from models.errors import PathLike
from models.init import reset_owners_
from models.loading.checkpoint_io import open_checkpoint
from models.loading.checkpoint_reader import CheckpointError, CheckpointReader
from models.loading.finetuned import overlay_finetuned, plan_finetuned, prepare_finetuned
from models.loading.layouts import expect_layout
from models.loading.plan import plan_load, plan_notes
from models.loading.provenance import LoadReport
from models.loading.roles import INITIALISED_STAGE
from models.loading.source_map import PlanContext, candidate_of
from models.vggt import VGGT

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@contextlib.contextmanager
def open_sources(pi3: Optional[PathLike], page4d: Optional[PathLike]) -> Iterator[tuple[dict, dict]]:
    """Header-only readers per role, after checking each file is of the right family.

    A context manager: every reader opened is closed on exit, also when opening the next file or
    any later step fails. Yields ``(readers, layouts)``, both keyed by role.
    """
    readers: dict[str, CheckpointReader] = {}
    layouts: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for role, path in (("pi3", pi3), ("page4d", page4d)):
            if path is None:
                continue
            reader = stack.enter_context(open_checkpoint(path))
            layouts[role] = expect_layout(reader, role)
            readers[role] = reader
        yield readers, layouts


def config_for(preset: str, layouts: dict, config: Optional[Page4DConfig] = None, **overrides) -> Page4DConfig:
    """The model configuration; the mask-head layout follows the PAGE-4D file unless pinned."""
    if config is None:
        if layouts.get("page4d") == "page4d_ckpt150" and "mask_head_layout" not in overrides:
            overrides["mask_head_layout"] = "ckpt150"
        config = Page4DConfig.preset(preset, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    return config


def build_plan(model: VGGT, readers: dict, layouts: dict, dtype: torch.dtype, on_size_mismatch: str,
               allow_missing: bool = False) -> LoadReport:
    """The plan for ``model`` (meta is fine) from the open ``readers``, with notes and warnings."""
    cfg = model.config
    ctx = PlanContext(pi3_layers=cfg.pi3_layers, depth=cfg.depth, roles_present=set(readers))
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    records, unused = plan_load(shapes, readers, ctx, on_size_mismatch, layouts=layouts, allow_missing=allow_missing)
    files = {role: {"path": str(r.path), "layout": layouts[role], "format": r.format, "tensors": len(r)}
             for role, r in readers.items()}
    notes, warnings = plan_notes(records, readers, layouts)
    return LoadReport(records, files=files, unused=unused, config=cfg.to_dict(), notes=notes, warnings=warnings,
                      dtype=str(dtype).replace("torch.", ""))


def inspect_load(pi3: Optional[PathLike] = None, page4d: Optional[PathLike] = None, preset: str = "full",
                 dtype="float32", on_size_mismatch: str = "error", config: Optional[Page4DConfig] = None,
                 finetuned: Optional[PathLike] = None, allow_missing: bool = False, **overrides) -> LoadReport:
    """The loading plan and provenance from file headers only (no tensor data is read).

    ``allow_missing``: initialise (with a warning in ``report.warnings``) the tensors that a file's
    layout has but the file lacks, instead of raising ``MissingTensorsError``.
    """
    with open_sources(pi3, page4d) as (readers, layouts):
        cfg = config_for(preset, layouts, config, **overrides)
        runs = prepare_finetuned(finetuned, cfg)
        with torch.device("meta"):
            model = VGGT(config=cfg)
        report = build_plan(model, readers, layouts, resolve_dtype(dtype), on_size_mismatch, allow_missing)
    if runs:
        plan_finetuned(report, runs)
    return report


def load_model(pi3: Optional[PathLike] = None, page4d: Optional[PathLike] = None, preset: str = "full",
               dtype="float32", device="cpu", on_size_mismatch: str = "error",
               config: Optional[Page4DConfig] = None, finetuned: Optional[PathLike] = None,
               allow_missing: bool = False, **overrides) -> tuple[VGGT, LoadReport]:
    """Build the network and fill it from the Pi3 and PAGE-4D files (either may be None), then overlay
    the tensors of a ``page4d train`` run (``finetuned``: its folder or weights file) as stage 4.

    ``allow_missing`` as in :func:`inspect_load`; the warnings are in ``report.warnings``.
    """
    dtype = resolve_dtype(dtype)
    with open_sources(pi3, page4d) as (readers, layouts):
        cfg = config_for(preset, layouts, config, **overrides)
        runs = prepare_finetuned(finetuned, cfg)
        with torch.device("meta"):
            model = VGGT(config=cfg).to(dtype)
            keep_heads_float32_(model)
        report = build_plan(model, readers, layouts, dtype, on_size_mismatch, allow_missing)
        model = model.to_empty(device=device)
        reset_buffers_(model)
        params = dict(model.named_parameters())
        reset_owners_(model, [r.name for r in report.records if r.stage == INITIALISED_STAGE])
        with torch.no_grad():
            for r in report.records:
                if r.role is None:
                    continue
                candidate = candidate_of(r.rule, r.candidate)
                adapt = candidate.adaptation.apply if candidate.adaptation is not None else None
                copy_source_into(readers[r.role], r.source[0], params[r.name], adapt)
                target_dtype = str(params[r.name].dtype).replace("torch.", "")
                if r.source_dtype != target_dtype:
                    r.adaptation.append(f"dtype {r.source_dtype} -> {target_dtype}")
    apply_source_numerics(model, report)
    finish_stage3_copies(model, report)  # after the numerics: sparse blocks copy their layer's eps too
    if runs:  # last: stage-3 copies start from the base tensors, as when the run trained
        plan_finetuned(report, runs)
        overlay_finetuned(model, report, runs)
    return model.eval(), report


def keep_heads_float32_(model: VGGT) -> None:
    """The camera, depth and point heads stay float32 whatever the requested dtype (as trained)."""
    for head in (model.camera_head, model.depth_head, model.point_head):
        if head is not None:
            head.float()


def reset_buffers_(model: torch.nn.Module) -> None:
    """Recompute the non-persistent buffers that ``to_empty`` left uninitialised."""
    for module in model.modules():
        reset = getattr(module, "reset_buffers", None)
        if reset is not None:
            reset()


def finish_stage3_copies(model: VGGT, report: LoadReport) -> None:
    """Stage-3 stream blocks start as copies of each other (and sparse blocks of their layer)."""
    agg = model.aggregator
    initialised = {r.name for r in report.records if r.stage == INITIALISED_STAGE}
    if agg.dual:
        for kind in ("time", "view"):
            pose, geo = getattr(agg, f"pose_{kind}_blocks"), getattr(agg, f"geo_{kind}_blocks")
            for k in pose.layers():
                prefix = f"aggregator.geo_{kind}_blocks.{k}."
                if any(n.startswith(prefix) for n in initialised):
                    geo[k].load_state_dict(pose[k].state_dict())
    sync = getattr(agg, "sync_sparse_blocks", None)
    if sync is not None:
        sync()  # sparse blocks = copies of the (now filled) View-SA block of their layer


def apply_source_numerics(model: VGGT, report: LoadReport) -> None:
    """Blocks follow the LayerNorm eps of the checkpoint they were loaded from (Pi3 1e-6, VGGT 1e-5)."""
    role_of = {r.name: r.role for r in report.records}
    for container, k, block in model.aggregator.all_blocks():
        role = role_of.get(f"aggregator.{container}.{k}.norm1.weight")
        if role == "pi3":
            block.set_eps(*PI3_BLOCK_EPS)
        elif role == "page4d":
            block.set_eps(*VGGT_BLOCK_EPS)


# ----------------------------------------------------------------------------- tensor copying
_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4


def copy_source_into(reader: CheckpointReader, key: str, dest: torch.Tensor, adapt=None) -> None:
    """dest <- reader[key] (adapted, cast), without keeping the source's pages resident.

    Safetensors: the raw bytes are read with plain file reads, straight into ``dest`` when nothing
    needs converting, else into a temporary of the source dtype. Torch pickles: the memory-mapped
    tensor is copied, then its pages are released.
    """
    data_range = getattr(reader, "data_range", None)
    if data_range is not None:
        direct = (adapt is None and reader.dtype(key) == dest.dtype and dest.device.type == "cpu"
                  and dest.is_contiguous() and tuple(reader.shape(key)) == tuple(dest.shape))
        source = dest if direct else torch.empty(reader.shape(key), dtype=reader.dtype(key))
        _read_bytes_into(reader.path, *data_range(key), source)
        if direct:
            return
    else:
        source = reader.get(key)
    value = adapt(source) if adapt is not None else source
    dest.copy_(value.reshape(dest.shape))
    if reader.format == "torch":
        release_pages(source)


def _read_bytes_into(path: Path, offset: int, nbytes: int, dest: torch.Tensor) -> None:
    buffer = memoryview(dest.view(-1).view(torch.uint8).numpy())
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        done = 0
        while done < nbytes:  # readinto may return short counts on large reads
            got = f.readinto(buffer[done:])
            if not got:
                raise CheckpointError(f"{path}: unexpected end of file while reading a tensor; the file is "
                                      "truncated, re-download it (page4d weights fetch)")
            done += got


def release_pages(tensor: torch.Tensor) -> None:
    """Drop a memory-mapped tensor's pages from this process (Linux; they are re-read on next use)."""
    if not sys.platform.startswith("linux"):
        return
    storage = tensor.untyped_storage()
    start = -(-storage.data_ptr() // _PAGE) * _PAGE
    end = (storage.data_ptr() + storage.nbytes()) // _PAGE * _PAGE
    if end > start:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)


def would_fill_for(preset: str) -> dict[str, list[str]]:
    """:func:`would_fill` for a named preset (what ``page4d inspect-load`` shows without files)."""
    return would_fill(config_for(preset, {}))


def would_fill(config: Page4DConfig) -> dict[str, list[str]]:
    """Without files: which module groups a Pi3 and a PAGE-4D file of this size would fill.

    Plans against header-only (meta) synthetic checkpoints in the real layouts.
    """
    from models.loading.synthetic import synthetic_state_dict
    from models.loading.torch_reader import StateDictReader

    common = dict(embed_dim=config.embed_dim, encoder_depth=config.encoder.depth, num_heads=config.num_heads,
                  mlp_ratio=config.mlp_ratio)
    readers = {
        "pi3": StateDictReader(synthetic_state_dict("pi3", depth=max(config.pi3_layers, 1), **common), "Pi3 file"),
        "page4d": StateDictReader(synthetic_state_dict(
            "page4d" if config.mask_head_layout == "official" else "page4d_ckpt150", depth=config.depth,
            camera_trunk_depth=config.camera_head.trunk_depth, dpt_features=config.dpt.features,
            dpt_out_channels=config.dpt.out_channels, mask_hidden=config.mask_head_hidden, **common), "PAGE-4D file"),
    }
    with torch.device("meta"):
        model = VGGT(config=config)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    ctx = PlanContext(pi3_layers=config.pi3_layers, depth=config.depth, roles_present=set(readers))
    records, _ = plan_load(shapes, readers, ctx, on_size_mismatch="init")
    groups: dict[str, list[str]] = {"pi3": [], "page4d": []}
    for r in records:
        if r.role and r.group not in groups[r.role]:
            groups[r.role].append(r.group)
    return groups
