"""medseg.hardware: the CPU facts read from /proc/cpuinfo (bf16 units, model name)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from medseg import hardware


@pytest.fixture
def fake_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    text = [""]
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: text[0])
    hardware.cpu_has_fast_bf16.cache_clear()
    hardware.cpu_model.cache_clear()
    yield text
    hardware.cpu_has_fast_bf16.cache_clear()
    hardware.cpu_model.cache_clear()


def test_bf16_units_and_model_name_from_cpuinfo(fake_cpuinfo: list[str]) -> None:
    fake_cpuinfo[0] = "model name\t: Test CPU 9000\nflags\t\t: fpu sse avx512f amx_bf16\n"
    assert hardware.cpu_model() == "Test CPU 9000"
    fast = torch.backends.mkldnn.is_available()
    assert hardware.cpu_has_fast_bf16() is fast
    assert hardware.cpu_precision() == ("bf16" if fast else "fp32")


def test_no_bf16_flags_means_fp32(fake_cpuinfo: list[str]) -> None:
    fake_cpuinfo[0] = "flags\t\t: fpu sse avx2 avx512f\n"
    assert hardware.cpu_has_fast_bf16() is False and hardware.cpu_precision() == "fp32"
    assert hardware.cpu_model()  # falls back to platform.processor() or "unknown CPU"
