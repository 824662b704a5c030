"""The commands of ``page4d``: one table, read by the root group without importing any command module.

``page4d --help`` lists the commands from this table alone; a command's module (and with it Typer's
work of turning the function signature into options) is imported only when that command runs or
shows its own ``--help``. Each module named here defines ``app``, a ``typer.Typer`` holding the
command (or, for a group, its sub-commands), and starts its own help with ``summary(name)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandSpec:
    """One top-level command: its name, the module defining it (``app``), the line shown in ``page4d --help``."""

    name: str
    module: str
    summary: str


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("reconstruct", "page4d_cli.commands.reconstruct",
                "Reconstruct a synchronized multi-camera clip in 4D with the PAGE-4D network."),
    CommandSpec("inspect-load", "page4d_cli.commands.inspect_load",
                "Show the three-stage loading plan: stage, source key and adaptation of every tensor."),
    CommandSpec("view", "page4d_cli.commands.view",
                "Show a reconstruction folder in Rerun: points, cameras, depth and masks over time."),
    CommandSpec("eval", "page4d_cli.commands.eval",
                "Evaluate reconstructions against ground-truth clips (trajectory, depth, points, masks)."),
    CommandSpec("train", "page4d_cli.commands.train",
                "Fine-tune the network on ground-truth clips with PAGE-4D's losses."),
    CommandSpec("weights", "page4d_cli.commands.weights",
                "Fetch, register and list pretrained weights."),
    CommandSpec("data", "page4d_cli.commands.data",
                "Ground-truth clips: synthesise (synth) and validate (check)."),
)


def summary(name: str) -> str:
    """The one-line summary of command ``name`` (the first paragraph of its ``--help``)."""
    for spec in COMMANDS:
        if spec.name == name:
            return spec.summary
    raise KeyError(name)
