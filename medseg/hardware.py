"""Facts about the machine that change how medseg computes (shared by training and inference)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

_FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; ``platform.processor()`` elsewhere), for reports and benches."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_precision() -> str:
    """``"bf16"`` where medseg's ``auto`` precision runs bf16 on this CPU, else ``"fp32"``."""
    return "bf16" if cpu_has_fast_bf16() else "fp32"


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU advertises AMX-BF16 or AVX512-BF16 (Linux ``/proc/cpuinfo``) and oneDNN is built in."""
    if not torch.backends.mkldnn.is_available():
        return False
    text = _cpuinfo()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in _FAST_BF16_FLAGS)
