"""Fingerprint of synthetic ingested volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from preprocess_synthetic import MakeCase, synthetic_case

from medseg.io.volume_store import write_case
from medseg.preprocess.fingerprint import (
    Fingerprint,
    compute_fingerprint,
    fingerprint_case,
    fingerprint_case_cached,
)
from medseg.workspace import Workspace


def test_case_fingerprint_fields(make_case: MakeCase) -> None:
    path = make_case("a", shape=(20, 40, 40), spacing=(2.0, 1.0, 1.0), modality="MR", border=3)
    fp, samples = fingerprint_case(path, num_samples=500)
    case = synthetic_case("a", shape=(20, 40, 40), spacing=(2.0, 1.0, 1.0), modality="MR", border=3)
    gt = case.labels["gt"]
    assert fp.case_id == "a" and fp.modality == "MR"
    assert fp.spacing == (2.0, 1.0, 1.0) and fp.shape == (20, 40, 40)
    # zero border of the MR image is cropped away (the lesion box reaches outside the body: included)
    assert all(c <= s for c, s in zip(fp.shape_after_crop, fp.shape, strict=True))
    assert fp.shape_after_crop[1] < 40
    assert fp.class_voxels == {k: int((gt == k).sum()) for k in (0, 1, 2)}
    fg = case.image[gt > 0]
    assert fp.intensity is not None
    assert np.isclose(fp.intensity.mean, fg.mean(), rtol=1e-5)
    assert np.isclose(fp.intensity.p99_5, np.percentile(fg, 99.5), rtol=1e-5)
    assert samples.shape == (500,) and np.isin(samples, fg).all()
    # seeded by case id: the same samples every time
    np.testing.assert_array_equal(fingerprint_case(path, num_samples=500)[1], samples)


def test_dataset_aggregates_and_failures(ws: Workspace, make_case: MakeCase, tmp_path: Path) -> None:
    paths = [
        make_case("a", spacing=(2.0, 1.0, 1.0), modality="CT", seed=1),
        make_case("b", spacing=(3.0, 0.8, 0.8), modality="CT", seed=2),
        make_case("c", spacing=(2.5, 0.9, 0.9), modality="MR", seed=3),
        write_case(ws.volume_path("u"), synthetic_case("u", labeled=False)),
        write_case(ws.volume_path("renamed"), synthetic_case("other")),
    ]
    fp = compute_fingerprint(paths, None, num_samples=200)
    assert [c.case_id for c in fp.cases] == ["a", "b", "c"]
    assert [e.case_id for e in fp.failed] == ["renamed", "u"]
    assert "case_id 'other'" in fp.failed[0].error and "gt" in fp.failed[1].error
    assert fp.median_spacing == (2.5, 0.9, 0.9)
    assert fp.modality == "CT" and fp.modalities == {"CT": 2, "MR": 1}
    assert fp.label_names == {1: "organ", 2: "lesion"}
    assert fp.foreground_intensity is not None and fp.foreground_intensity.n == 600
    clipped = fp.foreground_intensity_clipped
    assert clipped is not None and clipped.minimum >= fp.foreground_intensity.p00_5
    saved = fp.save(tmp_path / "fp.json")
    assert Fingerprint.load(saved) == fp


def test_cache_is_reused_until_the_store_changes(ws: Workspace, make_case: MakeCase, tmp_path: Path) -> None:
    path = make_case("a", seed=1)
    cache = tmp_path / "cache"
    fp1, s1 = fingerprint_case_cached(path, cache, num_samples=100)
    assert (cache / "a.npz").is_file()
    # a poisoned cache entry with the right hash is returned as is (proves it is read)
    fp_poisoned = fp1.model_copy(update={"modality": "XX"})
    np.savez(cache / "a.npz", fingerprint=np.array(fp_poisoned.model_dump_json()), samples=s1)
    assert fingerprint_case_cached(path, cache, num_samples=100)[0].modality == "XX"
    # rewriting the store with other content changes its hash: recomputed
    write_case(path, synthetic_case("a", seed=9, shape=(22, 40, 40)))
    fp2, _ = fingerprint_case_cached(path, cache, num_samples=100)
    assert fp2.modality == "MR" and fp2.shape == (22, 40, 40) and fp2.source_hash != fp1.source_hash
