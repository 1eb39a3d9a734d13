"""Subprocess helper of test_memory.py: peak RSS of medseg inference on a large int16 volume.

``python memory_probe.py write STORE Z Y X``  writes a synthetic CT volume store slab by slab.
``python memory_probe.py infer STORE SPACING_Z SPACING_Y SPACING_X OVERLAP``  predicts it with a tiny
untrained 3-class DynUNet (target spacing = the given one) and prints one JSON line: baseline_mib
(RSS after imports, model build and one forward pass of a window batch, before touching the volume),
model_peak_mib (ru_maxrss at that point: interpreter + libraries + the model's working set),
peak_mib (ru_maxrss at the end), input_mib, model_mib (parameters), seconds, label_shape.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

SPACING = (1.0, 0.8, 0.8)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write(store: Path, shape: tuple[int, int, int]) -> None:
    from medseg.geometry import Geometry
    from medseg.io.volume_store import case_writer

    z, y, x = shape
    yy, xx = np.ogrid[:y, :x]
    body = ((yy - y / 2) / (0.45 * y)) ** 2 + ((xx - x / 2) / (0.4 * x)) ** 2 <= 1
    organ2d = ((yy - y / 2) / (0.15 * y)) ** 2 + ((xx - 0.6 * x) / (0.12 * x)) ** 2
    rng = np.random.default_rng(0)
    with case_writer(store, "big", shape, np.int16, Geometry.create(SPACING, (0, 0, 0)), chunks=(32, 512, 512)) as w:
        for z0 in range(0, z, 32):
            n = min(32, z - z0)
            slab = np.full((n, y, x), -1000, np.int16)
            slab[:, body] = 40
            for k in range(n):
                r = 1 - ((z0 + k - z / 2) / (0.35 * z)) ** 2
                if r > 0:
                    slab[k][organ2d <= r] = 120
            slab += rng.normal(0, 10, slab.shape).astype(np.int16)
            w.image[z0 : z0 + n] = slab


def infer(store: Path, target: tuple[float, float, float], overlap: float) -> None:
    import torch

    from medseg.config import InferConfig
    from medseg.geometry import Geometry
    from medseg.inference.predict import predict_volume
    from medseg.io.volume_store import open_array, read_meta
    from medseg.plan import Normalization, Plan
    from medseg.training.bundle import ModelBundle
    from medseg.training.network import build_segmenter

    torch.set_num_threads(2)
    plan = Plan(
        modality="CT", normalization=Normalization.CT, clip_range=(-200.0, 300.0), intensity_mean=80.0,
        intensity_std=60.0, target_spacing=target, median_shape=(300, 512, 512), patch_size=(32, 128, 128),
        kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        filters=[4, 8, 16, 32], num_classes=3, label_names={1: "organ", 2: "lesion"},
    )
    torch.manual_seed(0)
    net = build_segmenter(plan, deep_supervision=False).eval()
    model_mib = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
    bundle = ModelBundle(path=Path("."), family="cnn", version="probe", plan=plan, network=net, metadata={})
    image = open_array(store, "0")
    geometry = Geometry.from_dict(read_meta(store)["geometry"])
    cfg = InferConfig(overlap=overlap, sw_batch_size=2)
    with torch.no_grad():  # the model's own working set: one forward pass of a window batch
        net(torch.zeros((cfg.sw_batch_size, 1, *plan.patch_size)))
    baseline = _rss_mib()
    model_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    label = predict_volume(bundle, image, geometry, cfg, "cpu", spill_dir=store.parent)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "baseline_mib": baseline, "model_peak_mib": model_peak, "peak_mib": peak,
        "input_mib": int(np.prod(image.shape)) * 2 / 2**20,
        "model_mib": model_mib, "seconds": seconds, "label_shape": list(label.shape),
        "label_counts": [int(np.count_nonzero(label == c)) for c in range(3)],
    }))


if __name__ == "__main__":
    cmd, path = sys.argv[1], Path(sys.argv[2])
    if cmd == "write":
        write(path, (int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
    else:
        infer(path, (float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])), float(sys.argv[6]))
