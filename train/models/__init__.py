"""DANNet's networks: segmentation nets (PSPNet, DeepLab-v2, RefineNet), relighting net, discriminator.

Module names follow the reference implementation so the released checkpoints load unchanged.
"""
from __future__ import annotations

from torch import nn

from .deeplab import DeepLabV2
from .discriminator import Discriminator
from .pspnet import PSPNet
from .refinenet import RefineNet
from .relight import RelightNet
from .resnet import BACKBONES

#: segmentation architecture -> (class, output stride of its logits)
SEGMENTERS: dict[str, tuple[type[nn.Module], int]] = {
    "pspnet": (PSPNet, 8),
    "deeplab": (DeepLabV2, 8),
    "refinenet": (RefineNet, 4),
}


def build_segmenter(arch: str, num_classes: int = 19, backbone: str = "resnet101", **kwargs) -> nn.Module:
    """Build a segmentation network by name.

    ``model(x)`` returns the main logits (stride 8 for PSPNet/DeepLab-v2, 4 for RefineNet);
    ``model.forward_with_aux(x)`` returns ``(main, aux)`` for training (aux is None for RefineNet).
    Extra keyword arguments go to the architecture (e.g. ``aspp_branches=4`` for DeepLab-v2).
    """
    if arch not in SEGMENTERS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(SEGMENTERS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
    return SEGMENTERS[arch][0](num_classes=num_classes, backbone=backbone, **kwargs)


def output_stride(arch: str) -> int:
    return SEGMENTERS[arch][1]


__all__ = ["build_segmenter", "output_stride", "SEGMENTERS", "BACKBONES", "PSPNet", "DeepLabV2",
           "RefineNet", "RelightNet", "Discriminator"]
