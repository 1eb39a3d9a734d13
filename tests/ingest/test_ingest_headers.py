"""Header reading: classification, quarantine reasons, de-identification, batches."""

from __future__ import annotations

import json
from pathlib import Path

from dicom_factory import PATIENT_ID, PATIENT_NAME, ct_slices, write
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseg.deid import keyed_hash
from medseg.ingest.headers import read_header, read_header_batch

SECRET = "header-secret"


def test_image_header_is_small_and_deidentified(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=1)
    (path,) = write(dss, tmp_path)
    h = read_header(path, SECRET)
    assert h["status"] == "ok" and h["kind"] == "image"
    assert h["frames"] == [{"ipp": [-10.0, -20.0, 30.0], "iop": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], "spacing": [0.8, 0.6]}]
    assert h["patient_key"] == keyed_hash(SECRET, PATIENT_ID, prefix="pat_")
    assert h["study_key"] == keyed_hash(SECRET, dss[0].StudyInstanceUID, prefix="study_")
    assert h["size"] == path.stat().st_size and h["mtime_ns"] == path.stat().st_mtime_ns
    text = json.dumps(h)
    assert PATIENT_ID not in text and "SECRET" not in text and dss[0].StudyInstanceUID not in text
    assert h["series_uid"] == dss[0].SeriesInstanceUID and h["sop_uid"] == dss[0].SOPInstanceUID


def test_non_dicom_and_broken_files_are_quarantined(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "empty").write_bytes(b"")
    dss, _ = ct_slices(n=1)
    (good,) = write(dss, tmp_path)
    truncated = tmp_path / "trunc"
    truncated.write_bytes(good.read_bytes()[:200])
    out = {
        Path(h["path"]).name: h
        for h in read_header_batch([(str(tmp_path / n), -1, -1) for n in ("a.txt", "empty", "trunc")], SECRET)
    }
    assert out["a.txt"]["reason"] == "not_dicom" and "a.txt" in out["a.txt"]["message"]
    assert out["empty"]["reason"] == "not_dicom"
    assert out["trunc"]["status"] == "quarantined"
    assert out["trunc"]["reason"] in ("unreadable_header", "no_geometry", "missing_uids")


def _bare(**kw: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_non_image_and_projection_images_are_quarantined(tmp_path: Path) -> None:
    sr = _bare(SOPClassUID="1.2.840.10008.5.1.4.1.1.88.33", Modality="SR")
    dx = _bare(SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1", Modality="DX", Rows=4, Columns=4, SamplesPerPixel=1)
    rgb = _bare(SOPClassUID="1.2.840.10008.5.1.4.1.1.7", Modality="OT", Rows=4, Columns=4, SamplesPerPixel=3)
    for name, ds in (("sr", sr), ("dx", dx), ("rgb", rgb)):
        ds.save_as(tmp_path / name, enforce_file_format=True)
    reasons = {
        Path(h["path"]).name: h["reason"]
        for h in read_header_batch([(str(tmp_path / n), -1, -1) for n in ("sr", "dx", "rgb")], SECRET)
    }
    assert reasons == {"sr": "unsupported_object", "dx": "no_geometry", "rgb": "color_image"}


def test_dicom_without_preamble_is_still_read(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=1)
    path = tmp_path / "raw"
    ds = dss[0]
    del ds.file_meta  # raw dataset: no preamble, no "DICM", no group 0002
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[:2] == b"\x08\x00"
    h = read_header(path, SECRET)
    assert h["status"] == "ok", h
    assert h["kind"] == "image"
