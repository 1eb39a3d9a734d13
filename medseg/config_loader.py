"""Load a :class:`MedsegConfig` from YAML plus ``key=value`` overrides, with one-line errors."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from medseg.config import MedsegConfig


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field and the fix."""


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"a.b=value"``; the value is parsed as YAML (numbers, lists, null, strings)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.max_epochs=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def _section_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys valid in the section holding ``loc`` (``("train", "max_epoch")`` → the fields of ``train``)."""
    model: type[BaseModel] = MedsegConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        sections = [t for t in (field.annotation, *get_args(field.annotation))
                    if isinstance(t, type) and issubclass(t, BaseModel)]
        if not sections:
            return []
        model = sections[0]
    return list(model.model_fields)


def unknown_key_hint(loc: tuple[int | str, ...]) -> str:
    """``"did you mean 'train.max_epochs'?"`` for a misspelt key (difflib), else the section's valid keys."""
    prefix = "".join(f"{p}." for p in loc[:-1])
    known = _section_keys(loc)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{prefix}{close[0]}'?"
    return f"valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(known)}" if known else ""


def _related(key: str, field: str) -> bool:
    """``key`` (of a ``--set``) is ``field``, inside it or holds it."""
    return f"{key}.".startswith(f"{field}.") or field.startswith(f"{key}.")


def _format_error(err: ValidationError, origin: str, overrides: list[str]) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "<root>"
    got = first.get("input")
    secret = "secret" in field or "key" in field.rsplit(".", 1)[-1]  # never echo a (bad) key
    got_text = "" if isinstance(got, dict) or secret else f" (got {got!r})"
    more = f" [+{err.error_count() - 1} more]" if err.error_count() > 1 else ""
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        hint = unknown_key_hint(first["loc"])
        msg, got_text = "unknown key" + (f"; {hint}" if hint else ""), ""
    set_by = [item for item in overrides if _related(parse_override(item)[0], field)]
    if set_by:
        shown = f"{parse_override(set_by[-1])[0]}=**********" if secret else set_by[-1]  # never echo a key
        origin = f"{origin} with --set {shown}"
    return f"invalid config {origin}: field '{field}': {msg}{got_text}{more}"


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> MedsegConfig:
    """Read ``path`` (YAML) if given, apply ``overrides`` and validate.

    Relative ``workspace`` and ``sources`` paths stay relative to the current directory.

    Raises:
        ConfigError: unreadable file, bad YAML or a field that fails validation.
    """
    data: dict[str, Any] = {}
    origin = "(defaults)"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(data, key, value)
    try:
        return MedsegConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin, list(overrides or []))) from None


def config_dict(cfg: MedsegConfig, reveal_key: bool = False) -> dict[str, Any]:
    """The config as a JSON dict with its source folders; ``ingest.deid_secret`` shows as ``'**********'``
    unless ``reveal_key`` (only for writing a config file its owner keeps, never for logs, reports or
    Prefect). A plain ``model_dump(mode="json")``, as Prefect makes it, hides the sources as well."""
    data = cfg.model_dump(mode="json")
    data["sources"] = [str(p) for p in cfg.sources]
    if reveal_key and cfg.ingest.deid_secret is not None:
        data["ingest"]["deid_secret"] = cfg.ingest.deid_secret.get_secret_value()
    return data


def dump_config(cfg: MedsegConfig, reveal_key: bool = False) -> str:
    """YAML text of a config; it round-trips through :func:`load_config` when it has no key or ``reveal_key``
    (otherwise the key shows as ``'**********'``, which :func:`load_config` rejects)."""
    return yaml.safe_dump(config_dict(cfg, reveal_key), sort_keys=False)
