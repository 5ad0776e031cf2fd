"""EfficientNet-Lite0 trunk (Tan & Le, 2019; the "Lite" variants for edge accelerators) for segmentation.

Lite differs from EfficientNet-B0 in what edge compilers (TensorRT, TFLite) handle well: ReLU6 instead
of swish, no squeeze-excitation, and a stem (32 channels) and top (1280 channels) that do not scale
with the model. The exported graph is Conv (BatchNorm folded by the exporter), Clip and Add only.

The sixteen MBConv blocks are grouped like ResNet's stages, so the segmentation heads see the same
strides and use the same names ``layer1..layer4`` (outputs at strides 4, 8, 16, 32 without dilation):

=======  ======  =====================================  ========
stage    blocks  MBConv (expansion, kernel, out ch.)    stride
=======  ======  =====================================  ========
stem     -       3x3 conv, 32                           2
layer1   0-2     (1, 3, 16), 2 x (6, 3, 24)             4
layer2   3-4     2 x (6, 5, 40)                         8
layer3   5-10    3 x (6, 3, 80), 3 x (6, 5, 112)        16
layer4   11-15   4 x (6, 5, 192), (6, 3, 320); top      32
=======  ======  =====================================  ========

``top_conv`` (1x1, 320 -> 1280) ends layer4 where a head wants ImageNet's 1280-channel features
(DeepLab's ASPP, image classification); PSPNet's pyramid pooling starts from the 320 channels instead
(``top=False``): at output stride 8 a 1280-channel input makes its 3x3 bottleneck conv the costliest
layer of the network (3328 -> 512 channels, 15M weights). ``dilations`` replace the strides of layer3/layer4 as in
:class:`.resnet.ResNet` (output stride 8 with ``(2, 4)``). Convolutions are padded symmetrically
(``dilation * (k - 1) / 2``); TensorFlow's "SAME" padding, which the ImageNet weights were trained
with, pads strided convolutions one pixel more at the bottom/right instead: a half-pixel shift that
fine-tuning absorbs, and one Pad node less per strided convolution.

Input: the rest of the project feeds ImageNet-normalised images (``runtime.classes.IMAGENET_MEAN/STD``),
while the Lite ImageNet weights were trained on ``(pixel - 127) / 128``, i.e. [-1, 1]. The trunk
converts at its entrance (:class:`InputScaling`), so training, evaluation and the exported graph need
to know nothing about it.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from runtime.classes import IMAGENET_MEAN, IMAGENET_STD

from .resnet import he_init
from .trunk import FreezableTrunk

#: the Lite ImageNet weights' input: (pixel - LITE_PIXEL_MEAN) / LITE_PIXEL_STD, pixel in 0..255 (TensorFlow's
#: EfficientNet-Lite preprocessing; the stem BatchNorm's running means agree, see tests/test_backbones.py)
LITE_PIXEL_MEAN, LITE_PIXEL_STD = 127.0, 128.0
#: TensorFlow's BatchNorm epsilon, which the ImageNet statistics were computed with
BN_EPS = 1e-3


class BlockSpec(NamedTuple):
    """One MBConv block: expansion ratio, depthwise kernel size, stride, output channels."""

    expansion: int
    kernel: int
    stride: int
    channels: int


def _repeat(count: int, expansion: int, kernel: int, stride: int, channels: int) -> list[BlockSpec]:
    """``count`` blocks of which only the first has ``stride`` (EfficientNet's stage rule)."""
    return [BlockSpec(expansion, kernel, stride if i == 0 else 1, channels) for i in range(count)]


#: the blocks of each trunk stage (the table in the module docstring)
LITE0_STAGES: tuple[list[BlockSpec], ...] = (
    _repeat(1, 1, 3, 1, 16) + _repeat(2, 6, 3, 2, 24),
    _repeat(2, 6, 5, 2, 40),
    _repeat(3, 6, 3, 2, 80) + _repeat(3, 6, 5, 1, 112),
    _repeat(4, 6, 5, 2, 192) + _repeat(1, 6, 3, 1, 320),
)
STEM_CHANNELS, TOP_CHANNELS = 32, 1280


class InputScaling(nn.Module):
    """ImageNet-normalised input -> the [-1, 1] input of the Lite weights: one per-channel affine map.

    ``x = (pixel / 255 - mean) / std``, so ``(pixel - 127) / 128 = x * 255 std / 128 + (255 mean - 127) / 128``.
    The constants are buffers outside the state dict: they are a fact of the weights, not a weight.
    """

    def __init__(self) -> None:
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("scale", (255 * std / LITE_PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((255 * mean - LITE_PIXEL_MEAN) / LITE_PIXEL_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1,
          groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=dilation * (kernel - 1) // 2,
                     dilation=dilation, groups=groups, bias=False)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion (absent at ratio 1) -> kxk depthwise -> 1x1 linear projection,
    ReLU6 after the first two, a skip connection where the shape is unchanged."""

    def __init__(self, in_channels: int, spec: BlockSpec, stride: int, dilation: int) -> None:
        super().__init__()
        hidden = in_channels * spec.expansion
        self.expands = spec.expansion != 1
        if self.expands:
            self.expand_conv = _conv(in_channels, hidden, 1)
            self.expand_bn = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self.depthwise_conv = _conv(hidden, hidden, spec.kernel, stride, dilation, groups=hidden)
        self.depthwise_bn = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self.project_conv = _conv(hidden, spec.channels, 1)
        self.project_bn = nn.BatchNorm2d(spec.channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.skip = stride == 1 and in_channels == spec.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.expand_bn(self.expand_conv(x))) if self.expands else x
        out = self.act(self.depthwise_bn(self.depthwise_conv(out)))
        out = self.project_bn(self.project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite(FreezableTrunk):
    """EfficientNet-Lite0 trunk (stem + layer1..layer4, + top unless ``top=False``) that segmentation
    networks extend with heads, with the interface of :class:`.resnet.ResNet`: ``forward_features``,
    ``channels``, ``init_weights``."""

    def __init__(self, dilations: tuple[int, int] = (1, 1), top: bool = True) -> None:
        super().__init__()
        self.input_scaling = InputScaling()
        self.stem_conv = _conv(3, STEM_CHANNELS, 3, stride=2)
        self.stem_bn = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        channels = STEM_CHANNELS
        stage_dilations = (1, 1, *dilations)
        for i, (specs, dilation) in enumerate(zip(LITE0_STAGES, stage_dilations), start=1):
            blocks = []
            for spec in specs:
                stride = 1 if dilation > 1 else spec.stride
                blocks.append(MBConv(channels, spec, stride, dilation))
                channels = spec.channels
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.top = top
        if top:
            self.top_conv = _conv(channels, TOP_CHANNELS, 1)
            self.top_bn = nn.BatchNorm2d(TOP_CHANNELS, eps=BN_EPS)
        #: the modules that hold the trunk's weights (what ImageNet initialisation fills)
        self.trunk_modules = ("stem_conv", "stem_bn", "layer1", "layer2", "layer3", "layer4",
                              *(("top_conv", "top_bn") if top else ()))
        #: channels of layer1..layer4 outputs, for the heads (layer4's includes the top conv where there is one)
        self.channels = (*(specs[-1].channels for specs in LITE0_STAGES[:3]), TOP_CHANNELS if top else channels)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Outputs of layer1..layer4 for an ImageNet-normalised input."""
        x = self.act(self.stem_bn(self.stem_conv(self.input_scaling(x))))
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        if self.top:
            l4 = self.act(self.top_bn(self.top_conv(l4)))
        return l1, l2, l3, l4

    def init_weights(self) -> None:
        """He initialisation (fan-out) for convs, unit BN: the starting point without ImageNet weights."""
        he_init(self)
