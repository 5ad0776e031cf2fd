"""DANNet's networks: segmentation nets (PSPNet, DeepLab-v2, RefineNet), relighting net, discriminator.

Module names follow the reference implementation so the released checkpoints load unchanged. Besides
the reference's ResNets, PSPNet and DeepLab-v2 take an EfficientNet-Lite0 trunk (an edge backbone).
"""
from __future__ import annotations

from torch import nn

from .deeplab import DeepLabV2, DeepLabV2Lite
from .discriminator import Discriminator
from .efficientnet import EfficientNetLite
from .pspnet import PSPNet, PSPNetLite
from .refinenet import RefineNet
from .relight import RelightNet
from .resnet import BACKBONES as RESNETS

#: backbone name -> trunk family
BACKBONES: dict[str, str] = {**{name: "resnet" for name in RESNETS}, "efficientnet_lite0": "efficientnet"}

#: segmentation architecture -> (class per trunk family, output stride of its logits). RefineNet refines
#: layer1..layer4 at strides 4..32 with ResNet's channel widths: it has no EfficientNet variant.
SEGMENTERS: dict[str, tuple[dict[str, type[nn.Module]], int]] = {
    "pspnet": ({"resnet": PSPNet, "efficientnet": PSPNetLite}, 8),
    "deeplab": ({"resnet": DeepLabV2, "efficientnet": DeepLabV2Lite}, 8),
    "refinenet": ({"resnet": RefineNet}, 4),
}


def build_segmenter(arch: str, num_classes: int = 19, backbone: str = "resnet101", **kwargs) -> nn.Module:
    """Build a segmentation network by name.

    ``model(x)`` returns the main logits (stride 8 for PSPNet/DeepLab-v2, 4 for RefineNet);
    ``model.forward_with_aux(x)`` returns ``(main, aux)`` for training (aux is None for RefineNet).
    Extra keyword arguments go to the architecture (e.g. ``aspp_branches=4`` for DeepLab-v2).
    """
    check_segmenter(arch, backbone)
    return SEGMENTERS[arch][0][BACKBONES[backbone]](num_classes=num_classes, backbone=backbone, **kwargs)


def check_segmenter(arch: str, backbone: str) -> None:
    """A ValueError naming what is wrong unless ``build_segmenter`` builds ``arch`` on ``backbone``: a check
    that builds nothing, for names to be refused before a network (or a checkpoint) is loaded."""
    if arch not in SEGMENTERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(SEGMENTERS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
    classes = SEGMENTERS[arch][0]
    if BACKBONES[backbone] not in classes:
        fitting = sorted(name for name, f in BACKBONES.items() if f in classes)
        raise ValueError(f"backbone {backbone!r} does not fit {arch}; expected one of {fitting}")


def output_stride(arch: str) -> int:
    return SEGMENTERS[arch][1]


__all__ = ["build_segmenter", "check_segmenter", "output_stride", "SEGMENTERS", "BACKBONES", "PSPNet", "PSPNetLite", "DeepLabV2",
           "DeepLabV2Lite", "EfficientNetLite", "RefineNet", "RelightNet", "Discriminator"]
