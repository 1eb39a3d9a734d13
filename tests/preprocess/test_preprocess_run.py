"""The preprocess stage (sequential path): outputs, idempotence, failures, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from preprocess_synthetic import MakeCase, synthetic_case

from medseg.config import MedsegConfig
from medseg.io.volume_store import is_complete, read_case, read_meta, write_case
from medseg.plan import Plan
from medseg.preprocess import run as run_module
from medseg.preprocess.fingerprint import Fingerprint
from medseg.preprocess.run import run_preprocess
from medseg.splits import Splits
from medseg.workspace import Workspace


def corrupt_image_chunks(path: Path) -> None:
    """Overwrite every chunk file of the image array with garbage (decode fails)."""
    chunks = [p for p in (path / "0").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks
    for p in chunks:
        p.write_bytes(b"not a blosc frame")


def test_outputs_and_idempotence(ws: Workspace, cfg: MedsegConfig, make_case: MakeCase) -> None:
    for i in range(3):
        make_case(f"c{i}", seed=i)
    calls: list[tuple[int, int]] = []
    s1 = run_preprocess(ws, cfg, None, progress=lambda d, t: calls.append((d, t)))
    assert (s1.cases_total, s1.cases_processed, s1.cases_skipped, s1.failed) == (3, 3, 0, [])
    assert calls[-1] == (3, 3)
    plan = Plan.load(ws.plan_path)
    assert plan.plan_hash() == s1.plan_hash
    assert [c.case_id for c in Fingerprint.load(ws.fingerprint_path).cases] == ["c0", "c1", "c2"]
    splits = Splits.load(ws.splits_path)
    assert sorted(splits.train + splits.val + splits.test) == ["c0", "c1", "c2"]
    for i in range(3):
        out = ws.preprocessed_case_path(f"c{i}")
        assert is_complete(out) and read_meta(out)["source"]["plan_hash"] == s1.plan_hash

    s2 = run_preprocess(ws, cfg, None)
    assert (s2.cases_processed, s2.cases_skipped, s2.plan_hash) == (0, 3, s1.plan_hash)

    make_case("c3", seed=3)  # same geometry: the plan does not change
    s3 = run_preprocess(ws, cfg, None)
    assert (s3.cases_total, s3.cases_processed, s3.cases_skipped) == (4, 1, 3)
    assert s3.plan_hash == s1.plan_hash

    write_case(ws.volume_path("c1"), synthetic_case("c1", seed=42))  # re-ingested with new content
    s4 = run_preprocess(ws, cfg, None)
    assert (s4.cases_processed, s4.cases_skipped) == (1, 3)

    cfg.preprocess.max_patch_voxels = 8 * 16 * 16 * 2  # changes the plan: everything is redone
    s5 = run_preprocess(ws, cfg, None)
    assert s5.plan_hash != s1.plan_hash
    assert (s5.cases_processed, s5.cases_skipped) == (4, 0)


def test_unlabeled_and_incomplete_stores_are_skipped(
    ws: Workspace, cfg: MedsegConfig, make_case: MakeCase
) -> None:
    make_case("a", seed=1)
    make_case("b", seed=2)
    write_case(ws.volume_path("u"), synthetic_case("u", labeled=False))
    zarr.open_group(str(ws.volume_path("half")), mode="w")  # interrupted write: no completion marker
    s = run_preprocess(ws, cfg, None)
    assert (s.cases_total, s.cases_processed, s.cases_unlabeled, s.cases_incomplete) == (2, 2, 1, 1)
    assert not ws.preprocessed_case_path("u").exists()


def test_failing_case_is_reported_and_others_complete(
    ws: Workspace, cfg: MedsegConfig, make_case: MakeCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        make_case(f"c{i}", seed=i)
    corrupt_image_chunks(ws.volume_path("c1"))  # fails while fingerprinting
    real = run_module.preprocess_case

    def flaky(volume_path: Path, out_path: Path, plan: Plan, src_hash: str | None = None) -> object:
        if Path(volume_path).stem == "c2":
            raise RuntimeError("disk on fire")
        return real(volume_path, out_path, plan, src_hash)

    monkeypatch.setattr(run_module, "preprocess_case", flaky)
    s = run_preprocess(ws, cfg, None)
    assert s.cases_total == 4 and s.cases_processed == 2
    assert [f.case_id for f in s.failed] == ["c1", "c2"]
    assert "disk on fire" in s.failed[1].error and s.failed[1].error.startswith("RuntimeError")
    assert is_complete(ws.preprocessed_case_path("c0")) and is_complete(ws.preprocessed_case_path("c3"))
    assert not ws.preprocessed_case_path("c2").exists()
    splits = Splits.load(ws.splits_path)
    assert sorted(splits.train + splits.val + splits.test) == ["c0", "c3"]

    monkeypatch.setattr(run_module, "preprocess_case", real)  # fixed: only the failed one is redone
    s2 = run_preprocess(ws, cfg, None)
    assert (s2.cases_processed, s2.cases_skipped, [f.case_id for f in s2.failed]) == (1, 2, ["c1"])


def test_no_labeled_case_is_a_clear_error(ws: Workspace, cfg: MedsegConfig) -> None:
    write_case(ws.volume_path("u"), synthetic_case("u", labeled=False))
    with pytest.raises(ValueError, match="no labeled ingested case"):
        run_preprocess(ws, cfg, None)


def test_preprocessed_data_matches_the_plan(ws: Workspace, cfg: MedsegConfig, make_case: MakeCase) -> None:
    make_case("a", spacing=(2.0, 1.0, 1.0), seed=1)
    make_case("b", spacing=(2.0, 1.0, 1.0), seed=2)
    run_preprocess(ws, cfg, None)
    plan = Plan.load(ws.plan_path)
    case = read_case(ws.preprocessed_case_path("a"))
    assert np.allclose(case.geometry.spacing, plan.target_spacing, rtol=0.05)
    body = case.image != 0
    assert abs(case.image[body].mean()) < 0.2 and abs(case.image[body].std() - 1) < 0.2


def test_frozen_plan_survives_a_plan_changing_case(
    ws: Workspace, cfg: MedsegConfig, make_case: MakeCase
) -> None:
    make_case("a", modality="CT", seed=1)
    make_case("b", modality="CT", seed=2)
    s1 = run_preprocess(ws, cfg, None)
    make_case("c", modality="CT", seed=3, spacing=(3.0, 0.7, 0.7))  # shifts median spacing and HU stats
    s2 = run_preprocess(ws, cfg, None, freeze_plan=True)
    assert (s2.plan_hash, s2.cases_processed, s2.cases_skipped) == (s1.plan_hash, 1, 2)
    s3 = run_preprocess(ws, cfg, None)
    assert s3.plan_hash != s1.plan_hash and s3.cases_processed == 3
