"""Flow parameters → :class:`MedsegConfig`: every flow takes ``config`` (a :class:`MedsegConfig` or its
JSON dict), or ``config_path`` (a YAML file: deployments), with ``overrides`` (``key=value`` items),
and calls :func:`resolve_config` first.

A caller in the same process passes the :class:`MedsegConfig` itself: Prefect stores flow parameters
as JSON, where ``ingest.deid_secret`` shows as ``'**********'``, while the flow gets the real key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medseg.config import MedsegConfig
from medseg.config_loader import ConfigError, load_config


def resolve_config(config: MedsegConfig | dict[str, Any] | None = None, config_path: str | None = None,
                   overrides: list[str] | None = None) -> MedsegConfig:
    """The run's config: ``config`` (a JSON dict) or ``config_path`` (YAML) plus ``key=value`` overrides.

    Raises:
        ConfigError: neither or both given, or the values fail validation (one line naming the field).
    """
    if (config is None) == (config_path is None):
        raise ConfigError("pass exactly one of the flow parameters `config` (dict) or `config_path` (YAML file)")
    if config_path is not None:
        return load_config(Path(config_path), overrides)
    if isinstance(config, MedsegConfig) and not overrides:
        return config
    cfg_dict = dict(config or {})
    if overrides:
        from medseg.config_loader import parse_override, set_dotted

        for item in overrides:
            key, value = parse_override(item)
            set_dotted(cfg_dict, key, value)
    try:
        return MedsegConfig.model_validate(cfg_dict)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ConfigError(f"invalid config (flow parameter `config`): field '{field}': {first['msg']}") from exc
