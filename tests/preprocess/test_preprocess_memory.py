"""Peak memory of ``preprocess_case`` stays bounded: it does not grow with the number of slices.

Each volume is written slab by slab (``case_writer``) and preprocessed in a fresh child process,
whose peak RSS is read from ``/proc/self/status`` (``VmHWM``, reset by exec). The child runs with
``MALLOC_MMAP_THRESHOLD_=1MiB`` so that glibc returns freed slab buffers to the OS: otherwise its
adaptive threshold recycles them through the heap and fragmentation adds a size-dependent amount
of dead RSS that says nothing about the algorithm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.geometry import Geometry
from medseg.io.volume_store import case_writer
from medseg.plan import Normalization, Plan

REPO = Path(__file__).resolve().parents[2]
_CHILD = """
import json, sys
from pathlib import Path
from medseg.plan import Plan
from medseg.preprocess.case import preprocess_case
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
base = hwm()
res = preprocess_case(Path(sys.argv[1]), Path(sys.argv[2]), Plan.model_validate_json(Path(sys.argv[3]).read_text()))
print(json.dumps({"base": base, "peak": hwm(), "shape": res.shape}))
"""


def _write(path: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> None:
    z, y, x = shape
    yy, xx = np.meshgrid(np.arange(y), np.arange(x), indexing="ij")
    body = ((yy - y / 2) / (0.4 * y)) ** 2 + ((xx - x / 2) / (0.45 * x)) ** 2 <= 1
    rng = np.random.default_rng(0)
    geometry = Geometry.create(spacing=spacing, origin=(0.0, 0.0, 0.0))
    with case_writer(path, path.stem, shape, np.int16, geometry, labels=["gt"], label_names={1: "organ"},
                     source={"modality": "CT"}) as w:
        for z0 in range(0, z, 32):
            n = min(32, z - z0)
            w.image[z0 : z0 + n] = np.where(body, 40, -1000) + rng.integers(-20, 20, (n, y, x))
            w.labels["gt"][z0 : z0 + n] = np.broadcast_to(body & (xx < x / 2), (n, y, x)).astype(np.uint8)


def _plan() -> Plan:
    return Plan(
        modality="CT", normalization=Normalization.CT, clip_range=(-1000.0, 100.0), intensity_mean=40.0,
        intensity_std=20.0, target_spacing=(1.5, 0.8, 0.8), median_shape=(64, 64, 64), patch_size=(64, 128, 128),
        kernel_sizes=[[3, 3, 3]] * 3, strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], filters=[8, 16, 32],
        num_classes=2, label_names={1: "organ"},
    )


def _peak_above_baseline(tmp: Path, n_slices: int) -> tuple[int, int]:
    src = tmp / f"v{n_slices}.zarr"
    _write(src, (n_slices, 320, 320), (1.0, 0.7, 0.7))
    plan_file = tmp / "plan.json"
    plan_file.write_text(_plan().model_dump_json())
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(tmp / f"p{n_slices}.zarr"), str(plan_file)],
                          cwd=REPO, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(r["peak"] - r["base"]), n_slices * 320 * 320 * 2


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_volume(tmp_path: Path) -> None:
    small, small_bytes = _peak_above_baseline(tmp_path, 100)
    large, large_bytes = _peak_above_baseline(tmp_path, 500)
    mib = (small / 2**20, large / 2**20, small_bytes / 2**20, large_bytes / 2**20)
    # the old whole-volume path needed ~9x the int16 input (float64 spline prefilter, one-hot copies);
    # here a fixed ~100 MiB of slab/window buffers dominates
    assert large < 2.5 * large_bytes, mib
    # 5x the slices: only the uint8 output labels (~0.2 byte per input voxel here) grow with z
    assert large - small < 0.6 * (large_bytes - small_bytes), mib
