"""The training loop on CPU (tiny network, in-memory clips): loss goes down, frozen tensors stay, the run
folder, NaN steps skipped, exact resume, what the loop says through its reporter (and that it prints
nothing itself), Ctrl-C checkpoint, bad input (page4d_cli/train/loop.py, session.py, commands/train.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from page4d_cli.pipeline.types import Reporter
from tests.train_fakes import FakeClipDataset, tiny_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _dataset(**kw):
    return FakeClipDataset(length=2, frames=2, cameras=2, size=28, **kw)


def _config(tmp_path, name="run", **changes):
    base = dict(out=str(tmp_path / name), steps=2, batch=2, train="page4d", lr=1e-3, lr_new=1e-2, save="full",
                size=28)
    base.update(changes)
    return tiny_config(tmp_path, **base)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Recorder(Reporter):
    """Keeps what the loop says: ``stages`` (name, done, total, detail), ``infos``, ``warnings``."""

    def __init__(self) -> None:
        self.stages: list[tuple] = []
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def stage(self, name, done, total, detail=""):
        self.stages.append((name, done, total, detail))

    def info(self, message):
        self.infos.append(message)

    def warning(self, message):
        self.warnings.append(message)


def _fresh_model(cfg):
    from page4d_cli.train.session import build_model

    return build_model(cfg, None)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from page4d_cli.train.loop import train

    tmp = tmp_path_factory.mktemp("train")
    cfg = _config(tmp)
    result = train(cfg, dataset=_dataset())
    return cfg, result


def test_loss_decreases_frozen_unchanged_and_run_folder(reference):
    cfg, result = reference
    run = Path(cfg.out)
    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2] and result.step == 2 and result.skipped == 0
    assert records[-1]["loss"] < records[0]["loss"]
    for key in ("loss_camera", "loss_T", "loss_R", "loss_FoV", "loss_conf_depth", "loss_reg_depth", "loss_grad_depth",
                "loss_conf_point", "loss_reg_point", "loss_grad_point", "lr_blocks", "lr_new", "grad_norm",
                "grad_norm_aggregator", "skipped", "images_per_s", "peak_memory_mb"):
        assert key in records[0], key
    assert records[0]["lr_new"] == pytest.approx(1e-2) and records[0]["lr_blocks"] == pytest.approx(1e-3)

    config = json.loads((run / "config.json").read_text())
    assert config["format"] == "page4d-train-run" and config["version"] == 1
    assert config["network"]["depth"] == 4 and config["training"]["train"] == "page4d"
    assert {"torch", "page4d", "python"} <= set(config["versions"])
    with safe_open(str(run / "weights.safetensors"), framework="pt") as fh:
        assert fh.metadata()["step"] == "2" and fh.metadata()["run"] == run.name
    assert torch.load(run / "train_state.pt", weights_only=True)["step"] == 2
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporaries left

    from page4d_cli.train.param_groups import select_trainable

    fresh = _fresh_model(cfg)
    trained = set(select_trainable(fresh, "page4d"))
    saved = load_file(str(run / "weights.safetensors"))
    before = dict(fresh.named_parameters())
    frozen = [n for n in before if n not in trained]
    assert frozen and all(torch.equal(saved[n], before[n].detach()) for n in frozen)
    for name in ("aggregator.mask_bias.lambda_pose", "aggregator.mask_bias.lambda_geo_t",
                 "aggregator.temporal_pos.1.freq", "aggregator.pose_time_blocks.1.attn.qkv.weight"):
        assert not torch.equal(saved[name], before[name].detach()), name


def test_resume_continues_exactly_and_reports_through_the_reporter_only(reference, tmp_path, capfd):
    from page4d_cli.train.loop import train
    from page4d_cli.train.session import resume_config

    ref_cfg, _ = reference
    cfg = _config(tmp_path, name="resumed", stop_at=1)
    said = Recorder()
    first = train(cfg, dataset=_dataset(), reporter=said)
    assert first.step == 1
    resumed_cfg, network = resume_config(Path(cfg.out), {"stop_at": None})
    said_again = Recorder()
    second = train(resumed_cfg, dataset=_dataset(), resume=True, reporter=said_again)
    assert second.step == 2
    assert capfd.readouterr() == ("", "")  # the loop prints nothing itself

    # stage "train": from the first step of this run to its last (--stop-at 1, then the resumed 1 -> 2)
    assert [s[:3] for s in said.stages] == [("train", 0, 1), ("train", 1, 1)]
    assert [s[:3] for s in said_again.stages] == [("train", 1, 2), ("train", 2, 2)]
    assert said.stages[-1][3].startswith("loss ") and " · lr " in said.stages[-1][3]
    assert said.stages[-1][3].endswith(" s/step")
    assert said.infos[0].startswith("parameter groups:\n") and "new_no_decay" in said.infos[0]
    assert said.infos[-1] == f"{cfg.out}: checkpoint of step 1 written"
    assert f"{cfg.out}: resuming at step 1 of 2" in said_again.infos
    assert said_again.infos[-1] == f"{cfg.out}: checkpoint of step 2 written"
    assert not said.warnings and not said_again.warnings
    ref, res = _metrics(Path(ref_cfg.out)), _metrics(Path(cfg.out))
    assert [r["step"] for r in res] == [1, 2]
    assert [r["loss"] for r in res] == [r["loss"] for r in ref]
    a = load_file(str(Path(ref_cfg.out) / "weights.safetensors"))
    b = load_file(str(Path(cfg.out) / "weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_options(reference, tmp_path):
    from typer.testing import CliRunner

    from page4d_cli.main import app

    cfg, _ = reference
    result = CliRunner().invoke(app, ["train", "--resume", cfg.out, "--steps", "7"])
    assert result.exit_code == 1
    assert "steps: 2 vs 7" in result.output and len(result.output.strip().splitlines()) == 1


def test_non_finite_step_is_skipped_and_not_written(tmp_path):
    from page4d_cli.train.loop import train

    cfg = _config(tmp_path, steps=1, batch=1)
    said = Recorder()
    result = train(cfg, dataset=FakeClipDataset(length=1, frames=2, cameras=2, size=28, nan_index=0), reporter=said)
    assert result.skipped == 1
    assert said.warnings == ["step 1: non-finite loss or gradients, step skipped (weights unchanged)"]
    assert said.stages[-1][:3] == ("train", 1, 1) and said.stages[-1][3].startswith("loss non-finite (skipped)")
    record = _metrics(Path(cfg.out))[0]
    assert record["skipped"] == 1 and record["loss"] is None
    saved = load_file(str(Path(cfg.out) / "weights.safetensors"))
    fresh = dict(_fresh_model(cfg).named_parameters())
    assert all(torch.equal(saved[n], fresh[n].detach()) for n in saved)
    assert torch.load(Path(cfg.out) / "train_state.pt", weights_only=True)["optimizer"]["state"] == {}


CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.train_fakes import FakeClipDataset, tiny_config
from page4d_cli.commands.train import train_here
from pathlib import Path
cfg = tiny_config(Path({tmp!r}), steps=1000, size=28, train="new")  # progress=False, as --no-progress
sys.exit(train_here(cfg, dataset=FakeClipDataset(length=2, frames=2, cameras=2, size=28)))
"""


