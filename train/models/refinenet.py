"""Multi-path RefineNet (Lin et al., CVPR 2017) on a ResNet, as used by DANNet.

Four refinement paths from layer4 down to layer1, each made of residual conv units (RCU), a
chained residual pooling block (CRP) and a fusion with the next finer path; the classifier runs at
stride 4. ResNet: 7x7 stem, floor-mode max-pool, stride on the 3x3 conv, no dilation. Dropout 0.5 on
layer3, layer4 and before the classifier. Module names (``p_ims1d2_outl1_dimred``,
``adapt_stage1_b``, ``mflow_conv_g1_pool`` ...) are the reference code's, so released weights load.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import ResNet, classifier_init, he_init


def conv3x3(in_channels: int, out_channels: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    """``blocks`` units of (ReLU, 3x3 conv with bias, ReLU, 3x3 conv) each with a skip connection."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.blocks = blocks
        for i in range(1, blocks + 1):
            self.add_module(f"{i}_conv", conv3x3(channels, channels, bias=True))
            self.add_module(f"{i}_conv_relu_varout_dimred", conv3x3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.blocks + 1):
            out = getattr(self, f"{i}_conv")(F.relu(x))
            out = getattr(self, f"{i}_conv_relu_varout_dimred")(F.relu(out))
            x = x + out
        return x


class ChainedResidualPool(nn.Module):
    """A chain of (5x5/1 max-pool, 3x3 conv) whose outputs are all added to the input."""

    def __init__(self, channels: int, stages: int = 4) -> None:
        super().__init__()
        self.stages = stages
        self.maxpool = nn.MaxPool2d(5, 1, padding=2)
        for i in range(1, stages + 1):
            self.add_module(f"{i}_outvar_dimred", conv3x3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for i in range(1, self.stages + 1):
            top = getattr(self, f"{i}_outvar_dimred")(self.maxpool(top))
            x = x + top
        return x


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class RefineNet(ResNet):
    """RefineNet; ``forward`` gives the logits at stride 4. There is no auxiliary head."""

    #: the auxiliary head trained by ``loss.aux`` (frozen when its weight is 0)
    aux_head: str | None = None

    def __init__(self, num_classes: int = 19, backbone: str = "resnet101") -> None:
        super().__init__(backbone, stem="classic", dilations=(1, 1), ceil_mode=False)
        c1, c2, c3, c4 = self.channels
        self.dropout = nn.Dropout(0.5)
        # path 1 (layer4, coarsest)
        self.p_ims1d2_outl1_dimred = conv3x3(c4, 512)
        self.adapt_stage1_b = nn.Sequential(ResidualConvUnit(512, 2))
        self.mflow_conv_g1_pool = nn.Sequential(ChainedResidualPool(512))
        self.mflow_conv_g1_b = nn.Sequential(ResidualConvUnit(512, 3))
        self.mflow_conv_g1_b3_joint_varout_dimred = conv3x3(512, 256)
        # paths 2..4 (layer3, layer2, layer1) each fuse with the coarser path's output
        for path, channels in ((2, c3), (3, c2), (4, c1)):
            self.add_module(f"p_ims1d2_outl{path}_dimred", conv3x3(channels, 256))
            self.add_module(f"adapt_stage{path}_b", nn.Sequential(ResidualConvUnit(256, 2)))
            self.add_module(f"adapt_stage{path}_b2_joint_varout_dimred", conv3x3(256, 256))
            self.add_module(f"mflow_conv_g{path}_pool", nn.Sequential(ChainedResidualPool(256)))
            self.add_module(f"mflow_conv_g{path}_b", nn.Sequential(ResidualConvUnit(256, 3)))
            if path < 4:
                self.add_module(f"mflow_conv_g{path}_b3_joint_varout_dimred", conv3x3(256, 256))
        self.clf_conv = nn.Conv2d(256, num_classes, 3, padding=1)
        self.init_weights()

    def init_weights(self) -> None:
        """He init for the ResNet trunk only. The refinement path has no BatchNorm and a residual add in every unit
        and pool: He init (gain 1 per conv) doubles the variance at each add, and a fresh network's logits reached
        a standard deviation of ~10^4; it keeps PyTorch's default init, as the reference, whose gain below 1 keeps
        the sums in range. The classifier gets :func:`.resnet.classifier_init`."""
        for name in self.trunk_modules:
            module = getattr(self, name, None)  # conv2/bn2/conv3/bn3 exist with the deep stem only
            if module is not None:
                he_init(module)
        classifier_init(self.clf_conv)

    def _refine(self, path: int, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, f"mflow_conv_g{path}_pool")(x)
        return getattr(self, f"mflow_conv_g{path}_b")(x)

    def _fuse(self, path: int, features: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
        x = getattr(self, f"p_ims1d2_outl{path}_dimred")(features)
        x = getattr(self, f"adapt_stage{path}_b")(x)
        x = getattr(self, f"adapt_stage{path}_b2_joint_varout_dimred")(x)
        return F.relu(x + _upsample_to(coarser, x))

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        """Logits at stride 4; ``(logits, None)`` with ``with_aux`` (RefineNet has no aux head)."""
        l1, l2, l3, l4 = self.forward_features(x)
        l4, l3 = self.dropout(l4), self.dropout(l3)  # in the reference's order: same masks from one RNG stream
        x = F.relu(self.adapt_stage1_b(self.p_ims1d2_outl1_dimred(l4)))
        x = self.mflow_conv_g1_b3_joint_varout_dimred(self._refine(1, x))
        x = self.mflow_conv_g2_b3_joint_varout_dimred(self._refine(2, self._fuse(2, l3, x)))
        x = self.mflow_conv_g3_b3_joint_varout_dimred(self._refine(3, self._fuse(3, l2, x)))
        x = self._refine(4, self._fuse(4, l1, x))
        logits = self.clf_conv(self.dropout(x))
        return (logits, None) if with_aux else logits

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.forward(x, with_aux=True)
