"""The relighting network of DANNet (paper Fig. 3): a small ResNet-style image-to-image generator.

It predicts a residual ``r`` that brightens night images and is added to its (normalised) input:
``R = I + r``. The layers live in one ``nn.Sequential`` named ``model`` so that the reference's
state-dict keys (``model.1.weight`` ...) load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

#: the sides of an input that the net gives back unchanged are multiples of this: it halves them twice
#: (stride-2 convs) and doubles them back (transposed convs)
SIDE_MULTIPLE = 4


class ResidualBlock(nn.Module):
    """Reflection-padded 3x3 conv, BN, ReLU, reflection-padded 3x3 conv, BN, plus skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RelightNet(nn.Module):
    """``forward(x)`` returns the relit image ``x + r``; ``residual(x)`` returns ``r`` alone."""

    def __init__(self, channels: int = 64, blocks: int = 3) -> None:
        super().__init__()
        c = channels
        self.model = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, c, 7, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, 2, padding=1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 4 * c, 3, 2, padding=1, bias=False), nn.BatchNorm2d(4 * c), nn.ReLU(inplace=True),
            *(ResidualBlock(4 * c) for _ in range(blocks)),
            nn.ConvTranspose2d(4 * c, 2 * c, 3, 2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(2 * c), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * c, c, 3, 2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7), nn.Tanh(),
        )

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted brightening residual ``r`` (same shape as ``x``; H and W multiples of ``SIDE_MULTIPLE``)."""
        return self.model(x)

    def forward(self, x: torch.Tensor, with_residual: bool = False):
        """``x + r``; ``(x + r, r)`` with ``with_residual`` (the light loss takes both; a flag
        rather than a second method because DDP only routes ``forward``)."""
        r = self.model(x)
        return (x + r, r) if with_residual else x + r
