"""Small shared helpers for the tests (plain functions, imported explicitly)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import Result

from models.vggt import VGGT

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = REPO / "examples"
CAMS = EXAMPLES / "cams"  # the example rig: 4 videos (cam0..cam3), 24 frames of 224 x 168
# The real network at its tiny preset with seeded random weights: a whole run without any download.
TINY_RUN = ("--preset", "tiny", "--weights", "random")


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when the shared folder is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is only present in the project's workspace and CI)")
    return path


def needs_shared(*parts: str) -> pytest.MarkDecorator:
    """A skip mark for tests (or modules) that need ``../shared/<parts>``."""
    path = SHARED.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not available (only in the project's workspace)")


def example_module(name: str):
    """The script ``examples/<name>.py`` loaded as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reconstruct_cli(*args: object) -> Result:
    """``page4d reconstruct ARGS`` run in-process (Typer's CliRunner); paths and numbers are passed as text."""
    from typer.testing import CliRunner

    from page4d_cli.main import app

    return CliRunner().invoke(app, ["reconstruct", *map(str, args)])


def tiny_run(source: Path, out: Path, *args: object) -> dict:
    """``page4d reconstruct SOURCE --preset tiny --weights random --no-preview ARGS --out OUT``: the whole
    pipeline, quickly. Fails the test with the command's output unless it succeeded; returns run.json."""
    result = reconstruct_cli(source, *TINY_RUN, "--no-preview", *args, "--out", out)
    assert result.exit_code == 0, result.output
    return json.loads((Path(out) / "run.json").read_text())


def reference_keys(name: str) -> dict:
    """A real checkpoint's key list, ``{"_about", "count", "keys": {name: shape}}``: ``pi3_model_safetensors``,
    ``page4d_checkpoint_mask_pt`` or ``page4d_checkpoint_150_pt`` (copied from shared/reference/keys into
    tests/data/keys, compressed)."""
    with gzip.open(DATA / "keys" / f"{name}.json.gz", "rt", encoding="utf-8") as fh:
        return json.load(fh)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix [3, 3] (QR of a Gaussian matrix, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q * np.linalg.det(q)


def tiny_model(seed: int = 0, **overrides) -> VGGT:
    """The ``tiny`` preset of the real network, seeded, in eval mode."""
    torch.manual_seed(seed)
    return VGGT.from_preset("tiny", **overrides).eval()


def random_images(B: int = 1, T: int = 2, V: int = 2, H: int = 70, W: int = 98, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, V, 3, H, W, generator=generator)


NEUTRAL_PARAMETERS = ("mask_bias.", "temporal_pos.")


def perturb_(module: torch.nn.Module, std: float = 0.05, seed: int = 1) -> None:
    """Add seeded noise to every parameter (e.g. to make LayerScale gammas matter).

    The stage-3 "neutral" parameters (lambdas, temporal-encoding frequencies/slopes) are left alone:
    tests set them explicitly.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not any(part in name for part in NEUTRAL_PARAMETERS):
                p.add_(torch.randn(p.shape, generator=generator) * std)