def test_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), tmp=str(tmp_path))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().strip()) and child.poll() is None:
        assert time.monotonic() < deadline, "no training step within 300 s"
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err
    assert "error: " in err and "interrupted at step" in err and "--resume" in err
    assert "note: parameter groups:" in err and "page4d: " not in err  # --no-progress: notices, no progress
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    with safe_open(str(tmp_path / "run" / "weights.safetensors"), framework="pt") as fh:
        assert int(fh.metadata()["step"]) == state["step"] >= 1
    assert len(_metrics(tmp_path / "run")) == state["step"]


def test_data_error_in_a_worker_is_one_line_and_leaves_no_run(tmp_path):
    from models.errors import Page4DError
    from page4d_cli.train.loop import train

    (tmp_path / "kept").mkdir()  # an empty folder the user made: reused, and left in place afterwards
    cfg = _config(tmp_path, name="kept", workers=1)
    message = "clips/c0/gt/cam00/depth_0003.png: depth is 10x10, the image 56x56; write depth at image size"
    with pytest.raises(Page4DError) as info:
        train(cfg, dataset=FakeClipDataset(length=2, size=28, error=message))
    assert str(info.value) == message  # the worker's traceback text is not in the message
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


def test_mixed_network_sizes_in_a_batch_is_one_line(tmp_path):
    from page4d_cli.train.config import TrainConfigError
    from page4d_cli.train.distributed import DistContext
    from page4d_cli.train.session import BatchStream

    class TwoSizes(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return {"images": torch.zeros(1, 1, 3, 14 * (index + 1), 14)}

    stream = BatchStream(TwoSizes(), _config(tmp_path, workers=0), DistContext(0, 1, 0, torch.device("cpu")))
    with pytest.raises(TrainConfigError, match="use --batch 1"):
        stream.next(torch.device("cpu"))


def test_bad_run_folders(tmp_path):
    from page4d_cli.train.run_folder import RunFolderError, check_new_run_folder
    from page4d_cli.train.session import resume_config

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(RunFolderError, match="not empty"):
        check_new_run_folder(tmp_path / "busy")
    with pytest.raises(RunFolderError, match="--resume needs a folder written by"):
        resume_config(tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "x"
