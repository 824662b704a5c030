"""Where the network runs and in which precision: ``--device`` and the dtype policy.

Device ``auto`` picks CUDA, then Apple MPS, then the CPU. Precision follows the hardware:

- CUDA with compute capability >= 8.0 (Ampere and newer): bfloat16 autocast. bf16 has float32's
  exponent range, so attention logits and large depths cannot overflow; these GPUs run it at full speed.
- CUDA below 8.0 (Volta, Turing): float16 autocast (no fast bf16 there).
- CPU and MPS: float32 (CPU autocast is slow for these kernels; MPS bf16 support is incomplete).

The weights stay float32 in every case; autocast only lowers the precision of the matmul-heavy
aggregator. The heads switch autocast off themselves and always compute in float32.

    policy = select_device("auto")
    with policy.inference():
        out = model(images.to(policy.device))
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from page4d_cli.pipeline.errors import InputError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
BF16_MIN_CAPABILITY = (8, 0)


class DeviceError(InputError):
    """``--device`` names a device this machine does not have (one-line message)."""


@dataclass(frozen=True)
class DevicePolicy:
    """The device and the autocast precision used for the forward pass.

    ``autocast_dtype`` None means plain float32 (no autocast). ``description`` is for people
    ("cuda:0 (NVIDIA H100 80GB HBM3, compute capability 9.0)").
    """

    device: torch.device
    autocast_dtype: Optional[torch.dtype]
    description: str

    @property
    def dtype_name(self) -> str:
        """The compute precision as a word: "bfloat16", "float16" or "float32"."""
        return str(self.autocast_dtype or torch.float32).replace("torch.", "")

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """``torch.inference_mode()`` plus autocast to ``autocast_dtype`` (when there is one)."""
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            yield

    def to_record(self) -> dict:
        """What run.json records about the device."""
        return {"device": str(self.device), "description": self.description, "dtype": self.dtype_name}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def parse_device(spec: str) -> torch.device:
    """``--device`` value -> a device this machine has; ``DeviceError`` otherwise."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise DeviceError("--device mps: Apple MPS is not available on this machine; use --device auto or cpu")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if match is None:
        raise DeviceError(f"--device {spec}: unknown device; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {spec}: CUDA is not available (no NVIDIA GPU found, or this torch "
                          f"{torch.__version__} has no CUDA support); use --device auto or cpu")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"--device {spec}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def policy_for(device: torch.device) -> DevicePolicy:
    """The precision policy of ``device`` (see the module docstring)."""
    if device.type == "cuda":
        capability = tuple(torch.cuda.get_device_capability(device))
        dtype = torch.bfloat16 if capability >= BF16_MIN_CAPABILITY else torch.float16
        name = torch.cuda.get_device_name(device)
        return DevicePolicy(device, dtype, f"{device} ({name}, compute capability {capability[0]}.{capability[1]})")
    if device.type == "mps":
        return DevicePolicy(device, None, "mps (Apple GPU)")
    return DevicePolicy(device, None, f"cpu ({torch.get_num_threads()} threads)")


def select_device(spec: str = "auto") -> DevicePolicy:
    """``--device`` value -> its ``DevicePolicy``."""
    return policy_for(parse_device(spec))


def reset_peak_memory(policy: DevicePolicy) -> None:
    """Start counting the accelerator's peak memory from here (no-op on CPU/MPS)."""
    if policy.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(policy.device)


def peak_memory(policy: DevicePolicy) -> dict:
    """Peak memory in bytes: the process's resident set and, on CUDA, the tensors allocated on the GPU."""
    record: dict = {"cpu_peak_rss_bytes": _peak_rss_bytes()}
    if policy.device.type == "cuda":
        record["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated(policy.device))
        record["cuda_max_reserved_bytes"] = int(torch.cuda.max_memory_reserved(policy.device))
    elif policy.device.type == "mps" and hasattr(torch, "mps"):
        with contextlib.suppress(Exception):  # driver statistics are best-effort on MPS
            record["mps_driver_allocated_bytes"] = int(torch.mps.driver_allocated_memory())
    return record


def _peak_rss_bytes() -> Optional[int]:
    """Peak resident set size of this process (``resource``; None where it does not exist)."""
    try:
        import resource
        import sys
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
