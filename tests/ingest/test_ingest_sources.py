"""The source walk shared by the ingest scan and the stage key: link loops, single-file sources,
non-UTF-8 names, entries that are not regular files, and files that could not be read once."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicom_factory import ct_slices, write

import medseg.io.dicom.read as headers_mod
import medseg.stages.ingest as ingest_stage
from medseg.config import IngestConfig, MedsegConfig
from medseg.ingest.file_index import scan_sources
from medseg.ingest.run import ingest
from medseg.ingest.source_walk import SourceProblem, walk_sources
from medseg.io.catalog import Catalog
from medseg.stages.ingest import run_ingest_stage, source_listing_key
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="test-secret-123", files_per_batch=3)


def _reasons(ws: Workspace) -> dict[str, str]:
    return {q["path"]: q["reason"] for q in Catalog(ws.catalog_path).quarantine()}


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingest stage without a LocalCluster (ingest runs in this process)."""

    @contextlib.contextmanager
    def none(*_a: object, **_k: object) -> Iterator[None]:
        yield None

    monkeypatch.setattr(ingest_stage, "dask_client", none)


@pytest.mark.timeout(30)
def test_symlink_loops_terminate_in_the_scan_and_the_stage_key(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(ct_slices(n=3, seed=1)[0], src / "ct")
    (src / "a").symlink_to(".")
    (src / "b").symlink_to(".")
    (src / "ct" / "up").symlink_to("..")
    listed = list(scan_sources([src]))
    assert sorted(Path(p).name for p, _, _ in listed) == sorted(p.name for p in (src / "ct").iterdir() if p.is_file())
    key = source_listing_key([src])  # the old stage walk followed a -> . forever
    assert key == source_listing_key([src])
    (src / "ct" / "new").write_bytes(b"x")
    assert source_listing_key([src]) != key


def test_a_changed_single_file_source_changes_the_stage_key(tmp_path: Path) -> None:
    (path,) = write(ct_slices(n=1, seed=1)[0], tmp_path / "src")
    key = source_listing_key([path])
    assert list(walk_sources([path])) == list(scan_sources([path]))
    assert len(list(walk_sources([path]))) == 1
    os.utime(path, ns=(1, 1))
    assert source_listing_key([path]) != key


def test_a_changed_single_file_source_is_ingested_again(tmp_path: Path, no_cluster: None) -> None:
    (path,) = write(ct_slices(n=1, seed=1)[0], tmp_path / "src")
    cfg = MedsegConfig(workspace=tmp_path / "ws", sources=[path], ingest=CFG)
    first = run_ingest_stage(cfg)
    assert not first.skipped and first.stats["files_indexed"] == 1
    assert run_ingest_stage(cfg).skipped
    path.write_bytes(b"not dicom any more")
    again = run_ingest_stage(cfg)
    assert not again.skipped and again.stats["files_indexed"] == 1
    assert _reasons(Workspace.at(cfg.workspace)) == {str(path.resolve()): "not_dicom"}


def test_a_non_utf8_file_name_is_quarantined_and_the_rest_ingested(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dss, _ = ct_slices(n=4, seed=2)
    write(dss, src / "ct")
    bad = os.fsencode(src / "ct") + b"/caf\xe9.dcm"
    with open(bad, "wb") as fh:
        fh.write(b"latin-1 name")
    (src / "d\udce9j\udce0").mkdir()  # a folder with a Latin-1 name
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([src], ws, CFG)
    assert (summary.files_seen, summary.cases) == (4, 1)
    cat = Catalog(ws.catalog_path)
    assert [c.shape for c in cat.cases()] == [(4, 8, 10)]
    shown = str(src.resolve() / "ct") + "/caf\\xe9.dcm"
    assert _reasons(ws) == {shown: "bad_file_name", str(src.resolve()) + "/d\\xe9j\\xe0": "bad_file_name"}
    assert "rename" in {q["path"]: q["message"] for q in cat.quarantine()}[shown]
    assert ingest([src], ws, CFG).files_indexed == 0  # a rerun is quiet and reports the same


def test_fifos_devices_dangling_links_and_unlistable_folders_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write(ct_slices(n=3, seed=3)[0], src / "ct")
    os.mkfifo(src / "pipe")
    (src / "zero").symlink_to("/dev/zero")
    (src / "gone").symlink_to(src / "nowhere")
    (src / "locked").mkdir()
    (src / "locked" / "x.dcm").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:  # root reads any folder: deny this one as for a normal user
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", scandir)
    problems: list[SourceProblem] = []
    files = list(walk_sources([src], problems))
    assert len(files) == 3
    root = src.resolve()
    assert {(p.path, p.reason.value) for p in problems} == {
        (f"{root}/pipe", "special_file"),
        (f"{root}/zero", "special_file"),
        (f"{root}/gone", "dangling_link"),
        (f"{root}/locked", "unreadable_path"),
    }
    ws = Workspace.at(tmp_path / "ws")
    assert ingest([src], ws, CFG).cases == 1  # a FIFO would block the reader, /dev/zero never ends
    assert {p: r for p, r in _reasons(ws).items() if not p.startswith(f"{root}/ct")} == {
        f"{root}/pipe": "special_file",
        f"{root}/zero": "special_file",
        f"{root}/gone": "dangling_link",
        f"{root}/locked": "unreadable_path",
    }


def _deny(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Reading ``path`` fails with EACCES (as for a file without read permission; tests run as root)."""
    real = headers_mod.scan_file

    def scan_file(p: str) -> object:
        if Path(p) == path:
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return real(p)

    monkeypatch.setattr(headers_mod, "scan_file", scan_file)


def test_a_file_unreadable_once_is_read_again_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_cluster: None
) -> None:
    src = tmp_path / "src"
    dss, _ = ct_slices(n=4, seed=4)
    paths = write(dss, src, names=[f"s{i}" for i in range(4)])
    cfg = MedsegConfig(workspace=tmp_path / "ws", sources=[src], ingest=CFG)
    ws = Workspace.at(cfg.workspace)
    with monkeypatch.context() as m:
        _deny(m, paths[3].resolve())
        run_ingest_stage(cfg)
    assert _reasons(ws) == {str(paths[3].resolve()): "io_error"}
    assert [c.shape[0] for c in Catalog(ws.catalog_path).cases()] == [3]
    again = run_ingest_stage(cfg)  # the listing is unchanged, but the failed file is read again
    assert not again.skipped and again.stats["files_indexed"] == 1
    assert _reasons(ws) == {}
    assert [c.shape[0] for c in Catalog(ws.catalog_path).cases()] == [4]
    assert run_ingest_stage(cfg).skipped
