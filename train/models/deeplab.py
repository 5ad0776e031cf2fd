"""DeepLab-v2 (Chen et al., TPAMI 2017) as used by DANNet (``ResNetMulti`` of AdaptSegNet).

Caffe-style ResNet (stride on the first 1x1 conv, 7x7 stem, ceil-mode max-pool), layer3/layer4
dilated by 2/4, and an ASPP classifier on both layer3 (``layer5``, auxiliary) and layer4
(``layer6``, main).

The reference ASPP returns from inside its summation loop after adding the second branch, so only
the dilation-6 and dilation-12 convolutions contribute; the released weights were trained that way.
``aspp_branches=2`` (default) reproduces it; ``aspp_branches=4`` uses all four for new training.

The BatchNorm scales and shifts of the residual layers (every Bottleneck's and downsample's BN, not
the stem's ``bn1``) are frozen (``requires_grad=False``) as in the reference code, which keeps
Caffe's DeepLab convention; in training mode their batch statistics are still used and tracked.
:class:`DeepLabV2Lite` puts the same classifiers on an EfficientNet-Lite0 trunk and keeps that convention
(its stem BN and top BN, outside layer1..layer4, stay trainable).
"""
from __future__ import annotations

import torch
from torch import nn

from .efficientnet import EfficientNetLite
from .resnet import ResNet, classifier_init


class ASPPClassifier(nn.Module):
    """Sum of parallel dilated 3x3 convs that each predict the class logits."""

    def __init__(self, in_channels: int, num_classes: int, dilations: tuple[int, ...] = (6, 12, 18, 24),
                 active_branches: int = 2) -> None:
        super().__init__()
        if not 1 <= active_branches <= len(dilations):
            raise ValueError(f"active_branches must be in 1..{len(dilations)}, got {active_branches}")
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d) for d in dilations
        )
        self.active_branches = active_branches
        classifier_init(*self.conv2d_list)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:self.active_branches]:
            out = out + conv(x)
        return out


class DeepLabHeads:
    """ASPP classifiers on layer3 (``layer5``, auxiliary) and layer4 (``layer6``, main), for a trunk that has
    ``forward_features``, ``channels`` and ``layer1..layer4`` (mixed in before the trunk class)."""

    #: the auxiliary head trained by ``loss.aux`` (frozen when its weight is 0)
    aux_head: str | None = "layer5"

    def build_heads(self, num_classes: int, aspp_branches: int) -> None:
        c3, c4 = self.channels[2], self.channels[3]
        self.layer5 = ASPPClassifier(c3, num_classes, active_branches=aspp_branches)
        self.layer6 = ASPPClassifier(c4, num_classes, active_branches=aspp_branches)

    def freeze_residual_bn_affine(self) -> None:
        """BN scales and shifts of layer1..layer4 get no gradient (the reference's Caffe convention)."""
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for module in layer.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        """Main logits; ``(main, aux)`` with ``with_aux`` (see PSPNet.forward)."""
        _, _, l3, l4 = self.forward_features(x)
        main = self.layer6(l4)
        return (main, self.layer5(l3)) if with_aux else main

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(x, with_aux=True)


class DeepLabV2(DeepLabHeads, ResNet):
    """DeepLab-v2; ``forward`` gives the layer4 logits at stride 8, ``forward_with_aux`` adds layer3's."""

    def __init__(self, num_classes: int = 19, backbone: str = "resnet101", aspp_branches: int = 2) -> None:
        super().__init__(backbone, stem="classic", dilations=(2, 4), stride_in_1x1=True, ceil_mode=True)
        self.init_weights()
        self.build_heads(num_classes, aspp_branches)  # after init_weights: the ASPP convs keep N(0, 0.01)
        self.freeze_residual_bn_affine()


class DeepLabV2Lite(DeepLabHeads, EfficientNetLite):
    """DeepLab-v2 classifiers on EfficientNet-Lite0 (layer3/layer4 dilated by 2/4): logits at stride 8."""

    def __init__(self, num_classes: int = 19, backbone: str = "efficientnet_lite0", aspp_branches: int = 2) -> None:
        del backbone  # the only EfficientNet trunk; accepted so that every segmenter shares one signature
        super().__init__(dilations=(2, 4))
        self.init_weights()
        self.build_heads(num_classes, aspp_branches)
        self.freeze_residual_bn_affine()
