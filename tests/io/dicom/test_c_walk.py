"""The compiled header walks (``medseg.io.dicom._walk``) give exactly what the pure-Python walks give.

Both run on every real file and on thousands of corrupted copies (bytes flipped, lengths broken,
files cut short): the scanned fields, the pixel offset and every decline must be the same.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicom_factory import ct_slices, write

from medseg.io.dicom import fast_walk, frame_groups
from medseg.io.dicom.seg_scan import scan_seg

REAL = ("dicom2nifti", "pydicom-data", "dicom-edge-cases", "tcia-brain-tumor-progression", "rt-utils", "dcmqi-seg")

_walk = pytest.importorskip("medseg.io.dicom._walk", reason="C header walk not compiled (no C compiler at install)")
walk = _walk.walk


@pytest.fixture
def python_walk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(fast_walk, "C_WALK", None)
    monkeypatch.setattr(fast_walk, "C_DATASET", None)
    yield


def _scans(path: str) -> tuple[Any, ...]:
    seg = scan_seg(path)
    seg_fields = None if seg is None else (seg.segments, seg.seg_type, seg.max_fractional, seg.table,
                                           seg.frames.tobytes())
    return fast_walk.scan_file(path), frame_groups.scan_frame_groups(path, 2), seg_fields


def _both(path: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    with monkeypatch.context() as m:
        m.setattr(fast_walk, "C_WALK", walk)
        m.setattr(fast_walk, "C_DATASET", _walk.dataset)
        compiled = _scans(path)
    with monkeypatch.context() as m:
        m.setattr(fast_walk, "C_WALK", None)
        m.setattr(fast_walk, "C_DATASET", None)
        python = _scans(path)
    return compiled, python


def test_fast_header_uses_the_compiled_walk() -> None:
    """Where the extension was built (this module is skipped otherwise), the header reader uses it."""
    assert fast_walk.C_WALK is walk and fast_walk.C_DATASET is _walk.dataset


def test_same_fields_on_every_real_file(real_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = sorted(p for d in REAL for p in (real_data / d).rglob("*") if p.is_file())
    scanned = 0
    for p in files:
        compiled, python = _both(str(p), monkeypatch)
        assert compiled == python, p
        scanned += compiled[0] is not None
    assert scanned > 300  # the walk really ran (not declined) on most files


def _corruptions(data: bytes, rng: random.Random, head: int = 4096) -> Iterator[bytes]:
    """Copies of ``data`` with its first ``head`` bytes damaged in the ways real archives are."""
    head = min(len(data), head)
    for _ in range(40):  # random bytes flipped in the header
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(128, head)] = rng.randrange(256)
        yield bytes(b)
    for _ in range(15):  # cut short (inside the header or inside a value)
        yield data[: rng.randrange(132, head)]
    for _ in range(15):  # a 4-byte run set to 0xFF (undefined / huge lengths)
        b = bytearray(data)
        i = rng.randrange(132, head - 4)
        b[i : i + 4] = b"\xff\xff\xff\xff"
        yield bytes(b)
    b = bytearray(data)  # non-ASCII text in a wanted value
    i = data.find(b"CT")
    if i > 0:
        b[i] = 0xC3
        yield bytes(b)


@pytest.mark.parametrize("implicit", [False, True])
def test_same_result_on_corrupted_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_data: Path,
                                        implicit: bool) -> None:
    dss, _ = ct_slices(n=1, rows=8, cols=8)
    if implicit:
        from pydicom.uid import ImplicitVRLittleEndian

        dss[0].file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dss[0].ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]  # a multi-valued (backslash) text value
    sources = write(dss, tmp_path / "src")
    # a SEG (functional groups: sequences of items), damaged anywhere before its pixel data
    seg = real_data / "highdicom-testfiles" / "seg_image_ct_binary.dcm"
    rng = random.Random(1234 + implicit)
    declined = accepted = seg_read = 0
    for src in [*sources, seg]:
        original = Path(src).read_bytes()
        for k, data in enumerate(_corruptions(original, rng, head=original.rfind(b"\xe0\x7f\x10\x00"))):
            path = tmp_path / f"bad-{k}.dcm"
            path.write_bytes(data)
            compiled, python = _both(str(path), monkeypatch)
            assert compiled == python, (src, k)
            declined += compiled[0] is None
            accepted += compiled[0] is not None
            seg_read += compiled[2] is not None
    assert declined > 10 and accepted > 10 and seg_read > 10  # every outcome was exercised


def test_stops_at_what_the_python_loop_must_take() -> None:
    """Direct calls: each stop leaves ``pos`` at the element it did not consume."""
    tags, us_tags, stop = fast_walk.TAGS, fast_walk.US_TAGS, fast_walk.STOP_TAGS

    def el(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
        return group.to_bytes(2, "little") + elem.to_bytes(2, "little") + vr + len(value).to_bytes(2, "little") + value

    modality = el(0x0008, 0x0060, b"CS", b"CT")
    image_type = el(0x0008, 0x0008, b"CS", b"A\\B \\\x00")
    rows = el(0x0028, 0x0010, b"US", (512).to_bytes(2, "little"))
    pixels = b"\xe0\x7f\x10\x00OW\x00\x00" + (8).to_bytes(4, "little") + bytes(8)
    fields: dict[str, Any] = {}
    buf = modality + image_type + rows + pixels
    assert walk(buf, 0, True, fields, tags, us_tags, stop) == (len(buf) - 20, True)
    assert fields == {"modality": "CT", "image_type": ["A", "B ", ""], "rows": 512,
                      "pixel_offset": len(buf) - 8, "pixel_length": 8}
    bad_us = el(0x0028, 0x0011, b"US", b"\x01\x02\x03\x04")
    for stop_at in (bad_us, el(0x0008, 0x0060, b"C1", b"CT"), el(0x0008, 0x0060, b"CS", b"\xc3\xa9"),
                    el(0x5200, 0x9230, b"SQ", b"")):  # bad US length, bad VR, non-ASCII, functional groups
        buf = modality + stop_at + bytes(16)
        assert walk(buf, 0, True, {}, tags, us_tags, stop) == (len(modality), False)
    # an element whose header is in the buffer but not its wanted value: stop before it
    description = el(0x0008, 0x103E, b"LO", b"a long series description")
    assert walk(modality + description[:14], 0, True, {}, tags, us_tags, stop) == (len(modality), False)


@pytest.mark.usefixtures("python_walk")
def test_python_walk_alone_still_reads_headers(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=2, rows=6, cols=7)
    paths = write(dss, tmp_path)
    assert fast_walk.C_WALK is None
    fields = fast_walk.scan_file(str(paths[0]))
    assert fields is not None and fields["rows"] == 6 and fields["cols"] == 7 and fields["pixel_offset"] > 132
