"""RTSTRUCT labels: scanline fill, contour placement by physical position, linking, real RT files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_slices, rtstruct_for, write
from matplotlib.path import Path as MplPath
from numpy.typing import NDArray
from pydicom import dcmread

from medseg.config import IngestConfig
from medseg.geometry import Geometry
from medseg.ingest.headers import read_header
from medseg.ingest.run import ingest
from medseg.ingest.stacks import frames_of
from medseg.io.catalog import Catalog
from medseg.io.dicom.polygon import polygon_area
from medseg.io.dicom.rtstruct import rasterise_rois, read_rtstruct, rtstruct_rois
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="rtstruct-secret", files_per_batch=8)
ORIGIN = (-10.0, -20.0, 30.0)
SPACING = (0.8, 0.6)  # PixelSpacing: row spacing (y), column spacing (x)
STEP = 2.5


def _lps(geometry: Geometry, k: float, ji: NDArray[np.floating]) -> NDArray[np.float64]:
    idx = np.column_stack([np.full(len(ji), float(k)), np.asarray(ji, float)])
    return geometry.index_to_lps(idx)


def _series_geometry(iop: tuple[float, ...]) -> Geometry:
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    return Geometry.create(
        spacing=(STEP, *SPACING), origin=ORIGIN, direction=np.column_stack([np.cross(row, col), col, row])
    )


@pytest.mark.parametrize("oblique", [False, True])
def test_generated_rtstruct_is_rasterised_exactly_on_its_series(tmp_path: Path, oblique: bool) -> None:
    a = np.radians(20.0)
    iop = (np.cos(a), np.sin(a), 0.0, -np.sin(a), np.cos(a), 0.0) if oblique else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    dss, _ = ct_slices(n=6, rows=32, cols=40, spacing=SPACING, step=STEP, origin=ORIGIN, iop=iop)
    g = _series_geometry(iop)
    square = _lps(g, 2, np.array([[4, 5], [4, 12], [10, 12], [10, 5]], float))
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    radius_mm = 5.0
    circle_ji = np.column_stack([16 + radius_mm / SPACING[0] * np.sin(t), 25 + radius_mm / SPACING[1] * np.cos(t)])
    outer = _lps(g, 0, np.array([[2, 2], [2, 20], [20, 20], [20, 2]], float))
    inner = _lps(g, 0, np.array([[8, 8], [8, 14], [14, 14], [14, 8]], float))
    rts = rtstruct_for(
        dss,
        [
            ("square", [(square, 2)]),
            ("circle", [(_lps(g, 3, circle_ji), 3), (_lps(g, 4, circle_ji), None)]),
            ("ring", [(outer, 0), (inner, 0)]),
        ],
    )
    src = tmp_path / "src"
    write(dss[::-1], src / "ct")
    rts.save_as(src / "rs.dcm", enforce_file_format=True)
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([src], ws, CFG)
    assert (s.cases, s.labeled_cases, s.quarantined) == (1, 1, 0)
    cat = Catalog(ws.catalog_path)
    (rec,) = cat.cases()
    assert rec.label_names == {1: "square", 2: "circle", 3: "ring"}
    case = read_case(rec.volume_path)
    assert case.source["label_source"] == "rtstruct"
    gt = case.labels["gt"]
    expected_square = np.zeros((32, 40), bool)
    expected_square[4:11, 5:13] = True
    np.testing.assert_array_equal(gt[2] == 1, expected_square)
    jj, ii = np.mgrid[0:32, 0:40]
    dist = np.hypot((jj - 16) * SPACING[0], (ii - 25) * SPACING[1])
    clear = np.abs(dist - radius_mm) > 0.05  # the 96-gon is within 0.003 mm of the circle
    for k in (3, 4):
        np.testing.assert_array_equal((gt[k] == 2)[clear], (dist <= radius_mm)[clear])
    ring = np.zeros((32, 40), bool)
    ring[2:21, 2:21] = True
    ring[9:14, 9:14] = False  # inner contour is a hole: its centres on the contour stay in the ring
    np.testing.assert_array_equal(gt[0] == 3, ring)
    assert not gt[1].any() and not gt[5].any()
    kinds = {(r["kind"], r["status"]) for r in cat.series_table()}
    assert ("rtstruct", "label_source") in kinds


def test_rtstruct_linked_by_frame_of_reference_only(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=4, rows=16, cols=16)
    g = _series_geometry((1, 0, 0, 0, 1, 0))
    rts = rtstruct_for(
        dss, [("box", [(_lps(g, 1, np.array([[2, 2], [2, 5], [5, 5], [5, 2]], float)), None)])], reference_series=False
    )
    write(dss, tmp_path / "src" / "ct")
    rts.save_as(tmp_path / "src" / "rs.dcm", enforce_file_format=True)
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert s.labeled_cases == 1
    assert int((read_case(Catalog(ws.catalog_path).cases()[0].volume_path).labels["gt"] == 1).sum()) == 16


def test_off_grid_contour_is_a_mismatch_and_image_still_ingested(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=4, rows=16, cols=16)
    g = _series_geometry((1, 0, 0, 0, 1, 0))
    box = np.array([[2, 2], [2, 5], [5, 5], [5, 2]], float)
    rts = rtstruct_for(dss, [("box", [(_lps(g, 1, box), 1), (_lps(g, 9, box), None)])])  # slice 9 of 4
    write(dss, tmp_path / "src" / "ct")
    rts.save_as(tmp_path / "src" / "rs.dcm", enforce_file_format=True)
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert (s.cases, s.labeled_cases) == (1, 0)
    q = Catalog(ws.catalog_path).quarantine()
    assert [x["reason"] for x in q] == ["rtstruct_mismatch"]
    assert "rs.dcm" in q[0]["message"] and "outside the 4 image slices" in q[0]["message"]
    (row,) = [r for r in Catalog(ws.catalog_path).series_table() if r["kind"] == "rtstruct"]
    assert (row["status"], row["reason"]) == ("quarantined", "rtstruct_mismatch")


def test_rtstruct_without_ingestible_reference_is_quarantined(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=4, rows=16, cols=16)
    other, _ = ct_slices(n=2, rows=16, cols=16)  # 2 slices: too few, never ingested
    g = _series_geometry((1, 0, 0, 0, 1, 0))
    rts = rtstruct_for(other, [("box", [(_lps(g, 0, np.array([[2, 2], [2, 5], [5, 5]], float)), 0)])])
    write(dss, tmp_path / "src" / "ct")
    write(other, tmp_path / "src" / "short")
    rts.save_as(tmp_path / "src" / "rs.dcm", enforce_file_format=True)
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert (s.cases, s.labeled_cases) == (1, 0)
    q = {x["path"].rsplit("/", 1)[-1]: x for x in Catalog(ws.catalog_path).quarantine()}
    assert q["rs.dcm"]["reason"] == "rtstruct_unreferenced"
    assert "too_few_slices" in q["rs.dcm"]["message"]


# --- real RTSTRUCT files ----------------------------------------------------------------------
def _grid(paths: list[Path], step: float) -> tuple[Geometry, tuple[int, int, int], set[str]]:
    frames = sorted((f for p in paths for f in frames_of(read_header(p, "x-secret"))), key=lambda f: f.ipp[2])
    f0 = frames[0]
    row, col = np.asarray(f0.iop[:3]), np.asarray(f0.iop[3:])
    g = Geometry.create(
        spacing=(step, *f0.spacing), origin=f0.ipp, direction=np.column_stack([np.cross(row, col), col, row])
    )
    return g, (len(frames), f0.rows, f0.cols), {f.sop_uid for f in frames}


def test_rt_utils_contour_with_hole_matches_point_in_polygon(real_data: Path) -> None:
    folder = real_data / "rt-utils" / "mock_data"
    g, shape, sops = _grid([folder / "ct_1.dcm", folder / "ct_2.dcm"], 5.0)
    rois = rtstruct_rois(read_rtstruct(str(folder / "rt.dcm")))
    assert [(r.number, r.name, len(r.contours)) for r in rois] == [(1, "ROI-1", 2)]
    raster = rasterise_rois(rois, g, shape, sops)
    assert raster.names == {1: "ROI-1"} and raster.placed == 2 and not raster.off_grid
    jj, ii = np.mgrid[0 : shape[1], 0 : shape[2]]
    centres = np.stack([jj.ravel(), ii.ravel()], 1)
    polys = [g.lps_to_index(c.points)[:, 1:] for c in rois[0].contours]
    expected = MplPath(polys[0]).contains_points(centres) ^ MplPath(polys[1]).contains_points(centres)
    np.testing.assert_array_equal(raster.label[0].ravel() == 1, expected)  # outer square minus inner octagon
    assert not raster.label[1].any()
    area_px = polygon_area(polys[0]) - polygon_area(polys[1])
    assert int(expected.sum()) == pytest.approx(area_px, rel=0.03)


def test_rt_utils_contours_on_missing_slices_are_skipped_or_reported(real_data: Path) -> None:
    folder = real_data / "rt-utils" / "mock_data"
    g, shape, sops = _grid([folder / "ct_1.dcm", folder / "ct_2.dcm"], 5.0)
    rois = rtstruct_rois(read_rtstruct(str(folder / "invalid_reference_rt.dcm")))
    assert [r.name for r in rois] == ["ROI-1", "ROI-2", "ROI-3", "ROI-4"]
    known = rasterise_rois(rois, g, shape, sops)
    assert (known.placed, known.skipped_other_stack, len(known.off_grid)) == (8, 4, 0)  # z = 70 mm not exported
    assert set(np.unique(known.label[0])) == {0, 1, 2, 3, 4} and set(np.unique(known.label[1])) == {0, 1, 2, 3, 4}
    strict = rasterise_rois(rois, g, shape, None)
    assert len(strict.off_grid) == 4 and "outside the 2 image slices" in strict.off_grid[0]


def test_dicompyler_structures_on_its_ct_slice(real_data: Path) -> None:
    folder = real_data / "dicompyler-core" / "example_data"
    g, shape, sops = _grid([folder / "ct.0.dcm"], 3.0)
    rois = rtstruct_rois(read_rtstruct(str(folder / "rtss.dcm")))
    raster = rasterise_rois(rois, g, shape, sops)
    # only the exported CT slice is here: contours naming the other 97 slices are skipped, not errors
    assert not raster.off_grid and raster.skipped_other_stack > 400
    body = next(r for r in rois if r.name == "BODY")
    polys = [g.lps_to_index(c.points)[:, 1:] for c in body.contours if abs(g.lps_to_index(c.points)[0, 0]) < 0.5]
    assert raster.placed == len(polys) == 4 and raster.names == {1: "BODY"}
    jj, ii = np.mgrid[0 : shape[1], 0 : shape[2]]
    centres = np.stack([jj.ravel(), ii.ravel()], 1)
    inside = np.zeros(len(centres), bool)
    clear = np.ones(len(centres), bool)
    for poly in polys:
        path = MplPath(poly)
        inside ^= path.contains_points(centres)
        clear &= path.contains_points(centres, radius=0.01) == path.contains_points(centres, radius=-0.01)
    ours = raster.label[0].ravel() == 1
    np.testing.assert_array_equal(ours[clear], inside[clear])
    assert 0.1 < ours.mean() < 0.5  # a body outline, not the whole field of view


def test_real_rt_folders_ingest_without_crash(real_data: Path, tmp_path: Path) -> None:
    sources = [real_data / "rt-utils", real_data / "dicompyler-core"]
    ws = Workspace.at(tmp_path / "ws")
    ingest(sources, ws, CFG)
    q = Catalog(ws.catalog_path).quarantine()
    reasons = {x["path"].rsplit("/", 1)[-1]: x["reason"] for x in q}
    assert "internal_error" not in reasons.values()
    assert reasons["rt.dcm"] == "rtstruct_unreferenced" and reasons["rtss.dcm"] == "rtstruct_unreferenced"
    assert reasons["rtplan.dcm"] == "unsupported_object"
    assert dcmread(real_data / "rt-utils" / "mock_data" / "rt.dcm", stop_before_pixels=True).Modality == "RTSTRUCT"
