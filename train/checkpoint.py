"""Reading and writing checkpoints: the DANNet authors' released files and our own training format.

Released files (``dannet_psp.pth``, ``dannet_light.pth``, ``pretrain_psp_150000.pth`` ...) are plain
state dicts of one network, optionally with a ``module.`` prefix from DataParallel. Our format is
one file holding every network of a run (by role: ``segmenter``, ``light``, ``disc_day``,
``disc_night``), the optimisers, the iteration, the config and RNG state, and a format version.

Loading always uses ``weights_only=True``: a checkpoint is data, never code. Every failure is a
``CheckpointError`` whose message is one line naming the file and the problem. Writing is atomic
(``runtime.atomic``): a failure while saving leaves the previous file as it was.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from runtime.atomic import atomic_file
from runtime.errors import DannetError

FORMAT_NAME = "dannet-edge"
FORMAT_VERSION = 1
#: how many key names an error message lists before summarising the rest
_KEYS_SHOWN = 4
#: how every file torch.save writes begins: a zip archive (torch >= 1.6), or a pickle (protocol >= 2)
_TORCH_SIGNATURES = (b"PK\x03\x04", b"\x80")


class CheckpointError(DannetError, RuntimeError):
    """A checkpoint that cannot be used; the message is one line naming the file and the reason."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds, whichever format it came in."""

    path: Path
    models: dict[str, dict[str, torch.Tensor]]
    arch: str | None = None
    released: bool = False
    optimizers: dict[str, Any] = field(default_factory=dict)
    iteration: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove the ``module.`` prefix that (Distributed)DataParallel adds to every key."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def detect_role(state_dict: Mapping[str, Any]) -> tuple[str, str | None]:
    """Which network a released state dict belongs to: ``(role, arch)`` from its key names."""
    keys = state_dict.keys()
    if any(k.startswith("head.0.stages.") for k in keys):
        return "segmenter", "pspnet"
    if any(k.startswith("layer6.conv2d_list.") for k in keys):
        return "segmenter", "deeplab"
    if "clf_conv.weight" in keys:
        return "segmenter", "refinenet"
    if any(k.startswith("model.") for k in keys):
        return "light", None
    if "classifier.weight" in keys and "conv4.weight" in keys:
        return "discriminator", None
    return "unknown", None


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder; expected a checkpoint file (a run's checkpoints are "
                              f"{path / 'final.pth'}, best.pth and checkpoints/checkpoint_*.pth)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(_TORCH_SIGNATURES):
        # text, an image, an ONNX graph renamed .pth: torch.load would fail with a KeyError or IndexError
        kind = "an empty file" if not head else f"a file starting with {head!r}"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({kind}); expected a file written by torch.save")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects that would run code when unpickled "
            f"(only tensors and plain containers are loaded; weights_only=True): {first}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint of either format (see module docstring) without building any network."""
    path = Path(path)
    obj = _torch_load(path, map_location)
    if isinstance(obj, dict) and obj.get("format") == FORMAT_NAME:
        version = obj.get("version")
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {version}, this tool reads {FORMAT_VERSION}")
        return Checkpoint(path=path, models=obj["models"], arch=obj.get("arch"), optimizers=obj.get("optimizers", {}),
                          iteration=int(obj.get("iteration", 0)), config=obj.get("config", {}),
                          extra=obj.get("extra", {}))
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # some released files wrap the state dict
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: neither a {FORMAT_NAME} checkpoint nor a state dict of tensors")
    state_dict = strip_module_prefix(obj)
    role, arch = detect_role(state_dict)
    if role == "unknown":
        raise CheckpointError(f"{path}: a state dict of no known DANNet network (first keys: "
                              f"{', '.join(list(state_dict)[:_KEYS_SHOWN])})")
    return Checkpoint(path=path, models={role: state_dict}, arch=arch, released=True)


def check_against_flags(ckpt: Checkpoint, arch: str | None = None, backbone: str | None = None) -> None:
    """``--arch`` / ``--backbone`` that contradict what the file says about its network are an error naming
    both: obeying the flag would misread the weights, ignoring it would hide the mistake. The file's word
    is its recorded (or, for released files, recognised) architecture and the backbone in its config."""
    recorded = {"--arch": ckpt.arch, "--backbone": ckpt.config.get("model", {}).get("backbone")}
    for flag, given in (("--arch", arch), ("--backbone", backbone)):
        if given is not None and recorded[flag] is not None and given != recorded[flag]:
            raise CheckpointError(f"{ckpt.path}: holds a {recorded[flag]} network, but {flag} {given} was given; "
                                  f"drop {flag} (the file says) or give a {given} checkpoint")


def _summarise(keys: list[str]) -> str:
    shown = ", ".join(keys[:_KEYS_SHOWN])
    return shown + (f" and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else "")


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Load ``state_dict`` into ``module`` completely or not at all.

    Missing keys, unexpected keys and shape mismatches are all reported in one line naming
    ``source`` (the file), so a checkpoint for another architecture never loads partially.
    """
    state_dict = strip_module_prefix(state_dict)
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in state_dict and state_dict[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_summarise(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_summarise(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (file vs model: {_summarise(mismatched)})")
    if problems:
        raise CheckpointError(f"{source}: does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, then rename: never a half-written file."""
    with atomic_file(path) as f:
        torch.save(obj, f)
    return Path(path)


def save_checkpoint(path: str | os.PathLike, models: Mapping[str, nn.Module | Mapping[str, torch.Tensor]], *,
                    arch: str | None = None, optimizers: Mapping[str, Any] | None = None, iteration: int = 0,
                    config: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write our checkpoint format atomically.

    ``models`` maps roles to modules (or state dicts); DDP wrappers are unwrapped. ``optimizers``
    maps names to optimiser or scheduler objects (their ``state_dict()`` is stored). Everything
    stored is plain data so the file loads with ``weights_only=True``.
    """
    def state(obj: Any) -> Any:
        obj = getattr(obj, "module", obj)
        return obj.state_dict() if hasattr(obj, "state_dict") else dict(obj)

    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "arch": arch,
        "models": {role: state(m) for role, m in models.items()},
        "optimizers": {name: state(o) for name, o in (optimizers or {}).items()},
        "iteration": int(iteration),
        "config": dict(config or {}),
        "extra": dict(extra or {}),
    }
    return atomic_save(payload, path)
