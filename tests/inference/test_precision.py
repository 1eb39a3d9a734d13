"""Inference precision: bf16 autocast where it is fast (CUDA, AMX/AVX512-BF16 CPUs), fp32 otherwise."""

from __future__ import annotations

import numpy as np
import phantom_data as phantom
import pytest
import torch

from medseg.config import InferConfig
from medseg.inference import precision
from medseg.inference.stream import logits_volume


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv3d(1, 8, 3, padding=1)
        self.b = torch.nn.Conv3d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    assert precision.uses_bf16("cpu", "bf16") and not precision.uses_bf16("cuda", "fp32")
    assert precision.uses_bf16("cuda", "auto")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert not precision.uses_bf16("cpu", "auto")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.uses_bf16("cpu", "auto")
    with pytest.raises(ValueError, match="infer.precision"):
        precision.uses_bf16("cpu", "half")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    precision.cpu_has_fast_bf16.cache_clear()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    expected = any(f in text.split() for f in ("amx_bf16", "avx512_bf16")) and torch.backends.mkldnn.is_available()
    assert precision.cpu_has_fast_bf16() == expected


def test_bf16_logits_and_labels_stay_close_to_fp32() -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    image = np.random.default_rng(0).normal(size=(20, 40, 40)).astype(np.float32)
    fp32 = logits_volume(_Net(), image, plan, InferConfig(precision="fp32"))
    bf16 = logits_volume(_Net(), image, plan, InferConfig(precision="bf16"))
    assert bf16.dtype == np.float32  # accumulated in fp32 whatever the forward precision
    assert not np.array_equal(bf16, fp32)  # bf16 really ran
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * float(np.abs(fp32).max()))
    assert (bf16.argmax(0) == fp32.argmax(0)).mean() > 0.97
