"""The training loop: one process, or one rank of a torchrun job (DistributedDataParallel).

    from page4d_cli.train import TrainConfig, train
    result = train(TrainConfig(data=clips, out="runs/a", preset="tiny", steps=200, size=112))

Per optimizer step: ``accumulate`` micro-batches of ``batch`` clips per rank (DDP averages the gradients
over ranks: the same update as one process with batch x ranks), the objective of ``losses.py`` in fp32
(network under bf16 autocast on CUDA), gradient clipping per module, AdamW, warm-up + cosine schedule.
A step whose loss terms or gradients are not finite on any rank is skipped on every rank (counted in
``skipped``; nothing is written into the weights or the optimizer state). Rank 0 logs and writes.
Ctrl-C (SIGINT) or SIGTERM: the current step ends, a checkpoint is written, ``TrainingInterrupted``.

What the run has to say goes to a reporter (``page4d_cli.pipeline.types.Reporter``; silent by default),
from rank 0 only: stage "train" (optimizer steps done / the last step of this run; detail: loss,
learning rate, seconds per step), stage "eval" (held-out clips done, from 0 at each evaluation),
``info`` (the parameter groups, resuming, each checkpoint, the held-out metrics) and ``warning`` (the
network's notices once each, skipped non-finite steps). Nothing is printed.
"""

from __future__ import annotations

import math
import re
import signal
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch

from page4d_cli.pipeline.predict import network_warnings_to
from page4d_cli.pipeline.types import Reporter
from page4d_cli.train import run_folder as rf
from page4d_cli.train.config import TrainConfig
from page4d_cli.train.distributed import DistContext, all_ranks, any_rank, barrier, mean_over_ranks, setup, teardown
from page4d_cli.train.losses import all_finite, compute_losses
from page4d_cli.train.optim import clip_per_module, lrs, total_norm
from page4d_cli.train.session import Session, open_session


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM: a checkpoint of ``step`` was written to ``run``; ``exit_code`` 130 / 143."""

    def __init__(self, run: Path, step: int, signum: int = signal.SIGINT) -> None:
        super().__init__(f"{run}: interrupted at step {step}; checkpoint written, continue with --resume {run}")
        self.run, self.step, self.exit_code = run, step, 128 + int(signum)


@dataclass
class TrainResult:
    run: Path
    step: int
    skipped: int
    last: dict  # the last logged metrics record


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between steps (installed in the main thread only)."""

    def __init__(self) -> None:
        self.set = False
        self.signum = signal.SIGINT
        self._previous = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if not self.set:
            self.set, self.signum = True, signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(cfg: TrainConfig, dataset=None, network=None, resume: bool = False,
          eval_fn: Optional[Callable] = None, reporter: Optional[Reporter] = None) -> TrainResult:
    """Run (or, with ``resume``, continue in ``cfg.out``) a training run; see the module docstring.

    dataset: a torch Dataset of items as ``page4d_cli.train.dataset`` (default: GTClipDataset of cfg.data).
    network: a ``Page4DConfig`` (default: the preset, or the layouts of the given weight files).
    eval_fn(model, cfg, ctx) -> dict of metrics, rank 0, every ``cfg.eval_every`` steps
    (default: ``evaluation.evaluate_model``, page4d eval's metrics on the clips of ``cfg.eval_data``).
    reporter: receives progress and notices (rank 0 only; default: nothing is said).
    """
    ctx = setup(cfg.device)
    say = reporter if reporter is not None and ctx.is_main else Reporter()  # rank 0 speaks for the job
    session = None
    try:
        with _StopFlag() as stop:
            session = open_session(cfg, ctx, dataset, network, resume, say)
            with network_warnings_to(say.warning):  # each NetworkWarning once
                return _run(cfg, ctx, session, stop, eval_fn, say)
    except Exception:
        if session is not None and session.created_dir is not None:
            rf.remove_unfinished_run(session.run, session.created_dir)
        raise
    finally:
        teardown(ctx)


def _run(cfg: TrainConfig, ctx: DistContext, s: Session, stop: _StopFlag, eval_fn, say: Reporter) -> TrainResult:
    target = cfg.stop_at or cfg.steps
    step, skipped = s.step, s.skipped
    last: dict = {}
    say.stage("train", step, target)  # the stage starts now: its ETA counts from here
    while step < target:
        record = _optimizer_step(cfg, ctx, s)
        step += 1
        skipped_now = bool(record.pop("skipped_now"))
        skipped += int(skipped_now)
        record.update(step=step, skipped=skipped)
        last = record
        if ctx.is_main and (step % cfg.log_every == 0 or step == target):
            rf.append_jsonl(s.run / rf.METRICS, record)
        if skipped_now:
            _warn_skipped(say, step, skipped - s.skipped)
        say.stage("train", step, target, step_detail(record))
        if cfg.eval_every and step % cfg.eval_every == 0:
            _evaluate(cfg, ctx, s, step, eval_fn, say)
        interrupted = any_rank(ctx, stop.set)
        if interrupted or step % cfg.save_every == 0 or step == target:
            _save(ctx, s, step, skipped, cfg, say)
        if interrupted:
            raise TrainingInterrupted(s.run, step, stop.signum)
    return TrainResult(s.run, step, skipped, last)


