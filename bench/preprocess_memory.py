"""Peak memory of ``preprocess_case`` on one large CT volume (default 1000 x 512 x 512 int16).

The volume (a body ellipse at ~40 HU in -1000 HU air, an organ sphere and a lesion, both labeled) is
written slab by slab with :func:`medseg.io.volume_store.case_writer`, so generating it never holds
the whole volume either. ``preprocess_case`` then runs in a fresh child process; its peak RSS
(``VmHWM``) and the RSS right after imports are reported next to the input size.

Usage::

    python bench/preprocess_memory.py [--shape 1000 512 512] [--spacing 1.0 0.7 0.7]
                                      [--target 1.5 0.8 0.8] [--workdir DIR] [--keep]

Ends with ``RESULT input_mb=... peak_rss_mb=... above_baseline_mb=... ratio=...`` where ratio =
(peak - baseline) / input bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medseg.geometry import Geometry  # noqa: E402
from medseg.io.volume_store import case_writer  # noqa: E402

# VmHWM (peak RSS of this process image) is reset by execve, unlike ru_maxrss which Linux keeps
# from the parent (the generator) across exec.
_CHILD = """
import json, sys, time
from pathlib import Path
from medseg.plan import Plan
from medseg.preprocess.case import preprocess_case
def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)
base = vm("VmHWM")
plan = Plan.model_validate_json(Path(sys.argv[3]).read_text())
t = time.perf_counter()
res = preprocess_case(Path(sys.argv[1]), Path(sys.argv[2]), plan)
dt = time.perf_counter() - t
print(json.dumps({"baseline_kb": base, "peak_kb": vm("VmHWM"), "seconds": dt, "shape": res.shape}))
"""


def write_volume(path: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float], slab: int = 64) -> None:
    """Write a synthetic labeled CT store slab by slab (int16 HU, uint8 labels 1 organ / 2 lesion)."""
    z, y, x = shape
    yy, xx = np.meshgrid(np.arange(y, dtype=np.float32), np.arange(x, dtype=np.float32), indexing="ij")
    body = ((yy - y / 2) / (0.42 * y)) ** 2 + ((xx - x / 2) / (0.47 * x)) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    geometry = Geometry.create(spacing=spacing, origin=(0.0, 0.0, 0.0))
    with case_writer(
        path, path.stem, shape, np.int16, geometry, labels=["gt"], label_names={1: "organ", 2: "lesion"},
        source={"modality": "CT"},
    ) as w:
        for z0 in range(0, z, slab):
            z1 = min(z, z0 + slab)
            zz = np.arange(z0, z1, dtype=np.float32)[:, None, None]
            organ = ((zz - z / 2) * spacing[0]) ** 2 + ((yy - y / 2) * spacing[1]) ** 2 + (
                (xx - 0.4 * x) * spacing[2]
            ) ** 2 <= (0.15 * min(z * spacing[0], y * spacing[1])) ** 2
            lesion = ((zz - z / 2) * spacing[0]) ** 2 + ((yy - 0.45 * y) * spacing[1]) ** 2 + (
                (xx - 0.4 * x) * spacing[2]
            ) ** 2 <= (0.04 * min(z * spacing[0], y * spacing[1])) ** 2
            img = np.where(body, 40.0, -1000.0) + 10.0 * rng.standard_normal((z1 - z0, y, x), dtype=np.float32)
            img = np.where(organ, img + 60.0, img)
            img = np.where(lesion, img + 100.0, img)
            w.image[z0:z1] = img.astype(np.int16)
            lab = np.zeros((z1 - z0, y, x), np.uint8)
            lab[organ & body] = 1
            lab[lesion & body] = 2
            w.labels["gt"][z0:z1] = lab


def ct_plan(target: tuple[float, float, float]) -> str:
    from medseg.plan import Normalization, Plan

    plan = Plan(
        modality="CT",
        normalization=Normalization.CT,
        clip_range=(-1000.0, 200.0),
        intensity_mean=60.0,
        intensity_std=40.0,
        target_spacing=target,
        median_shape=(128, 128, 128),
        patch_size=(96, 160, 160),
        kernel_sizes=[[3, 3, 3]] * 5,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * 4,
        filters=[32, 64, 128, 256, 320],
        num_classes=3,
        label_names={1: "organ", 2: "lesion"},
    )
    return plan.model_dump_json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[1000, 512, 512])
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.0, 0.7, 0.7])
    ap.add_argument("--target", type=float, nargs=3, default=[1.5, 0.8, 0.8])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medseg-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    src, out, plan_file = work / "big.zarr", work / "big_pre.zarr", work / "plan.json"
    shape = (int(args.shape[0]), int(args.shape[1]), int(args.shape[2]))
    if not src.exists():
        t = time.perf_counter()
        write_volume(src, shape, (args.spacing[0], args.spacing[1], args.spacing[2]))
        print(f"wrote {shape} int16 in {time.perf_counter() - t:.1f}s")
    plan_file.write_text(ct_plan((args.target[0], args.target[1], args.target[2])))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(out), str(plan_file)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"preprocess_case failed:\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    input_mb = int(np.prod(shape)) * 2 / 2**20
    labels_mb = int(np.prod(shape)) / 2**20
    out_mb = int(np.prod(r["shape"])) * 4 / 2**20
    peak, base = r["peak_kb"] / 1024, r["baseline_kb"] / 1024
    print(f"input  {shape} int16: {input_mb:.0f} MiB (+ {labels_mb:.0f} MiB uint8 labels)")
    print(f"output {tuple(r['shape'])} float32: {out_mb:.0f} MiB; preprocess_case {r['seconds']:.1f}s")
    print(f"peak RSS {peak:.0f} MiB, after imports {base:.0f} MiB, above baseline {peak - base:.0f} MiB")
    print(
        f"RESULT input_mb={input_mb:.0f} peak_rss_mb={peak:.0f} above_baseline_mb={peak - base:.0f}"
        f" ratio={(peak - base) / input_mb:.2f}"
    )
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
