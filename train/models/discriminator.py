"""Output-space discriminator of DANNet (paper 3.2): is this softmax map from the day or the night?

Five 4x4 convs (64, 128, 256, 256, 1 channels; strides 2, 2, 1, 1, 1; padding 1) with LeakyReLU 0.2
between them. Its input is the softmax of the upsampled segmentation prediction.
"""
from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    def __init__(self, num_classes: int = 19, channels: int = 64) -> None:
        super().__init__()
        c = channels
        self.conv1 = nn.Conv2d(num_classes, c, 4, 2, padding=1)
        self.conv2 = nn.Conv2d(c, 2 * c, 4, 2, padding=1)
        self.conv3 = nn.Conv2d(2 * c, 4 * c, 4, 1, padding=1)
        self.conv4 = nn.Conv2d(4 * c, 4 * c, 4, 1, padding=1)
        self.classifier = nn.Conv2d(4 * c, 1, 4, 1, padding=1)
        self.leaky_relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = self.leaky_relu(conv(x))
        return self.classifier(x)
