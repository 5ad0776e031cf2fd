"""What the backbone trunks (:class:`.resnet.ResNet`, :class:`.efficientnet.EfficientNetLite`) share: freezing
their first stages when fine-tuning from ImageNet weights.

A frozen stage keeps the weights *and* the BatchNorm statistics it was loaded with: its BatchNorm layers stay in
eval mode whatever ``train()`` says, as torchvision's detection references fine-tune their backbones
(``trainable_backbone_layers``) and the released DeepLab-v2 freezes its BatchNorm. Why it matters for DANNet:
the early stages see pixels, and fine-tuned on day images only (the source domain), their filters and
statistics learn the day's look; kept as ImageNet left them they stay generic, and what a day model learns
reaches the night far better (measured on the generated night, BENCHMARKS.md: the demo's day models score at
night 0.3-0.6x their day mIoU with the stem, layer1 and layer2 frozen, 0.2x fine-tuned whole).
"""
from __future__ import annotations

from torch import nn

#: the trunk's stages below the heads: ``layer1..layer4``
STAGES = 4


class FreezableTrunk(nn.Module):
    """Mixin of a trunk whose modules (``trunk_modules``: the stem, ``layer1..layer4``, a top conv where there is
    one) can be frozen from the bottom up."""

    trunk_modules: tuple[str, ...]
    #: the stem and layer1..layer{frozen_stages} are frozen (with all 4: the whole trunk); 0: nothing is
    frozen_stages: int = 0

    def freeze_stages(self, stages: int) -> None:
        """Freeze the stem and ``layer1..layer{stages}`` (0: nothing), once: a frozen stage is never thawed."""
        if not 0 <= stages <= STAGES:
            raise ValueError(f"model.frozen_stages must be 0..{STAGES}, got {stages}")
        if self.frozen_stages and stages != self.frozen_stages:
            raise ValueError(f"the trunk's first {self.frozen_stages} stages are frozen already")
        self.frozen_stages = stages
        for module in self.frozen_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages == 0:
            return []
        names = self.trunk_modules
        if self.frozen_stages < STAGES:
            names = names[:names.index(f"layer{self.frozen_stages}") + 1]
        return [getattr(self, name) for name in names if hasattr(self, name)]  # a classic stem has no conv2, conv3

    def train(self, mode: bool = True) -> "FreezableTrunk":
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # BatchNorm keeps its loaded statistics
        return self
