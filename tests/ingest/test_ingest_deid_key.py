"""De-identification key: no shared default, a workspace key file, and a key that never shows in dumps."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from dicom_factory import ct_slices, write
from pydantic import ValidationError

from medseg.config import IngestConfig, MedsegConfig
from medseg.config_loader import ConfigError, dump_config, load_config
from medseg.deid_key import KeyFileError, resolve_deid_key, workspace_key_file
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.workspace import Workspace


def _case_ids(ws: Workspace) -> list[str]:
    return [c.case_id for c in Catalog(ws.catalog_path).cases()]


def test_without_a_key_each_workspace_gets_its_own_random_key_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(ct_slices(n=3, seed=1)[0], tmp_path / "src")
    a, b = Workspace.at(tmp_path / "a"), Workspace.at(tmp_path / "b")
    with caplog.at_level(logging.WARNING, logger="medseg.deid_key"):
        ingest([tmp_path / "src"], a, IngestConfig())
        ingest([tmp_path / "src"], a, IngestConfig())
    created = [r for r in caplog.records if "created the workspace's own random key" in r.getMessage()]
    assert len(created) == 1 and str(workspace_key_file(a)) in created[0].getMessage()  # named once
    key_file = workspace_key_file(a)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) == 64
    ingest([tmp_path / "src"], b, IngestConfig())
    assert _case_ids(a) and _case_ids(a) != _case_ids(b)  # no shared default key
    assert key_file.read_text() != workspace_key_file(b).read_text()
    assert resolve_deid_key(IngestConfig(), a) == key_file.read_text().strip()  # reused, not replaced


def test_a_configured_key_or_key_file_wins_and_no_workspace_key_is_made(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    assert resolve_deid_key(IngestConfig(deid_secret="given-secret-1"), ws) == "given-secret-1"
    (tmp_path / "k").write_text("from-a-key-file\n")
    assert resolve_deid_key(IngestConfig(deid_key_file=tmp_path / "k"), ws) == "from-a-key-file"
    assert not workspace_key_file(ws).exists()
    with pytest.raises(KeyFileError, match="cannot be read"):
        resolve_deid_key(IngestConfig(deid_key_file=tmp_path / "missing"), ws)


def test_the_key_never_shows_in_dumps_and_a_dump_is_never_taken_for_a_key(tmp_path: Path) -> None:
    cfg = MedsegConfig(ingest=IngestConfig(deid_secret="MARKER-key-4711"))
    for text in (cfg.model_dump_json(), str(cfg.model_dump(mode="json")), repr(cfg), dump_config(cfg)):
        assert "MARKER-key-4711" not in text
    assert cfg.ingest.deid_secret is not None and cfg.ingest.deid_secret.get_secret_value() == "MARKER-key-4711"
    with pytest.raises(ValidationError, match="redacted placeholder"):
        MedsegConfig.model_validate(cfg.model_dump(mode="json"))
    with pytest.raises(ConfigError) as err:
        load_config(None, ["ingest.deid_secret=short"])
    assert "short" not in str(err.value).replace("at least", "")  # a bad key is not echoed
