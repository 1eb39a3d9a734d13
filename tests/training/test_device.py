"""medseg.training.device: device choice, memory format and where bf16 autocast applies."""

from __future__ import annotations

import pytest
import torch

from medseg.training import device as device_mod
from medseg.training.device import autocast, memory_format, resolve_device, uses_amp


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


def test_memory_format_is_channels_last_only_on_cuda_when_enabled() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory_format(cpu, 3, True) == torch.contiguous_format
    assert memory_format(cuda, 3, False) == torch.contiguous_format
    assert memory_format(cuda, 3, True) == torch.channels_last_3d
    assert memory_format(cuda, 2, True) == torch.channels_last


def test_amp_follows_the_cpu_bf16_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert uses_amp(torch.device("cuda")) and not uses_amp(torch.device("cuda"), enabled=False)
    monkeypatch.setattr(device_mod, "cpu_has_fast_bf16", lambda: False)
    assert not uses_amp(cpu)
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(device_mod, "cpu_has_fast_bf16", lambda: True)
    assert uses_amp(cpu)
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
