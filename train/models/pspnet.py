"""PSPNet (Zhao et al., CVPR 2017) as used by DANNet: deep-stem ResNet, output stride 8.

Module names match the DANNet reference code: the PSP module is ``head.0``, the classifier
``head.1`` and the auxiliary layer3 head ``dsn``. The PSP stages have no BN, and neither the PSP
bottleneck nor ``dsn`` has a ReLU after its BN (the reference replaced InPlaceABN by plain BN).
The same heads sit on an EfficientNet-Lite0 trunk in :class:`PSPNetLite` (dilated to stride 8 too).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet import EfficientNetLite
from .resnet import ResNet, classifier_init


class PSPModule(nn.Module):
    """Pyramid pooling: average-pool to each bin size, 1x1 conv, upsample, concatenate, 3x3 conv.

    Each pooled branch has ``stage_channels`` (default ``out_channels``, 512, as the released DANNet
    code on ResNet's 2048 channels; the PSPNet paper reduces each of its N branches to 1/N of the input)."""

    def __init__(self, in_channels: int, out_channels: int = 512, bins: tuple[int, ...] = (1, 2, 3, 6),
                 stage_channels: int | None = None) -> None:
        super().__init__()
        stage_channels = stage_channels or out_channels
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, stage_channels, 1, bias=False))
            for b in bins
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + len(bins) * stage_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.Dropout2d(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        priors = [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=True) for stage in self.stages]
        return self.bottleneck(torch.cat([*priors, x], dim=1))


class PSPHeads:
    """The PSP head on layer4 and the auxiliary head ``dsn`` on layer3, for a trunk that has
    ``forward_features`` and ``channels`` (mixed in before the trunk class)."""

    #: the auxiliary head trained by ``loss.aux`` (frozen when its weight is 0)
    aux_head: str | None = "dsn"

    def build_heads(self, num_classes: int, stage_channels: int | None = None) -> None:
        c3, c4 = self.channels[2], self.channels[3]
        self.head = nn.Sequential(PSPModule(c4, 512, stage_channels=stage_channels), nn.Conv2d(512, num_classes, 1))
        self.dsn = nn.Sequential(
            nn.Conv2d(c3, 512, 3, padding=1),
            nn.BatchNorm2d(512),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, num_classes, 1),
        )

    def init_weights(self) -> None:
        """The trunk's init for everything, then small classifiers (:func:`.resnet.classifier_init`)."""
        super().init_weights()
        classifier_init(self.head[1], self.dsn[3])

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        """Main logits; ``(main, aux)`` with ``with_aux`` (a flag so that DDP, which only routes
        ``forward``, can train the aux head)."""
        _, _, l3, l4 = self.forward_features(x)
        main = self.head(l4)
        return (main, self.dsn(l3)) if with_aux else main

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(x, with_aux=True)


class PSPNet(PSPHeads, ResNet):
    """PSPNet; ``forward`` gives the main logits at stride 8, ``forward_with_aux`` adds the layer3 head."""

    def __init__(self, num_classes: int = 19, backbone: str = "resnet101") -> None:
        super().__init__(backbone, stem="deep", dilations=(2, 4), ceil_mode=True)
        self.build_heads(num_classes)
        self.init_weights()


class PSPNetLite(PSPHeads, EfficientNetLite):
    """PSPNet on EfficientNet-Lite0 (layer3/layer4 dilated by 2/4): logits at stride 8 like :class:`PSPNet`.

    Sized for the edge: pyramid pooling on layer4's 320 channels (no 1280-channel top conv) with the
    paper's 1/4-wide branches, so the bottleneck conv is 640 -> 512 (3M weights, not 15M)."""

    def __init__(self, num_classes: int = 19, backbone: str = "efficientnet_lite0") -> None:
        del backbone  # the only EfficientNet trunk; accepted so that every segmenter shares one signature
        super().__init__(dilations=(2, 4), top=False)
        self.build_heads(num_classes, stage_channels=self.channels[3] // 4)
        self.init_weights()
