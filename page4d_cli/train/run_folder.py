"""The run folder of ``page4d train``: config, logs and atomic checkpoints.

    RUN/config.json         {"format": "page4d-train-run", "version": 1, "network": Page4DConfig dict,
                             "training": TrainConfig dict, "data": [clip folders], "init": {"pi3", "page4d",
                             "init"}, "versions": {...}}
    RUN/metrics.jsonl       one JSON object per logged optimizer step
    RUN/eval.jsonl          held-out metrics every --eval-every steps
    RUN/weights.safetensors the trained tensors (or all with --save full) under the model's parameter
                            names; metadata "step" (optimizer steps done), "run" (folder name), "format"
    RUN/train_state.pt      optimizer, scheduler, step, RNG states, sampler position, skipped steps

Every file is written to a hidden temporary in RUN and moved into place with ``os.replace``, so a
crash never leaves a half-written file; weights and state carry the same step and a resume checks it.
Only rank 0 calls the writers.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from models.errors import Page4DError

RUN_FORMAT = "page4d-train-run"
RUN_VERSION = 1
CONFIG, METRICS, EVAL = "config.json", "metrics.jsonl", "eval.jsonl"
WEIGHTS, STATE = "weights.safetensors", "train_state.pt"


class RunFolderError(Page4DError):
    """The run folder cannot be created, written or resumed (one line: the path, the problem, the fix)."""


# ----------------------------------------------------------------------------------- creation / checks
def check_new_run_folder(path: Path) -> None:
    """Refuse a folder that holds anything (page4d never overwrites what it did not create) or that
    cannot be written, before any expensive work."""
    if path.exists():
        if not path.is_dir():
            raise RunFolderError(f"{path}: exists and is not a folder; choose another --out")
        if (path / CONFIG).exists():
            raise RunFolderError(f"{path}: already holds a training run; continue it with --resume {path} "
                                 "or choose another --out")
        if any(path.iterdir()):
            raise RunFolderError(f"{path}: folder is not empty; choose a new or empty --out folder")
    parent = path if path.exists() else _existing_parent(path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunFolderError(f"{parent}: not writable, cannot create the run folder {path}; choose another --out")


def _existing_parent(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")


def versions() -> dict:
    from page4d_cli import __version__

    try:
        import safetensors
        st = safetensors.__version__
    except Exception:  # noqa: BLE001 - a missing version string is not an error
        st = None
    return {"page4d": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "safetensors": st, "cuda": torch.version.cuda}


def run_config_dict(network: dict, training: dict, init: dict) -> dict:
    return {"format": RUN_FORMAT, "version": RUN_VERSION, "network": network, "training": training,
            "data": list(training.get("data", ())), "init": init, "versions": versions()}


def write_json_atomic(path: Path, data: dict) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8"))


def read_run_config(run: Path) -> dict:
    path = run / CONFIG
    if not path.is_file():
        raise RunFolderError(f"{path}: missing; --resume needs a folder written by `page4d train --out`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable ({type(exc).__name__}); the run folder is damaged") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT or data.get("version") != RUN_VERSION:
        raise RunFolderError(f"{path}: not a page4d training run (format {RUN_FORMAT!r} version {RUN_VERSION}); "
                             "pass a folder written by `page4d train`")
    return data


def remove_unfinished_run(run: Path, created_dir: bool) -> None:
    """A new run that failed before its first checkpoint: remove the files it wrote (and the folder if it
    created it), so no half-made run is left behind. Nothing else is touched."""
    if (run / WEIGHTS).exists():
        return
    for name in (CONFIG, METRICS, EVAL, STATE, f".{WEIGHTS}.tmp", f".{STATE}.tmp", f".{CONFIG}.tmp"):
        (run / name).unlink(missing_ok=True)
    if created_dir:
        try:
            run.rmdir()  # only if empty
        except OSError:
            pass


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` (logged after the checkpoint a resume starts from)."""
    records = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    _atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"))


# ----------------------------------------------------------------------------------- checkpoints
def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(run: Path, model: torch.nn.Module, names: list[str], state: dict) -> None:
    """Write ``names`` of ``model`` to weights.safetensors and ``state`` (must hold "step") to train_state.pt."""
    from safetensors.torch import save_file

    params = dict(model.named_parameters())
    tensors = {name: params[name].detach().to("cpu", copy=True).contiguous() for name in names}
    metadata = {"format": RUN_FORMAT, "step": str(int(state["step"])), "run": run.name}
    _atomic_write(run / STATE, lambda tmp: torch.save(state, tmp))
    _atomic_write(run / WEIGHTS, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checkpoint(run: Path, model: torch.nn.Module) -> dict:
    """Copy the checkpoint's tensors into ``model`` and return train_state.pt's dict."""
    from safetensors import safe_open

    state_path, weights_path = run / STATE, run / WEIGHTS
    for path in (state_path, weights_path):
        if not path.is_file():
            raise RunFolderError(f"{path}: missing; the run has no checkpoint to resume from (start a new run)")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable pickle is the same user-facing problem
        raise RunFolderError(f"{state_path}: unreadable ({type(exc).__name__}); the checkpoint is damaged") from None
    params = dict(model.named_parameters())
    with safe_open(str(weights_path), framework="pt") as fh:
        step = (fh.metadata() or {}).get("step")
        if step is None or int(step) != int(state.get("step", -1)):
            raise RunFolderError(f"{weights_path}: step {step} but {STATE} is at step {state.get('step')}; the last "
                                 "checkpoint was interrupted while being written, the run cannot be resumed exactly")
        with torch.no_grad():
            for name in fh.keys():
                if name not in params:
                    raise RunFolderError(f"{weights_path}: tensor {name} is not in this network; the run folder "
                                         "does not match its config.json")
                params[name].copy_(fh.get_tensor(name))
    return state


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA max allocated, else the peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 if sys.platform != "darwin" else kb / 2**20
    except ImportError:
        return float("nan")


def optional_path(value: Optional[str]) -> Optional[str]:
    return str(Path(value).expanduser().resolve()) if value else None
