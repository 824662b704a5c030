"""Which fine-tuned run (stage 4, ``models.loading.finetuned``) a command overlays.

``--finetuned PATH`` always wins. Otherwise, with ``--weights auto``, the newest run registered with
``page4d weights add RUN --as finetuned`` is used when it trained the network being built (same preset);
a registered run of another network is skipped with a note, so registering a ``tiny`` experiment never
breaks a ``full`` reconstruction. ``--weights random`` ignores the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from page4d_cli.weights.registry import LayoutError, Registry

ROLE = "finetuned"


def choose_finetuned(given: Optional[Path], spec: str, preset: str,
                     registry: Optional[Registry] = None) -> tuple[Optional[Path], list[str]]:
    """(the run to overlay or None, one-line notes saying why), checked against ``preset`` from headers.

    A given run of another network raises ``FinetunedError`` here, before any slow work.
    """
    from models.loading.finetuned import FinetunedError, check_network, open_run

    if given is not None:
        run = open_run(given)
        check_network(run, _preset_like(run, preset))
        return Path(given), [f"finetuned: {run.weights_path} ({run.label}, given on the command line)"]
    if spec != "auto":
        return None, []
    entry = (registry or Registry()).current(ROLE)
    if entry is None:
        return None, []
    run = open_run(entry.path)
    try:
        check_network(run, _preset_like(run, preset))
    except FinetunedError:
        note = (f"finetuned: the registered run {entry.path} trained another network than --preset {preset}; "
                "not used (pass --finetuned to see why)")
        return None, [note]
    return Path(entry.path), [f"finetuned: {entry.path} ({run.label}, registry)"]


def _preset_like(run, preset: str):
    """The preset's configuration with the run's mask-head layout (it follows the PAGE-4D file, checked at load)."""
    from models.config import Page4DConfig
    from models.loading.finetuned import run_config

    return Page4DConfig.preset(preset, mask_head_layout=run_config(run).mask_head_layout)


def add_finetuned(path: Path, registry: Optional[Registry] = None):
    """Register a training run (its folder or weights file) as the ``finetuned`` role; returns the entry."""
    import os

    from models.loading.finetuned import RUN_FORMAT, FinetunedError, open_run
    from page4d_cli.weights.registry import RegistryEntry

    try:
        run = open_run(path)
    except FinetunedError as exc:
        raise LayoutError(str(exc)) from None
    weights = Path(os.path.abspath(run.weights_path))
    entry = RegistryEntry(role=ROLE, path=str(weights), size=weights.stat().st_size, layout=RUN_FORMAT,
                          layout_checked=True, verified=False,
                          verified_how=f"run folder checked ({run.label}); no published checksum", source="local")
    return (registry or Registry()).add(entry)


def resolve_with_finetuned(spec: str, pi3: Optional[Path], page4d: Optional[Path], finetuned: Optional[Path],
                           preset: str, registry: Optional[Registry] = None):
    """(``WeightsSelection`` of stages 1-2, the run to overlay or None, notes), for ``reconstruct``.

    A fine-tuned run needs no pretrained files when it holds every tensor, so with a run and nothing
    registered the stages 1-2 fall back to the seeded random initialisation (the load report's notes
    say how much of the network the run covers) instead of failing.
    """
    from page4d_cli.weights.registry import WeightsNotFound, resolve_weights

    run, notes = choose_finetuned(finetuned, spec, preset, registry)
    try:
        selection = resolve_weights(spec, pi3=pi3, page4d=page4d, registry=registry)
    except WeightsNotFound:
        if run is None:
            raise
        selection = resolve_weights("random", pi3=pi3, page4d=page4d, registry=registry)
        notes.append("no pretrained weights registered: the tensors the fine-tuned run does not hold are "
                     "initialised (seeded), as in a run trained from scratch")
    return selection, run, notes
