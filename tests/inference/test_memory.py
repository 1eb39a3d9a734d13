"""Peak RSS of inference on a 512 x 512 x 300 int16 CT with a 3-class model (issue 6 "done means").

Worst case on purpose: the plan's target spacing equals the native spacing, so the preprocessed
float32 image is twice the int16 input and the logits would be 3 x 4 bytes per native voxel if
they were ever held whole. Measured in a subprocess (``memory_probe.py``):

* ``model_peak`` = ru_maxrss after imports, building the model and one forward pass of a window
  batch: the interpreter, the libraries and the model with its own working set;
* ``peak`` = ru_maxrss after predicting the volume (read slab by slab from its Zarr store).

Asserted: ``peak - model_peak <= 3 x input bytes + model parameter bytes``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("memory_probe.py")


@pytest.mark.slow
def test_peak_rss_of_a_512x512x300_volume_is_bounded(tmp_path: Path) -> None:
    store = tmp_path / "big.zarr"
    subprocess.run([sys.executable, str(PROBE), "write", str(store), "300", "512", "512"], check=True, timeout=300)
    res = subprocess.run(
        [sys.executable, str(PROBE), "infer", str(store), "1.0", "0.8", "0.8", "0.0"],
        check=True, capture_output=True, text=True, timeout=1200,
    )
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["label_shape"] == [300, 512, 512] and m["input_mib"] == 150.0
    used = m["peak_mib"] - m["model_peak_mib"]
    budget = 3 * m["input_mib"] + m["model_mib"]
    print(json.dumps({**m, "used_mib": used, "budget_mib": budget}))
    assert used <= budget, f"inference used {used:.0f} MiB over the model's footprint, budget {budget:.0f} MiB"
    assert not any(p.name.startswith(".medseg-pre-") for p in tmp_path.iterdir())  # spill file removed
