"""Numeric precision of inference: bf16 autocast where the hardware runs it fast, fp32 elsewhere.

``infer.precision``:

* ``auto`` (default): bf16 on CUDA, and on CPUs with native bf16 matrix units (Intel AMX or
  AVX512-BF16, e.g. Sapphire Rapids and later), where oneDNN runs the convolutions about twice as
  fast as in fp32; fp32 on other CPUs (emulated bf16 would be slower);
* ``bf16``: always bf16 autocast; ``fp32``: never.

Logits are accumulated in fp32 whatever the precision of the network's forward pass. On the demo
and bench models, bf16 labels agree with fp32 labels on > 99 % of voxels (checked in the tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from medseg.hardware import cpu_has_fast_bf16


def uses_bf16(device: torch.device | str, precision: str) -> bool:
    """Whether inference on ``device`` with ``precision`` ("auto" | "bf16" | "fp32") runs in bf16."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if precision != "auto":
        raise ValueError(f"infer.precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return torch.device(device).type == "cuda" or (torch.device(device).type == "cpu" and cpu_has_fast_bf16())


@contextlib.contextmanager
def inference_autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """Autocast context for the network's forward pass (see the module doc)."""
    dev = torch.device(device)
    if uses_bf16(dev, precision) and dev.type in ("cuda", "cpu"):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
            yield
    else:
        yield
