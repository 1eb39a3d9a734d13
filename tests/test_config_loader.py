"""medseg.config_loader: YAML files and --set overrides to a config, one-line errors naming the field."""

from pathlib import Path

import pytest

from medseg.config import ModelFamily
from medseg.config_loader import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_overrides_are_typed() -> None:
    cfg = load_config(CONFIGS / "demo.yaml", ["train.max_epochs=7", "dask.address=tcp://127.0.0.1:8786",
                                              "train.models=[cnn]", "preprocess.target_spacing=[3, 1.5, 1.5]"])
    assert cfg.train.max_epochs == 7
    assert cfg.dask.address == "tcp://127.0.0.1:8786"
    assert cfg.train.models == [ModelFamily.CNN]
    assert cfg.preprocess.target_spacing == (3.0, 1.5, 1.5)


def test_bad_file_and_bad_override_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.max_epochs"])


@pytest.mark.parametrize(("yaml_text", "overrides", "expected"), [
    ("train:\n  max_epoch: 3\n", [], "field 'train.max_epoch': unknown key; did you mean 'train.max_epochs'?"),
    ("", ["trian.max_epochs=3"], "with --set trian.max_epochs=3: field 'trian': unknown key; did you mean 'train'?"),
    ("", ["train.gan.warmup_epoch=1"], "did you mean 'train.gan.warmup_epochs'?"),
    ("", ["dask.zzzz=1"], "field 'dask.zzzz': unknown key; valid keys in dask: address, n_workers"),
])
def test_misspelt_keys_get_a_suggestion(tmp_path: Path, yaml_text: str, overrides: list[str], expected: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML \(line 2, column 1\): expected ','") as err:
        load_config(path)
    assert "\n" not in str(err.value)
