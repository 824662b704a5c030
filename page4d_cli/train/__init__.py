"""``page4d train``: fine-tune the network with PAGE-4D's recipe on torchrun / DistributedDataParallel.

    from page4d_cli.train import TrainConfig, train
    result = train(TrainConfig(data=clips, out="runs/a", preset="tiny", steps=200, size=112))
    # silent; pass reporter=page4d_cli.reporters.make_reporter(Console(stderr=True)) to see progress

Modules (one idea each): ``config`` (TrainConfig), ``losses`` (the objective), ``param_groups`` (what
trains), ``optim`` (AdamW, schedule, clipping), ``checkpointing`` (activation checkpointing),
``sampler`` / ``session`` (data, model, resume), ``run_folder`` (config.json, logs, checkpoints),
``distributed`` (torchrun), ``loop`` (the steps), ``dataset`` (ground-truth clips as samples).
Heavy imports happen on first use: ``import page4d_cli.train`` stays cheap.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "train"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from page4d_cli.train.config import TrainConfig

        return TrainConfig
    if name in ("train", "TrainResult", "TrainingInterrupted"):
        from page4d_cli.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
