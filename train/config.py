"""Training configuration: YAML presets shipped with the package, a user file, ``--set`` overrides.

A config is a nested dict. ``reference.yaml`` defines every key and its default; other files name
a ``base`` and override a subset. Any key not in the reference is an error naming the key, so a
typo never silently becomes a default.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

PRESETS_DIR = Path(__file__).parent / "configs"
PRESETS = tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file or key."""


def _read(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if not path.is_file():
        preset = PRESETS_DIR / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(f"{name_or_path}: no such config file or preset (presets: {', '.join(PRESETS)})")
        path = preset
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data, str(path)


def _merge(base: dict, override: dict, schema: dict, where: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(f"{where}: unknown config key {dotted!r}")
        if isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {dotted!r} must be a mapping")
            out[key] = _merge(out[key], value, schema[key], where, dotted + ".")
        else:
            out[key] = _typed(value, schema[key], where, dotted)
    return out


def _typed(value: Any, default: Any, where: str, key: str) -> Any:
    """Check a value against the type of its reference default. Numbers written like ``1e-4``
    (which YAML 1.1 reads as strings) are converted; anything else of the wrong type is an error."""
    if isinstance(default, bool) or default is None or value is None:
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}: {key!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"{where}: {key!r} must be a number, got {value!r}")
        if isinstance(default, int):
            if not float(number).is_integer():
                raise ConfigError(f"{where}: {key!r} must be an integer, got {value!r}")
            return int(number)
        return float(number)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: {key!r} must be a string, got {value!r}")
    if isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"{where}: {key!r} must be a list, got {value!r}")
    return value


def load_config(name_or_path: str = "reference", overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a preset name or YAML path (following ``base:``), then apply ``key.sub=value`` overrides."""
    schema, _ = _read("reference")
    chain = []
    current: str | None = name_or_path
    while current is not None:
        data, where = _read(current)
        chain.append((data, where))
        current = data.pop("base", None)
        if len(chain) > 8:
            raise ConfigError(f"{where}: 'base' chain too long (a cycle?)")
    config = schema
    for data, where in reversed(chain):
        config = _merge(config, data, schema, where)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        value = yaml.safe_load(text) if text else None
        nested: dict = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        config = _merge(config, nested, schema, "--set")
    return config


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
