"""Series assembly on header dicts: sorting, validation reasons, geometry convention."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medseg.ingest.stacks import Stack, assemble_series, frames_of, validate_stack
from medseg.io.reasons import Reason


def _header(
    path: str,
    sop: str,
    ipp: Any,
    iop: Any = (1, 0, 0, 0, 1, 0),
    series: str = "1.2.3",
    rows: int = 4,
    cols: int = 5,
    spacing: Any = (0.7, 0.9),
) -> dict[str, Any]:
    return {
        "path": path,
        "sop_uid": sop,
        "series_uid": series,
        "rows": rows,
        "cols": cols,
        "kind": "image",
        "modality": "CT",
        "description": "",
        "study_key": "study_x",
        "patient_key": "pat_x",
        "frames": [{"ipp": [float(v) for v in ipp], "iop": [float(v) for v in iop], "spacing": list(spacing)}],
    }


def _series(
    n: int,
    step: Any = (0, 0, 2.0),
    origin: Any = (1.0, 2.0, 3.0),
    folder: str = "/a",
    iop: Any = (1, 0, 0, 0, 1, 0),
    sop_prefix: str = "s",
) -> list[dict[str, Any]]:
    o = np.asarray(origin, float)
    return [_header(f"{folder}/f{k:02d}", f"{sop_prefix}{k}", o + k * np.asarray(step, float), iop) for k in range(n)]


def _one(headers: list[dict[str, Any]]) -> Stack:
    asm = assemble_series(headers)
    assert len(asm.stacks) == 1
    return asm.stacks[0]


def test_sorted_by_position_not_by_file_order() -> None:
    headers = _series(5)
    shuffled = [headers[i] for i in (3, 0, 4, 1, 2)]
    st = _one(shuffled)
    assert st.ok
    assert [f.path for f in st.frames] == [h["path"] for h in headers]
    g = st.geometry
    assert g is not None
    assert g.spacing == pytest.approx((2.0, 0.7, 0.9))
    assert g.origin == pytest.approx((1.0, 2.0, 3.0))
    assert np.allclose(g.direction_matrix, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])


def test_descending_positions_still_give_first_slice_at_origin() -> None:
    headers = _series(4, step=(0, 0, -3.0), origin=(0, 0, 50))
    st = _one(headers)
    g = st.geometry
    assert g is not None
    assert g.origin == pytest.approx((0.0, 0.0, 41.0))  # lowest position along the normal
    assert g.direction_matrix[:, 0] == pytest.approx([0, 0, 1])


def test_oblique_geometry_maps_every_slice_position() -> None:
    a = np.radians(20)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([0.0, 0.0, -1.0])  # coronal-ish, rotated
    normal = np.cross(row, col)
    headers = _series(6, step=2.5 * normal, iop=(*row, *col), origin=(5, -7, 11))
    st = _one(headers)
    g = st.geometry
    assert g is not None
    assert np.allclose(g.direction_matrix[:, 1], col) and np.allclose(g.direction_matrix[:, 2], row)
    for k, f in enumerate(st.frames):
        assert np.allclose(g.index_to_lps(np.array([k, 0, 0])), f.ipp, atol=1e-6)
    # a pixel (j, i) of slice k is at ipp + j * row_spacing * col + i * col_spacing * row
    assert np.allclose(g.index_to_lps(np.array([2, 3, 1])), st.frames[2].ipp + 3 * 0.7 * col + 1 * 0.9 * row)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (_series(2), Reason.TOO_FEW_SLICES),
        ([h for i, h in enumerate(_series(6)) if i != 3], Reason.SLICE_GAP),
        (_series(4, step=(0, 0.5, 2.0)), Reason.GANTRY_TILT),
        (_series(3) + [_header("/a/zz", "dup", (1.0, 2.0, 5.0))], Reason.DUPLICATE_POSITIONS),
    ],
    ids=["too_few", "gap", "tilt", "duplicate_positions"],
)
def test_invalid_stacks_are_rejected_with_reason(headers: list[dict[str, Any]], reason: Reason) -> None:
    st = _one(headers)
    assert not st.ok
    assert st.reason == reason
    assert headers[0]["path"].rsplit("/", 1)[0] in st.message  # message names the files


def test_slightly_varying_orientation_inside_a_stack_is_inconsistent() -> None:
    headers = _series(4)
    headers[2]["frames"][0]["iop"] = [
        1,
        0,
        0,
        0,
        0.9995,
        0.0316,
    ]  # 1.8 degrees off: same group, not same stack
    st = _one(headers)
    assert st.reason == Reason.INCONSISTENT_ORIENTATION


def test_mixed_orientations_split_and_small_fragments_are_inconsistent_orientation() -> None:
    axial = _series(5)
    sagittal = _series(2, step=(2.0, 0, 0), iop=(0, 1, 0, 0, 0, -1), sop_prefix="sag", folder="/b")
    asm = assemble_series(axial + sagittal)
    assert len(asm.stacks) == 2
    ok = [s for s in asm.stacks if s.ok]
    bad = [s for s in asm.stacks if not s.ok]
    assert len(ok) == 1 and len(ok[0].frames) == 5 and ok[0].stack_key  # split series -> keyed stack
    assert bad[0].reason == Reason.INCONSISTENT_ORIENTATION


def test_same_sop_in_two_folders_is_deduplicated_and_complete_copy_kept() -> None:
    full = _series(4, folder="/full")
    fragment = [dict(h, path=h["path"].replace("/full", "/frag")) for h in full[:2]]
    asm = assemble_series(full + fragment)
    assert len(asm.stacks) == 1 and asm.stacks[0].ok
    assert all(f.path.startswith("/full") for f in asm.stacks[0].frames)
    assert sorted(d for d, _ in asm.duplicate_files) == sorted(h["path"] for h in fragment)


def test_copies_with_new_sop_uids_in_other_folders_are_split_not_merged() -> None:
    a = _series(4, folder="/x/j2k", sop_prefix="a")
    b = _series(4, folder="/x/rle", sop_prefix="b")
    asm = assemble_series(a + b)
    assert len(asm.stacks) == 2
    kept = [s for s in asm.stacks if s.ok]
    dup = [s for s in asm.stacks if not s.ok]
    assert len(kept) == 1 and len(kept[0].frames) == 4
    assert dup[0].reason == Reason.DUPLICATE_SERIES
    assert kept[0].stack_key != dup[0].stack_key


def test_validate_stack_needs_collinear_positions() -> None:
    headers = _series(5)
    headers[2]["frames"][0]["ipp"][0] += 0.5  # shifted sideways by more than 0.1 pixel
    frames = [f for h in headers for f in frames_of(h)]
    with pytest.raises(Exception) as exc:
        validate_stack(frames)
    assert getattr(exc.value, "reason", None) == Reason.IRREGULAR_POSITIONS
