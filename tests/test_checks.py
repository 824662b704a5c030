"""models/checks.py: the one-line checks of the validated dataclasses, and the exact messages users see
(the configs moved onto the shared checks without changing a word)."""

from __future__ import annotations

import math

import pytest

from models.checks import Checks
from models.config import ConfigError, Page4DConfig
from models.errors import Page4DError
from page4d_cli.data.errors import DataFormatError
from page4d_cli.data.synth import SynthOptions
from page4d_cli.pipeline.errors import InputError
from page4d_cli.pipeline.options import ReadOptions
from page4d_cli.train.config import LossConfig, TrainConfig, TrainConfigError


class ToyError(Page4DError):
    pass


def test_each_check_raises_its_owners_error_only_when_the_rule_fails():
    check = Checks(ToyError)
    check.positive("n", 1)
    check.at_least("n", 0, 0)
    check.finite_non_negative("x", 0.0)
    check.one_of("kind", "a", ("a", "b"))
    check.option_choice("--kind", "b", ("a", "b"))
    cases = [
        (lambda: check.positive("n", 0), "n must be > 0, got 0"),
        (lambda: check.positive("n", None), "n must be > 0, got None"),
        (lambda: check.at_least("n", -1, 0), "n must be >= 0, got -1"),
        (lambda: check.finite_non_negative("x", math.inf), "x must be a finite value >= 0, got inf"),
        (lambda: check.one_of("kind", "c", ("a", "b")), "kind must be one of ('a', 'b'), got 'c'"),
        (lambda: check.option_choice("--kind", "c", ("a", "b")), "--kind c: use one of a, b"),
        (lambda: check.option(False, "--n", 3, "too many"), "--n 3: too many"),
    ]
    for make, message in cases:
        with pytest.raises(ToyError) as info:
            make()
        assert str(info.value) == message


@pytest.mark.parametrize("make, error, message", [
    (lambda: Page4DConfig.preset("tiny", depth=0), ConfigError, "depth must be > 0, got 0"),
    (lambda: Page4DConfig.preset("tiny", pi3_layers=5), ConfigError, "pi3_layers must be in 0..4, got 5"),
    (lambda: Page4DConfig.preset("tiny", mid_layers=(2, 4)), ConfigError,
     "mid_layers must be a contiguous range, got [2, 4]"),
    (lambda: Page4DConfig.preset("tiny", mask_head_layout="other"), ConfigError,
     "mask_head_layout must be one of ('official', 'ckpt150'), got 'other'"),
    (lambda: Page4DConfig.preset("tiny", encoder={"num_register_tokens": -1}), ConfigError,
     "encoder.num_register_tokens must be >= 0, got -1"),
    (lambda: Page4DConfig.preset("tiny", epipolar_band=0.0), ConfigError, "epipolar_band must be > 0 (patches), got 0.0"),
    (lambda: Page4DConfig.preset("tiny", enable_sparse_global=True, sparse_global_layers=(4,), landmark_k=0), ConfigError,
     "landmark_k must be in 1..1369 (patches per image at img_size=518, patch_size=14), got 0"),
    (lambda: TrainConfig(save_every=0), TrainConfigError, "--save-every must be >= 1, got 0"),
    (lambda: TrainConfig(lr_new=-1.0), TrainConfigError, "--lr-new must be a finite value >= 0, got -1.0"),
    (lambda: TrainConfig(steps=10, warmup=11), TrainConfigError, "--warmup must be in 0..--steps (10), got 11"),
    (lambda: TrainConfig(workers=-1), TrainConfigError, "--workers must be >= 0, got -1"),
    (lambda: TrainConfig(device="tpu"), TrainConfigError, "--device must be one of auto, cpu, cuda; got 'tpu'"),
    (lambda: LossConfig(depth_weight=math.nan), TrainConfigError, "loss.depth_weight must be a finite value >= 0, got nan"),
    (lambda: LossConfig(valid_range=1.0), TrainConfigError, "loss.valid_range must be < 1 (a quantile), got 1.0"),
    (lambda: SynthOptions(width=7), DataFormatError, "--width 7: must be an integer >= 8"),
    (lambda: SynthOptions(cameras=100), DataFormatError, "--cameras 100: at most 99 (camera folders are cam00..cam98)"),
    (lambda: SynthOptions(rig="sideways"), DataFormatError, "--rig sideways: use one of mixed, static, moving"),
    (lambda: SynthOptions(fps=0), DataFormatError, "--fps 0: must be > 0"),
    (lambda: ReadOptions(mode="zoom"), InputError, "--mode zoom: use one of crop, pad"),
])
def test_config_messages_are_one_line_and_unchanged(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message
