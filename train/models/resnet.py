"""ResNet building blocks shared by the segmentation networks.

The DANNet reference networks each carry their own ResNet variant, and the released checkpoints
depend on those differences, so the variants are options here rather than separate copies:

* ``stem="deep"`` (PSPNet): three 3x3 convs 3->64->64->128 (first stride 2) named ``conv1..3``/``bn1..3``;
  ``stem="classic"`` (DeepLab-v2, RefineNet): one 7x7 stride-2 conv ``conv1``/``bn1``.
* ``stride_in_1x1=True`` (DeepLab-v2, Caffe style) puts a Bottleneck's stride on its first 1x1 conv,
  otherwise on the 3x3 conv.
* ``dilations`` for layer3/layer4 replace their stride (output stride 8); every block of a dilated
  layer uses the layer's dilation with padding = dilation.
* ``ceil_mode`` of the 3x3/2 max-pool after the stem (ceil in PSPNet and DeepLab-v2, floor in RefineNet).

Module names follow the reference code, so ``state_dict()`` keys equal those of the released files.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .trunk import FreezableTrunk

Stem = Literal["deep", "classic"]


class BasicBlock(nn.Module):
    """Two 3x3 convs with a skip connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        del stride_in_1x1  # a BasicBlock has no 1x1 conv; accepted so both blocks share one signature
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (dilated) -> 1x1 with a skip connection (ResNet-50/101)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride_3x3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: block type and blocks per stage of each supported backbone
BACKBONES: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(FreezableTrunk):
    """ResNet trunk (stem + layer1..layer4) that segmentation networks extend with their heads.

    The heads are attributes of the same module (as in the reference code), which is why the
    segmentation networks subclass this rather than hold a ``backbone`` child.
    """

    #: the modules that hold the trunk's weights (what ImageNet initialisation fills; conv2/3 only in the deep stem)
    trunk_modules = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, backbone: str = "resnet101", stem: Stem = "classic",
                 dilations: tuple[int, int] = (1, 1), stride_in_1x1: bool = False,
                 ceil_mode: bool = True) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
        block, layers = BACKBONES[backbone]
        self.stem = stem
        if stem == "deep":
            self.conv1 = nn.Conv2d(3, 64, 3, 2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.conv2 = nn.Conv2d(64, 64, 3, 1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(64)
            self.conv3 = nn.Conv2d(64, 128, 3, 1, padding=1, bias=False)
            self.bn3 = nn.BatchNorm2d(128)
            self.inplanes = 128
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.inplanes = 64
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=ceil_mode)
        d3, d4 = dilations
        self.layer1 = self._make_layer(block, 64, layers[0], 1, 1, stride_in_1x1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, 1, stride_in_1x1)
        self.layer3 = self._make_layer(block, 256, layers[2], 1 if d3 > 1 else 2, d3, stride_in_1x1)
        self.layer4 = self._make_layer(block, 512, layers[3], 1 if d4 > 1 else 2, d4, stride_in_1x1)
        #: channels of layer1..layer4 outputs, for the heads
        self.channels = tuple(c * block.expansion for c in (64, 128, 256, 512))

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int, dilation: int, stride_in_1x1: bool) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, dilation, downsample, stride_in_1x1)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, dilation, None, stride_in_1x1) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.stem == "deep":
            x = self.relu(self.bn2(self.conv2(x)))
            x = self.relu(self.bn3(self.conv3(x)))
        return self.maxpool(x)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs of layer1..layer4."""
        l1 = self.layer1(self.forward_stem(x))
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return l1, l2, l3, l4

    def init_weights(self) -> None:
        """He initialisation for convs, unit BN, as torchvision's ResNet."""
        he_init(self)


def he_init(module: nn.Module) -> None:
    """He initialisation (fan-out) of every conv, unit BatchNorm: a backbone's start without ImageNet weights."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def classifier_init(*convs: nn.Conv2d) -> None:
    """N(0, 0.01) weights and zero bias for the convs that output class logits: the released DeepLab-v2's init,
    and close to the released PSPNet's (PyTorch's default, standard deviation 0.026 for a 512 -> 19 conv). He init
    there gives logits of standard deviation ~8 on a 512-channel feature: a first training loss of 13-16 instead
    of log(19) = 2.9, whose first steps only undo the init."""
    for conv in convs:
        nn.init.normal_(conv.weight, 0.0, 0.01)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
