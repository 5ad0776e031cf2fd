"""Training configuration: YAML presets shipped with the package, a user file, ``--set`` overrides.

A config is a nested dict. ``reference.yaml`` defines every key and its default; other files name
a ``base`` and override a subset. Any key not in the reference is an error naming the key, so a
typo never silently becomes a default; a number outside its range (``RANGES``) is an error too, so
no zero or negative value reaches a division, a modulo or an index hours into a run; so is a name
that is not one of its option's values (``choices``: a misspelt ``eval.reweight`` would otherwise
stop the run at its first validation), and a list of another length than the reference's.
"""
from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import yaml

from runtime.classes import MAX_WEIGHTS_STD, NUM_CLASSES, REWEIGHTS
from runtime.errors import DannetError

PRESETS_DIR = Path(__file__).parent / "configs"
PRESETS = tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))


class ConfigError(DannetError, ValueError):
    """A config that cannot be used; the message names the file or key."""


#: dotted key -> (low, high, low excluded) for every number a run divides by, counts with or indexes with;
#: high None: no upper bound. Lists (crop, scale) have the range per element.
RANGES: dict[str, tuple[float, float | None, bool]] = {
    "model.light_channels": (1, None, False), "model.aspp_branches": (1, 4, False),
    "model.frozen_stages": (0, 4, False),  # train.models.trunk.STAGES (not imported: it would import torch)
    "data.source.crop": (8, None, False), "data.source.scale": (0, 4, True),
    "data.target.crop": (8, None, False), "data.target.scale": (0, 4, True), "data.target.resize_to": (8, None, False),
    "data.val.scale": (0, 4, True), "data.val.max_images": (1, None, False), "data.workers": (0, 256, False),
    "optim.iterations": (1, None, False), "optim.batch_size": (1, None, False), "optim.lr": (0, None, True),
    "optim.momentum": (0, 1, False), "optim.weight_decay": (0, None, False), "optim.power": (0, None, False),
    "optim.lr_d": (0, None, True), "optim.betas_d": (0, 1, False),
    "loss.weights_std": (0, MAX_WEIGHTS_STD, False), "loss.exposure_patch": (1, None, False),
    "loss.focal_gamma": (0, None, False), "eval.weights_std": (0, MAX_WEIGHTS_STD, False),
    "pretrain.iterations": (1, None, False), "pretrain.lr": (0, None, True), "pretrain.aux": (0, None, False),
    "run.seed": (0, None, False), "run.log_every": (1, None, False), "run.val_every": (0, None, False),
    "run.checkpoint_every": (1, None, False), "run.keep_last": (1, None, False),
    "run.time_limit_min": (0, None, True),
}

#: keys that may be null although the reference sets them: null means no resize (the paper) or no validation.
#: Null is allowed where the reference itself is null, and nowhere else (``--set optim.lr=`` is null).
NULLABLE = frozenset({"data.target.resize_to", "data.val.dataset", "pretrain.val_dataset"})


@functools.cache
def choices() -> dict[str, tuple[str, ...]]:
    """Dotted key -> the names its option takes, as the code that implements the option names them.
    Imported here, when a config is checked, rather than at the top: those modules import torch and
    the networks (``dannet-train --help`` reads the presets without them), and ``train.dannet`` and
    ``train.factory`` import this module."""
    from . import losses
    from .dannet import TARGET_RESOLUTIONS
    from .data import LABELLED_DATASETS
    from .engine import AMPS
    from .factory import OPTIMIZERS, SOURCE_DATASETS
    from .models import BACKBONES, SEGMENTERS

    return {
        "model.arch": tuple(SEGMENTERS), "model.backbone": tuple(BACKBONES),
        "data.source.dataset": SOURCE_DATASETS, "data.val.dataset": LABELLED_DATASETS,
        "optim.optimizer": OPTIMIZERS,
        "loss.exposure_target": losses.EXPOSURE_TARGETS, "loss.exposure_norm": losses.EXPOSURE_NORMS,
        "loss.tv_norm": losses.TV_NORMS, "loss.seg_norm": losses.SEG_NORMS,
        "loss.pseudo_label": losses.PSEUDO_LABELS, "loss.static_probs": losses.STATIC_PROBS,
        "loss.static_neighbourhood": losses.STATIC_NEIGHBOURHOODS, "loss.target_resolution": TARGET_RESOLUTIONS,
        "eval.reweight": REWEIGHTS, "pretrain.val_dataset": LABELLED_DATASETS, "run.amp": AMPS,
    }


