"""``page4d train``: fine-tune the network on ground-truth clips (PAGE-4D's recipe, torchrun / DDP).

A thin shell over ``page4d_cli.train``: options -> ``TrainConfig`` (whose fields hold every default),
``--nproc N`` -> ``python -m torch.distributed.run`` re-running this command line, errors -> one line.
Progress and notices come from the training library through a reporter drawn on stderr (Rich bars on a
terminal, ``page4d: ...`` lines in a log; ``--no-progress``: notices only), from rank 0 under torchrun;
the closing summary goes to stdout. torch is imported only inside the functions (``page4d --help``
stays light).
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

import typer

from models.errors import Page4DError
from page4d_cli.commands import summary
from page4d_cli.train.config import DEVICES, PRESETS, SAVE_CHOICES, TRAIN_CHOICES, LossConfig, TrainConfig

if TYPE_CHECKING:
    from page4d_cli.pipeline.types import Reporter
    from page4d_cli.train.loop import TrainResult

D = TrainConfig()  # the defaults shown in --help
HELP = "\n\n".join([summary("train"), (
    "Writes a run folder (config.json, metrics.jsonl, weights.safetensors, train_state.pt) usable with "
    "`reconstruct --finetuned RUN`.")])


app = typer.Typer(add_completion=False)


@app.command("train", help=HELP)
def train_command(
    data: Optional[Path] = typer.Argument(None, help="Folder of ground-truth clips, one clip, or a text file "
                                          "listing clips (not needed with --resume)."),
    out: Optional[Path] = typer.Option(None, "--out", help="New run folder to write."),
    preset: Optional[str] = typer.Option(None, "--preset", help=f"Network size: {', '.join(PRESETS)} "
                                         f"(default {D.preset})."),
    pi3: Optional[Path] = typer.Option(None, "--pi3", help="Pi3 model.safetensors (stage 1 weights)."),
    page4d: Optional[Path] = typer.Option(None, "--page4d", help="PAGE-4D / VGGT checkpoint (stage 2 weights)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from a previous run (folder or its "
                                        "weights.safetensors), overlaid on --pi3/--page4d."),
    train: Optional[str] = typer.Option(None, "--train", help=f"What trains: {', '.join(TRAIN_CHOICES)} "
                                        f"(default {D.train})."),
    train_pattern: Optional[List[str]] = typer.Option(None, "--train-pattern", help="Also train parameters "
                                                      "whose name matches this glob (repeatable)."),
    steps: Optional[int] = typer.Option(None, "--steps", help=f"Optimizer steps (default {D.steps})."),
    batch: Optional[int] = typer.Option(None, "--batch", help=f"Clips per process per step (default {D.batch})."),
    accumulate: Optional[int] = typer.Option(None, "--accumulate", help="Micro-batches per optimizer step "
                                             f"(gradient accumulation) (default {D.accumulate})."),
    frames: Optional[int] = typer.Option(None, "--frames", help=f"Instants T per sample (default {D.frames})."),
    cameras: Optional[int] = typer.Option(None, "--cameras", help=f"Cameras V per sample (default {D.cameras})."),
    size: Optional[int] = typer.Option(None, "--size", help=f"Network image width (default {D.size})."),
    stride_range: Optional[Tuple[int, int]] = typer.Option(None, "--stride-range", help="Stride between sampled "
                                                           f"instants, MIN MAX (default {D.stride_range[0]} "
                                                           f"{D.stride_range[1]})."),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Learning rate of the blocks (default {D.lr:g})."),
    lr_new: Optional[float] = typer.Option(None, "--lr-new", help="Learning rate of the new tensors (lambdas, "
                                           f"gates, temporal encodings) (default {D.lr_new:g})."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Linear warm-up steps (default 5% of --steps)."),
    mask_loss: Optional[float] = typer.Option(None, "--mask-loss", help="Weight W of a BCE loss of the fused "
                                              "mask against GT masks (default 0, off)."),
    checkpointing: Optional[bool] = typer.Option(None, "--checkpointing/--no-checkpointing",
                                                 help="Activation checkpointing per block (less memory, ~1/3 "
                                                 "more compute)."),
    save: Optional[str] = typer.Option(None, "--save", help="weights.safetensors holds the trained tensors or "
                                       f"the full model: {', '.join(SAVE_CHOICES)} (default {D.save})."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Checkpoint every K steps "
                                             f"(default {D.save_every}); always at the end."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Held-out clips evaluated every "
                                             "--eval-every steps (eval.jsonl)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate every K steps."),
    stop_at: Optional[int] = typer.Option(None, "--stop-at", help="Stop after step N with a checkpoint "
                                          "(the schedule still spans --steps); continue with --resume."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder exactly."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (launched with torchrun)."),
    device: Optional[str] = typer.Option(None, "--device", help=f"{', '.join(DEVICES)} (default {D.device})."),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Random seed (default {D.seed})."),
    workers: Optional[int] = typer.Option(None, "--workers", help=f"DataLoader workers (default {D.workers})."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (terminal) or progress lines "
                                     "(log); notices and the summary still print."),
) -> None:
    given = {key: value for key, value in dict(
        preset=preset, pi3=_path(pi3), page4d=_path(page4d), init=_path(init), train=train,
        train_patterns=tuple(train_pattern) if train_pattern else None, steps=steps, batch=batch,
        accumulate=accumulate, frames=frames, cameras=cameras, size=size, stride_range=stride_range, lr=lr,
        lr_new=lr_new, warmup=warmup, checkpointing=checkpointing, save=save, save_every=save_every,
        eval_data=_path(eval_data), eval_every=eval_every, stop_at=stop_at, device=device, seed=seed,
        workers=workers).items() if value is not None}
    if mask_loss is not None:
        given["loss"] = LossConfig(mask_weight=mask_loss)
    if no_progress:
        given["progress"] = False
    cfg, network = training_config(data, out, resume, given)
    if nproc > 1:
        code = launch_workers(nproc, cfg, resume is not None)
    else:
        code = train_here(cfg, network, resume is not None)
    if code:
        raise typer.Exit(code)


def _path(value: Optional[Path]) -> Optional[str]:
    return str(value.expanduser().resolve()) if value is not None else None


def training_config(data: Optional[Path], out: Optional[Path], resume: Optional[Path], given: dict):
    """(TrainConfig, network dict or None) from the command line; every cheap check happens here."""
    from page4d_cli.data import list_clips

    if resume is None and (data is None or out is None):
        raise Page4DError("page4d train: DATA and --out are required (or --resume RUN); e.g. "
                          "`page4d train clips/ --out runs/a`")
    if data is not None:
        given["data"] = tuple(str(p.resolve()) for p in list_clips(data))
    if resume is not None:
        from page4d_cli.train.session import resume_config

        if out is not None and out.resolve() != resume.resolve():
            raise Page4DError(f"{out}: --out and --resume name different folders; a resumed run continues in "
                              f"{resume} (drop --out)")
        return resume_config(resume.resolve(), given)
    from page4d_cli.train.run_folder import check_new_run_folder

    cfg = TrainConfig(out=str(out.resolve()), **given)
    check_new_run_folder(Path(cfg.out))
    return cfg, None


def run_training(cfg: TrainConfig, network: Optional[dict] = None, resume: bool = False, dataset=None,
                 reporter: Optional["Reporter"] = None) -> "TrainResult":
    """Train in this process (or this torchrun rank): ``train`` with the network of ``training_config``.

    reporter: progress and notices (default: silent). Raises ``TrainingInterrupted`` on Ctrl-C / SIGTERM.
    """
    from models.config import Page4DConfig
    from page4d_cli.train.loop import train

    return train(cfg, dataset=dataset, network=Page4DConfig.from_dict(network) if network else None,
                 resume=resume, reporter=reporter)


def train_here(cfg: TrainConfig, network: Optional[dict] = None, resume: bool = False, dataset=None) -> int:
    """The command in this process (or torchrun rank): progress on stderr, the summary on stdout, an
    interruption as one line; returns the exit code (128 + signal when interrupted)."""
    from rich.console import Console

    from page4d_cli.console import print_error
    from page4d_cli.pipeline.types import Reporter
    from page4d_cli.reporters import make_reporter
    from page4d_cli.train.loop import TrainingInterrupted

    speaks = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks for the job
    err = Console(stderr=True)
    reporter = make_reporter(err, show_progress=cfg.progress) if speaks else Reporter()
    try:
        with reporter if speaks else nullcontext():
            result = run_training(cfg, network, resume, dataset, reporter)
    except TrainingInterrupted as exc:
        if speaks:
            print_error(exc, err)
        return exc.exit_code
    if speaks:
        Console().print(f"{result.run}: {result.step} steps done ({result.skipped} skipped); "
                        "weights.safetensors written", highlight=False, soft_wrap=True)
    return 0


def launch_workers(nproc: int, cfg: TrainConfig, resume: bool) -> int:
    """Re-run this command line on ``nproc`` local processes through torchrun."""
    from page4d_cli.train.distributed import launch, strip_option, under_torchrun

    if under_torchrun():
        raise Page4DError("--nproc: already running under torchrun; drop --nproc (torchrun sets the processes)")
    argv = strip_option(sys.argv[1:], "--nproc")
    return launch(nproc, argv)
