from pathlib import Path

import pytest

from medseg.config_loader import ConfigError, dump_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "default.yaml", "cpu.yaml"])
def test_shipped_configs_validate_and_round_trip(name: str, tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / name)
    (tmp_path / "again.yaml").write_text(dump_config(cfg, reveal_key=True))  # a file its owner keeps
    assert load_config(tmp_path / "again.yaml") == cfg
    if cfg.ingest.deid_secret is not None:  # the shown dump never holds the key
        assert cfg.ingest.deid_secret.get_secret_value() not in dump_config(cfg)


@pytest.mark.parametrize(
    ("override", "field"),
    [("train.max_epochs=zero", "train.max_epochs"), ("train.typo=1", "train.typo"),
     ("infer.overlap=1.5", "infer.overlap"), ("train.models=[cnn, vae]", "train.models.1")],
)
def test_invalid_value_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "demo.yaml", [override])
    assert f"field '{field}'" in str(err.value)
    assert "\n" not in str(err.value)
