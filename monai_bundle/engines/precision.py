"""Device and precision choice: which device, and whether bf16 autocast pays off on this CPU or GPU."""

from __future__ import annotations

import logging
import platform
from contextlib import nullcontext

import torch

logger = logging.getLogger(__name__)


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags whose presence makes bf16 convolutions faster than fp32 (oneDNN kernels)."""


def default_device() -> torch.device:
    """The first CUDA device when one is usable, else the CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    if platform.system() != "Linux":
        return set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def bf16_is_fast(device: torch.device | str) -> bool:
    """True where bf16 autocast speeds convolutions up: CUDA with bf16 support, or a CPU with AMX/AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_flags() & set(CPU_BF16_FLAGS))
    return False


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Resolve a config's `precision` ('auto', 'bf16', 'fp16', 'fp32') to an autocast dtype (None = fp32)."""
    precision = str(precision).lower()
    if precision == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else None
    choices = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
    if precision not in choices:
        raise ValueError(f"precision must be one of auto, bf16, fp16, fp32; got {precision!r}")
    return choices[precision]


def autocast_context(dtype: torch.dtype | None, device: torch.device | str):
    """`torch.autocast` to `dtype` on `device`'s type, or nothing for fp32 (dtype None)."""
    return nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype)
