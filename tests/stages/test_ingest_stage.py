"""medseg.stages.ingest: the configured sources are checked before the stage runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.stages.ingest import SourceNotFoundError, check_sources, source_listing_key


def test_check_sources_resolves_and_names_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert check_sources([tmp_path / "x" / ".." / "a"]) == [(tmp_path / "a").resolve()]
    with pytest.raises(SourceNotFoundError, match="no DICOM source given"):
        check_sources([])
    with pytest.raises(SourceNotFoundError, match="missing"):
        check_sources([tmp_path / "a", tmp_path / "missing"])


def test_source_listing_key_changes_when_a_file_arrives(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "one.dcm").write_bytes(b"1")
    key = source_listing_key([tmp_path / "src"])
    assert key == source_listing_key([tmp_path / "src"])
    (tmp_path / "src" / "two.dcm").write_bytes(b"2")
    assert source_listing_key([tmp_path / "src"]) != key


def test_settings_key_changes_with_channel_rules_only_when_there_are_some() -> None:
    from medseg.config import ChannelRule, IngestConfig
    from medseg.stages.ingest import settings_key

    plain = settings_key(IngestConfig(deid_secret="stage-secret"))
    assert "channels" not in plain  # the key of workspaces ingested before ingest.channels existed
    rules = settings_key(IngestConfig(deid_secret="stage-secret", channels=[ChannelRule(name="T1", match="T1")]))
    assert rules["channels"] == [{"name": "T1", "match": "T1", "exclude": None}]
    assert {k: v for k, v in rules.items() if k != "channels"} == plain