SKIPS_NAMED = 5  # skipped steps warned about one by one; later ones are only counted (metrics.jsonl "skipped")


def _warn_skipped(say: Reporter, step: int, skipped_here: int) -> None:
    if skipped_here <= SKIPS_NAMED:
        more = (f"; further skipped steps are only counted (\"skipped\" in {rf.METRICS})"
                if skipped_here == SKIPS_NAMED else "")
        say.warning(f"step {step}: non-finite loss or gradients, step skipped (weights unchanged){more}")


def step_detail(record: dict) -> str:
    """``loss 0.4213 · lr 1.0e-05 · 2.31 s/step`` (the blocks' learning rate, else the new tensors')."""
    loss = record.get("loss")
    lr = record.get("lr_blocks", record.get("lr_new"))
    parts = [f"loss {loss:.4f}" if loss is not None else "loss non-finite (skipped)"]
    if lr is not None:
        parts.append(f"lr {lr:.1e}")
    parts.append(f"{record['step_s']:.2f} s/step")
    return " · ".join(parts)


def _optimizer_step(cfg: TrainConfig, ctx: DistContext, s: Session) -> dict:
    """``accumulate`` micro-batches, clipping, the update (or a counted skip); returns the log record."""
    started = time.perf_counter()
    s.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    finite = True
    images = 0
    for micro in range(cfg.accumulate):
        batch = s.stream.next(ctx.device)
        images += batch["images"].shape[0] * batch["images"].shape[1] * batch["images"].shape[2]
        last_micro = micro == cfg.accumulate - 1
        no_sync = s.net.no_sync() if ctx.distributed and not last_micro else nullcontext()
        with no_sync:
            with _autocast(ctx.device):
                outputs = s.net(batch["images"])
            terms = compute_losses(outputs, batch, cfg.loss, s.model.config.patch_size)
            ok = all_ranks(ctx, all_finite(terms))
            finite = finite and ok
            objective = terms["objective"] / cfg.accumulate
            # A non-finite step still runs backward (zeroed) so every rank takes part in DDP's all-reduce.
            (objective if ok else objective.nan_to_num(0.0, 0.0, 0.0) * 0).backward()
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) / cfg.accumulate
    norms = clip_per_module(s.model, cfg.clip_norm)
    grad_norm = total_norm(norms)
    finite = all_ranks(ctx, finite and math.isfinite(grad_norm))
    if finite:
        s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    rates = lrs(s.optimizer)
    with warnings.catch_warnings():  # a skipped step still advances the schedule (it counts as a step)
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        s.scheduler.step()
    logged = mean_over_ranks(ctx, sums)
    elapsed = time.perf_counter() - started
    record = {"loss": _clean(logged.pop("objective", float("nan")))}
    record.update({k: _clean(v) for k, v in sorted(logged.items())})
    record.update(rates)
    record.update(grad_norm=_clean(grad_norm), **{f"grad_norm_{k}": _clean(v) for k, v in norms.items()})
    record.update(images_per_s=images * ctx.world / elapsed, step_s=elapsed,
                  peak_memory_mb=rf.peak_memory_mb(ctx.device), skipped_now=not finite)
    return record


def _clean(value: float):
    """JSON-safe: non-finite values are logged as null."""
    return float(value) if math.isfinite(value) else None


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (fp32 where bf16 is unsupported: fp16 would need loss scaling); fp32 on CPU."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _save(ctx: DistContext, s: Session, step: int, skipped: int, cfg: TrainConfig, say: Reporter) -> None:
    if ctx.is_main:
        state = {"step": step, "skipped": skipped, "optimizer": s.optimizer.state_dict(),
                 "scheduler": s.scheduler.state_dict(), "rng": rf.rng_state(), "sampler": s.stream.position(),
                 "world": ctx.world}
        rf.save_checkpoint(s.run, s.model, s.saved_names, state)
        say.info(f"{s.run}: checkpoint of step {step} written")
    barrier(ctx)


def _evaluate(cfg: TrainConfig, ctx: DistContext, s: Session, step: int, eval_fn, say: Reporter) -> None:
    if ctx.is_main:
        where, counted = f"step {step}", []

        def clips_done(done: int, total: int) -> None:
            counted.append(done)
            say.stage("eval", done, total, where)

        if eval_fn is None:
            from page4d_cli.train.evaluation import evaluate_model

            eval_fn = partial(evaluate_model, progress=clips_done)
        say.stage("eval", 0, None, where)  # the stage (re)starts now
        s.model.eval()
        try:
            with torch.no_grad(), _autocast(ctx.device):
                metrics = eval_fn(s.model, cfg, ctx)
        finally:
            s.model.train()
        rf.append_jsonl(s.run / rf.EVAL, {"step": step, **metrics})
        if not counted:  # an eval_fn that does not count its clips: the stage ends as one unit
            say.stage("eval", 1, 1, where)
        say.info(f"step {step} held-out: {eval_summary(metrics)}")
    barrier(ctx)


def eval_summary(metrics: dict) -> str:
    """``ate 0.0123 · abs_rel 0.0456 · clips 2 · failed 0`` (numbers only, in the order given)."""
    return " · ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                      for key, value in metrics.items() if isinstance(value, (int, float)))