#: ``data.source.class_proportions`` by name: the paper's Cityscapes table, or counted on the run's source labels
PROPORTION_NAMES = ("cityscapes", "measured")


def _class_proportions(value: Any, where: str, key: str) -> Any:
    """A name (``PROPORTION_NAMES``) or the numbers themselves: one positive proportion per class, which is how
    a run records ``measured`` once it has counted them (a list of floats, not the reference's string)."""
    if isinstance(value, str) and value in PROPORTION_NAMES:
        return value
    if isinstance(value, list):  # YAML 1.1 reads numbers written like 1e-3 as strings
        value = [_float_or_text(v) for v in value]
    if (isinstance(value, list) and len(value) == NUM_CLASSES
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                    for v in value)):
        return [float(v) for v in value]
    raise ConfigError(f"{where}: {key!r} must be one of {', '.join(PROPORTION_NAMES)} or a list of {NUM_CLASSES} "
                      f"positive class proportions, got {value!r}")


def _float_or_text(value: Any) -> Any:
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


#: keys checked by a rule of their own instead of the reference default's type
OWN_RULES = {"data.source.class_proportions": _class_proportions}


def _read(name_or_path: str, referrer: str | None = None) -> tuple[dict, str]:
    """A config file's mapping and its path. ``referrer``: the file whose ``base:`` names this one, which a
    relative path is read beside (as an include is), and which an error names."""
    path = Path(name_or_path).expanduser()
    if referrer is not None and not path.is_absolute():
        path = Path(referrer).parent / path
    if not path.is_file():
        preset = PRESETS_DIR / f"{name_or_path}.yaml"
        if not preset.is_file():
            named = f"{referrer}: base {name_or_path!r}" if referrer is not None else name_or_path
            raise ConfigError(f"{named}: no such config file or preset (presets: {', '.join(PRESETS)})")
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
        elif dotted in OWN_RULES:
            out[key] = OWN_RULES[dotted](value, where, dotted)
        else:
            out[key] = _one_of(_in_range(_typed(value, schema[key], where, dotted), where, dotted), where, dotted)
    return out


def _one_of(value: Any, where: str, key: str) -> Any:
    allowed = choices().get(key)
    if allowed is None or value is None or value in allowed:  # null: decided by _typed
        return value
    raise ConfigError(f"{where}: {key!r} must be one of {', '.join(allowed)}{' or null' if key in NULLABLE else ''}, "
                      f"got {value!r}")


def _in_range(value: Any, where: str, key: str) -> Any:
    if key not in RANGES or value is None:
        return value
    low, high, low_open = RANGES[key]
    for number in value if isinstance(value, list) else [value]:
        ok = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number) and \
            (number > low if low_open else number >= low) and (high is None or number <= high)
        if not ok:
            bounds = f"{'>' if low_open else '>='} {low}" if high is None else \
                f"in {'(' if low_open else '['}{low}, {high}]"
            raise ConfigError(f"{where}: {key!r} must be a number {bounds}, got {value!r}")
    return value


def _typed(value: Any, default: Any, where: str, key: str) -> Any:
    """Check a value against the type of its reference default. Numbers written like ``1e-4``
    (which YAML 1.1 reads as strings) are converted, also for numeric keys whose default is null
    (``run.time_limit_min``); anything else of the wrong type is an error, and so is null where neither the
    reference nor ``NULLABLE`` allows it."""
    if value is None:
        if default is None or key in NULLABLE:
            return None
        raise ConfigError(f"{where}: {key!r} must not be null (the reference sets {default!r})")
    if default is None and key in RANGES and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # the range check names it
    if isinstance(default, bool) or default is None:
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
    if isinstance(default, list):
        # every list of the reference is a fixed-size tuple of numbers: crop (H, W), scale (low, high), betas
        if not isinstance(value, list) or len(value) != len(default):
            raise ConfigError(f"{where}: {key!r} must be a list of {len(default)} values like {default}, got {value!r}")
        return [_typed(item, item_default, where, key) for item, item_default in zip(value, default)]
    return value


def load_config(name_or_path: str = "reference", overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a preset name or YAML path (following ``base:``), then apply ``key.sub=value`` overrides."""
    schema, _ = _read("reference")
    chain = []
    current: str | None = name_or_path
    referrer: str | None = None
    while current is not None:
        data, where = _read(current, referrer)
        chain.append((data, where))
        current, referrer = data.pop("base", None), where
        if current is not None and not isinstance(current, str):
            raise ConfigError(f"{where}: 'base' must be a preset name or a YAML path, got {current!r}")
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
