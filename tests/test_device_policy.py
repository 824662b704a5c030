"""``--device`` parsing and the precision policy, with CUDA mocked (the tests run on CPU-only machines)."""

from __future__ import annotations

import pytest
import torch

from page4d_cli.pipeline import device as device_module
from page4d_cli.pipeline.device import DeviceError, parse_device, peak_memory, policy_for, select_device


@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend there are two CUDA GPUs with a settable compute capability."""
    state = {"capability": (8, 0)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: state["capability"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    return state


@pytest.mark.parametrize("capability, dtype", [((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16),
                                               ((8, 6), torch.bfloat16), ((7, 5), torch.float16),
                                               ((7, 0), torch.float16)])
def test_cuda_precision_follows_compute_capability(fake_cuda, capability, dtype):
    fake_cuda["capability"] = capability
    policy = select_device("auto")
    assert policy.device == torch.device("cuda", 0)
    assert policy.autocast_dtype == dtype
    assert policy.dtype_name == str(dtype).replace("torch.", "")
    assert f"compute capability {capability[0]}.{capability[1]}" in policy.description


def test_cpu_and_mps_compute_in_float32():
    cpu = policy_for(torch.device("cpu"))
    assert cpu.autocast_dtype is None and cpu.dtype_name == "float32"
    assert policy_for(torch.device("mps")).dtype_name == "float32"


def test_auto_prefers_cuda_then_mps_then_cpu(fake_cuda, monkeypatch):
    assert parse_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert parse_device("auto").type == "mps"
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    assert parse_device("auto").type == "cpu"


def test_explicit_devices(fake_cuda):
    assert parse_device("cuda:1") == torch.device("cuda", 1)
    assert parse_device("CUDA") == torch.device("cuda", 0)
    assert parse_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="2 CUDA device"):
        parse_device("cuda:2")
    with pytest.raises(DeviceError, match="unknown device"):
        parse_device("tpu")


def test_missing_accelerators_are_one_line_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    for spec in ("cuda", "cuda:0", "mps"):
        with pytest.raises(DeviceError) as error:
            parse_device(spec)
        assert "\n" not in str(error.value) and "--device auto" in str(error.value)


def test_cpu_inference_context_is_float32_without_grad():
    policy = select_device("cpu")
    layer = torch.nn.Linear(4, 4)
    with policy.inference():
        y = layer(torch.ones(1, 4))
        assert torch.is_inference_mode_enabled()
    assert y.dtype == torch.float32 and not y.requires_grad


def test_cpu_autocast_policy_lowers_matmuls():
    """The policy's autocast is real: a bf16 policy on CPU turns a Linear's output to bf16."""
    policy = device_module.DevicePolicy(torch.device("cpu"), torch.bfloat16, "test")
    with policy.inference():
        y = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    assert y.dtype == torch.bfloat16


def test_peak_memory_reports_rss_on_cpu():
    record = peak_memory(select_device("cpu"))
    assert record["cpu_peak_rss_bytes"] > 10e6 and "cuda_max_allocated_bytes" not in record
