"""medseg.ops.params: the config of a flow run from a dict, a file and overrides (exactly one source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.config_loader import ConfigError
from medseg.ops.params import resolve_config


def test_resolve_config_from_dict_path_and_overrides(tmp_path: Path) -> None:
    cfg = resolve_config({"workspace": str(tmp_path)}, overrides=["ops.webhook_url=http://x/y", "train.max_epochs=3"])
    assert cfg.ops.webhook_url == "http://x/y" and cfg.train.max_epochs == 3
    path = tmp_path / "c.yaml"
    path.write_text("name: site\nops:\n  timezone: Europe/Berlin\n")
    cfg = resolve_config(config_path=str(path), overrides=["ops.bulk_files_per_task=7"])
    assert (cfg.name, cfg.ops.timezone, cfg.ops.bulk_files_per_task) == ("site", "Europe/Berlin", 7)


def test_resolve_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        resolve_config()
    with pytest.raises(ConfigError, match="ops.bulk_files_per_task"):
        resolve_config({"ops": {"bulk_files_per_task": 0}})
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(config_path="/nonexistent/medseg.yaml")
