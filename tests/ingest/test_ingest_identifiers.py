"""Identifiers stay out of everything but the catalog: ``medseg ingest`` on series carrying marker values in
PS3.15 Basic Profile attributes, under a folder with a marker name, with the key given by ``--set``; every
file of the workspace, Prefect's home (its database and logs) and the command's output are searched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dicom_factory import ct_slices, write

KEY = "MARKERKEY-9d1f2a"
FOLDER = "MARKERFOLDER-DOE_JOHN-20240101"  # folder names of exports are often patient names and dates
#: Basic Profile attributes (PS3.15 E.1-1) with marker values; none may leave the archive
PHI = {
    "PatientName": "MARKERNAME^ALICE",
    "PatientID": "MARKERPID-31337",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "MARKERACC-77",
    "InstitutionName": "MARKER-INSTITUTION",
    "InstitutionAddress": "MARKER-STREET-1",
    "ReferringPhysicianName": "MARKERREF^BOB",
    "PerformingPhysicianName": "MARKERPERF^EVE",
    "OperatorsName": "MARKEROP^MALLORY",
    "StationName": "MARKERSTATION",
    "DeviceSerialNumber": "MARKERSERIAL-5",
    "StudyID": "MARKERSTUDYID",
    "OtherPatientIDs": "MARKEROTHERID",
    "PatientAddress": "MARKER-HOME-ADDRESS",
    "StudyDescription": "MARKER-STUDY-DESC",
}


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _hits(paths: list[Path], markers: list[str]) -> list[str]:
    out = []
    for p in paths:
        data = p.read_bytes()
        out.extend(f"{m} in {p}" for m in markers if m.encode() in data)
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ingest_keeps_the_key_and_patient_identifiers_out_of_outputs_and_prefect(tmp_path: Path) -> None:
    src = tmp_path / "archive"
    uids: set[str] = set()
    for k in range(2):
        dss, _ = ct_slices(n=4, seed=k, patient_id=PHI["PatientID"])
        for ds in dss:
            for keyword, value in PHI.items():
                setattr(ds, keyword, value)
            uids.update(str(ds[kw].value) for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
                                                      "FrameOfReferenceUID"))
        write(dss, src / FOLDER / f"series{k}")
    ws, home = tmp_path / "ws", tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(home)
    medseg = Path(sys.executable).parent / "medseg"
    run = subprocess.run([str(medseg), "ingest", str(src), "--workspace", str(ws), "--set",
                          f"ingest.deid_secret={KEY}", "--set", "dask.n_workers=1"],
                         env=env, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "ingested" in run.stdout or "cases" in run.stdout
    assert list((ws / "volumes").glob("*.zarr")), "nothing was ingested"
    prefect_files = _files(home)
    assert any(p.suffix == ".db" for p in prefect_files), "Prefect's database was not where expected"
    markers = [KEY, *PHI.values()]
    assert _hits(prefect_files, markers) == []
    assert _hits(_files(ws), markers) == []  # the catalog included: it keeps paths and UIDs, not these
    # UIDs (vendor UIDs embed device serials and times) stay in the catalog: not in stores, records, Prefect
    outside_catalog = [p for p in _files(ws) if not p.name.startswith("catalog.sqlite")]
    assert _hits(outside_catalog + prefect_files, sorted(uids)) == []
    assert _hits(outside_catalog + prefect_files, [FOLDER]) == []  # source paths: the catalog only
    assert FOLDER not in run.stdout + run.stderr
    assert [m for m in markers if m in run.stdout + run.stderr] == []
    assert not (ws / "deid.key").exists()  # the given key is used, no workspace key is made


def _archive_with_markers(tmp_path: Path) -> tuple[Path, set[str]]:
    """The demo archive (CT series + DICOM SEG) with the marker values written into every file, under FOLDER."""
    import pydicom

    from medseg.demo.archive import generate_demo_archive

    plain, src = tmp_path / "plain", tmp_path / "archive"
    generate_demo_archive(plain, cases=4, seed=1)
    uids: set[str] = set()
    for path in sorted(plain.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        uids.update(str(ds[kw].value) for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
                    if kw in ds)
        out = src / FOLDER / path.relative_to(plain)
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out)
    return src, uids


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_whole_pipeline_keeps_the_key_and_identifiers_out_of_its_outputs_and_prefect(tmp_path: Path) -> None:
    """``medseg run`` (ingest, preprocess, train, infer, report) on marked series: only the catalog keeps paths
    and UIDs, and only the DICOM SEG outputs, made to go back to a PACS, carry the patient's identity."""
    src, uids = _archive_with_markers(tmp_path)
    ws, home = tmp_path / "ws", tmp_path / "prefect-home"
    config = tmp_path / "phi.yaml"
    config.write_text(
        f"name: phi\nworkspace: {ws}\nsources: [{src}]\ndask: {{n_workers: 1}}\n"
        "preprocess: {patch_size: [16, 64, 64]}\n"
        "train: {models: [cnn], max_epochs: 1, iterations_per_epoch: 2, val_every: 1, filters: [8, 16, 32, 64], "
        "device: cpu, num_threads: 2}\nsplit: {test_fraction: 0.3}\ninfer: {overlap: 0.0}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(home)
    medseg = Path(sys.executable).parent / "medseg"
    run = subprocess.run([str(medseg), "run", str(config), "--set", f"ingest.deid_secret={KEY}"],
                         env=env, capture_output=True, text=True, timeout=880)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    segs = list((ws / "predictions").rglob("*.dcm"))
    assert list((ws / "reports").rglob("report.html")) and list((ws / "models").rglob("model.pt")) and segs
    outputs = [p for p in _files(ws) if not p.name.startswith("catalog.sqlite") and p not in segs]
    prefect_files = _files(home)
    markers = [KEY, *PHI.values()]
    assert _hits(prefect_files + outputs, markers) == []
    assert _hits(prefect_files + outputs, sorted(uids)) == []
    assert _hits(prefect_files + outputs, [FOLDER]) == []
    assert [m for m in [*markers, FOLDER] if m in run.stdout + run.stderr] == []
    assert _hits(segs, sorted(uids)), "a DICOM SEG must reference its source instances"
