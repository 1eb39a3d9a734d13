"""Detached NRRD headers: the data file must lie inside the ingest sources and be a regular file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="test-secret-123", files_per_batch=4)
SHAPE = (4, 5, 3)  # NRRD sizes (x, y, z)


def _nhdr(path: Path, data_file: str) -> None:
    path.write_text(
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {' '.join(map(str, SHAPE))}\nspace directions: (1,0,0) (0,1,0) (0,0,2)\n"
        f"space origin: (0,0,0)\nencoding: raw\nendian: little\ndata file: {data_file}\n"
    )


def test_data_files_outside_the_source_or_not_regular_are_quarantined(tmp_path: Path) -> None:
    voxels = np.arange(np.prod(SHAPE), dtype="<i2").tobytes()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.raw").write_bytes(voxels)
    src = tmp_path / "src"
    (src / "raw").mkdir(parents=True)
    (src / "raw" / "ok.raw").write_bytes(voxels)
    (src / "raw" / "zero.raw").symlink_to("/dev/zero")
    (src / "raw" / "away.raw").symlink_to(tmp_path / "outside" / "secret.raw")
    _nhdr(src / "good.nhdr", "raw/ok.raw")
    _nhdr(src / "relative.nhdr", "../outside/secret.raw")
    _nhdr(src / "absolute.nhdr", str(tmp_path / "outside" / "secret.raw"))
    _nhdr(src / "device.nhdr", "/dev/zero")
    _nhdr(src / "linked_device.nhdr", "raw/zero.raw")
    _nhdr(src / "linked_out.nhdr", "raw/away.raw")
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([src], ws, CFG)
    cat = Catalog(ws.catalog_path)
    assert [c.series_uid.rsplit("/", 1)[-1] for c in cat.cases()] == ["good.nhdr"]
    assert summary.cases == 1
    reasons = {Path(q["path"]).name: q["reason"] for q in cat.quarantine() if q["path"].endswith(".nhdr")}
    assert reasons == {n: "external_data" for n in ("relative.nhdr", "absolute.nhdr", "device.nhdr",
                                                      "linked_device.nhdr", "linked_out.nhdr")}
    messages = " ".join(q["message"] for q in cat.quarantine())
    assert "outside the ingest sources" in messages and "not a regular file" in messages
