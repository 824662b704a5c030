"""Everything a run needs before its first step: checks, dataset and loader, model, selection,
optimizer, schedule, the run folder (new, or resumed from its last checkpoint).

Order: what can be checked cheaply is checked first (options, run folder, every clip), then the model
is built, and only then is the run folder created and config.json written.
"""

from __future__ import annotations

import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from models.errors import Page4DError
from page4d_cli.pipeline.types import Reporter
from page4d_cli.train import run_folder as rf
from page4d_cli.train.config import TrainConfig, TrainConfigError
from page4d_cli.train.distributed import DistContext, barrier
from page4d_cli.train.optim import build_optimizer, build_scheduler
from page4d_cli.train.param_groups import apply_selection, build_groups, select_trainable, selection_table
from page4d_cli.train.sampler import ResumableSampler


@dataclass
class Session:
    run: Path
    model: torch.nn.Module  # the network itself (parameter names as in its state_dict)
    net: torch.nn.Module  # what the forward pass calls: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    stream: "BatchStream"
    saved_names: list[str]  # parameters written to weights.safetensors
    step: int = 0
    skipped: int = 0
    created_dir: Optional[bool] = None  # new run (rank 0): whether the folder itself was created by it


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _ignore_sigint(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process (which checkpoints, then stops them)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class BatchStream:
    """Endless batches from a DataLoader over ``ResumableSampler``; ``position()`` = (epoch, consumed)."""

    def __init__(self, dataset, cfg: TrainConfig, ctx: DistContext) -> None:
        self.dataset, self.cfg, self.ctx = dataset, cfg, ctx
        self.sampler = ResumableSampler(dataset, ctx.world, ctx.rank, cfg.seed)
        if self.sampler.num_samples < cfg.batch:
            raise TrainConfigError(f"--batch {cfg.batch} x {ctx.world} process(es) needs at least "
                                   f"{cfg.batch * ctx.world} training clips, got {len(dataset)}; add clips or "
                                   "lower --batch / --nproc")
        self.epoch, self.consumed = 0, 0
        self.iterator = None

    def set_position(self, epoch: int, consumed: int) -> None:
        self.epoch, self.consumed, self.iterator = int(epoch), int(consumed), None

    def position(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def _open(self) -> None:
        self.sampler.set_position(self.epoch, self.consumed)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        workers = self.cfg.workers
        self.iterator = iter(DataLoader(self.dataset, batch_size=self.cfg.batch, sampler=self.sampler,
                                        num_workers=workers, drop_last=True, worker_init_fn=_ignore_sigint,
                                        pin_memory=self.ctx.device.type == "cuda"))

    def next(self, device: torch.device) -> dict:
        for _ in range(2):
            if self.iterator is None:
                self._open()
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.epoch, self.consumed, self.iterator = self.epoch + 1, 0, None
                continue
            except Page4DError as exc:
                raise type(exc)(_worker_message(exc)) from None
            except RuntimeError as exc:
                if "stack expects each tensor to be equal size" not in str(exc):
                    raise
                raise TrainConfigError(f"--batch {self.cfg.batch}: the clips of one batch have different network "
                                       "image sizes (the size follows each sample's reference camera aspect ratio); "
                                       "use --batch 1 and scale with --nproc / --accumulate") from None
            self.consumed += self.cfg.batch
            return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        raise TrainConfigError("the data loader yields no batches; add clips or lower --batch")


def _worker_message(exc: Exception) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker."""
    text = str(exc)
    marker = f"{type(exc).__name__}: "
    return text.rsplit(marker, 1)[-1] if "DataLoader worker" in text and marker in text else text


def build_dataset(cfg: TrainConfig):
    from page4d_cli.train.dataset import GTClipDataset, SampleSpec

    spec = SampleSpec(frames=cfg.frames, cameras=cfg.cameras, size=cfg.size, stride_range=cfg.stride_range)
    return GTClipDataset(list(cfg.data), spec, seed=cfg.seed)


def build_model(cfg: TrainConfig, network):
    """The network filled from --pi3/--page4d (and --init overlaid); random tensors from ``cfg.seed``."""
    from models.loading.loader import load_model

    seed_everything(cfg.seed)  # stage-3 initialisation is identical on every rank and on resume
    model, report = load_model(cfg.pi3, cfg.page4d, preset=cfg.preset, config=network, finetuned=cfg.init)
    return model.float().train(), report


def open_session(cfg: TrainConfig, ctx: DistContext, dataset, network, resume: bool, say: Reporter) -> Session:
    """``say``: the reporter (``info``: the parameter groups, resuming); silent on ranks other than 0."""
    run = Path(cfg.out)
    if not resume and ctx.is_main:
        rf.check_new_run_folder(run)
    dataset = dataset if dataset is not None else build_dataset(cfg)
    if cfg.eval_data and ctx.is_main:
        from page4d_cli.train.evaluation import eval_clips

        eval_clips(cfg.eval_data)  # a bad held-out clip fails now, not after hours of training
    model, report = build_model(cfg, network)
    trainable = select_trainable(model, cfg.train, cfg.train_patterns)
    if not trainable:
        raise TrainConfigError(f"--train {cfg.train} with patterns {list(cfg.train_patterns)} selects no parameter "
                               "of this network; check --train-pattern against `page4d inspect-load` names")
    apply_selection(model, trainable)
    if cfg.checkpointing:
        from page4d_cli.train.checkpointing import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    model.to(ctx.device)
    groups = build_groups(model, cfg.weight_decay)
    if ctx.is_main:
        say.info(groups_table(model, groups))
    optimizer = build_optimizer(groups, cfg.lr, cfg.lr_new)
    scheduler = build_scheduler(optimizer, cfg.steps, cfg.warmup_steps)
    stream = BatchStream(dataset, cfg, ctx)
    saved = [n for n, _ in model.named_parameters()] if cfg.save == "full" else trainable
    session = Session(run, model, model, optimizer, scheduler, stream, saved)
    if resume:
        _restore(session, ctx)
        say.info(f"{run}: resuming at step {session.step} of {cfg.steps}")
    elif ctx.is_main:
        session.created_dir = _create_run(run, cfg, model, report)
    barrier(ctx)
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: some trained tensors (lambda_kpt without keypoints, the mask head while
        # the lambdas are 0) get no gradient in a given step. broadcast_buffers=False (no buffer sync at
        # all; its replacement still syncs at init) is deprecated in newer torch: its FutureWarning is
        # torch's note to us, not news for the user.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*broadcast_buffers.* is deprecated", category=FutureWarning)
            session.net = DistributedDataParallel(model, find_unused_parameters=True, broadcast_buffers=False,
                                                  device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    return session


def _create_run(run: Path, cfg: TrainConfig, model, report) -> bool:
    """Create the run folder and config.json; returns whether the folder was created (vs. empty before)."""
    created = not run.exists()
    try:
        run.mkdir(parents=True, exist_ok=True)
        init = {"pi3": rf.optional_path(cfg.pi3), "page4d": rf.optional_path(cfg.page4d),
                "init": rf.optional_path(cfg.init)}
        rf.write_json_atomic(run / rf.CONFIG, rf.run_config_dict(model.config.to_dict(), cfg.to_dict(), init))
    except OSError as exc:
        if created:
            shutil.rmtree(run, ignore_errors=True)
        raise rf.RunFolderError(f"{run}: cannot write the run folder ({exc.strerror or exc}); choose another --out")
    return created


def _restore(s: Session, ctx: DistContext) -> None:
    state = rf.load_checkpoint(s.run, s.model)
    if int(state.get("world", 1)) != ctx.world:
        raise rf.RunFolderError(f"{s.run / rf.STATE}: written by {state.get('world')} process(es), resumed with "
                                f"{ctx.world}; resume with the same --nproc to continue exactly")
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    if ctx.is_main:
        rf.set_rng_state(state["rng"])
        for name in (rf.METRICS, rf.EVAL):
            rf.truncate_jsonl(s.run / name, int(state["step"]))
    s.stream.set_position(state["sampler"]["epoch"], state["sampler"]["consumed"])
    s.step, s.skipped = int(state["step"]), int(state.get("skipped", 0))


def groups_table(model, groups) -> str:
    """``parameter groups:`` and one line per group (tensors, parameters, MiB, learning-rate kind)."""
    lrs = {g.name: g.lr_kind for g in groups}
    lines = ["parameter groups:"]
    for row in selection_table(model, groups):
        kind = f"lr {lrs[row['group']]}" if row["group"] in lrs else "no grad"
        lines.append(f"  {row['group']:<16} {row['tensors']:>6} tensors {row['parameters']:>13,} params "
                     f"{row['bytes'] / 2**20:>10.2f} MiB  ({kind})")
    return "\n".join(lines)


def resume_config(run: Path, given: Optional[dict] = None) -> tuple[TrainConfig, dict]:
    """(TrainConfig, network dict) of the run in ``run``; ``given`` options must agree with the run's."""
    data = rf.read_run_config(run)
    try:
        saved = TrainConfig.from_dict(data["training"])
    except (TypeError, ValueError, Page4DError) as exc:
        raise rf.RunFolderError(f"{run / rf.CONFIG}: invalid training config ({exc}); written by another "
                                "page4d version") from None
    cfg = saved.replace(**(given or {}), out=str(run))
    differences = saved.differences(cfg)
    if differences:
        raise rf.RunFolderError(f"{run / rf.CONFIG}: the run was made with other options ({'; '.join(differences[:4])} "
                                "[run vs given]); resume without them or start a new run with --out")
    return cfg, data["network"]
