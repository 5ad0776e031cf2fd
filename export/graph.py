"""The deployment graph in PyTorch: camera frame in, class logits out.

``DeploymentModel`` takes what a camera gives (uint8, NHWC, RGB) and does the rest in-graph:
cast, /255, ImageNet normalisation, NHWC -> NCHW, relighting (R = I + r), segmentation. The
reweight/upsample/argmax tail is appended to the exported ONNX graph by ``export.tails``.
"""
from __future__ import annotations

import torch
from torch import nn

from runtime.classes import IMAGENET_MEAN, IMAGENET_STD


class MatrixAdaptivePool(nn.Module):
    """``AdaptiveAvgPool2d(bins)`` as two pooling matrices: ``Ph @ x @ Pw^T``.

    Bin i averages rows floor(i*H/b) .. ceil((i+1)*H/b), exactly PyTorch's adaptive pooling. The
    matrices are computed from the input's shape with arange/compare ops, so a static export
    folds them into constants and a dynamic one computes them in-graph; either way the graph has a
    handful of MatMuls instead of the Gather chains the exporter makes of adaptive pooling (which
    TensorRT runs poorly).
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins

    def _matrix(self, size: int, like: torch.Tensor) -> torch.Tensor:
        i = torch.arange(self.bins, device=like.device).unsqueeze(1)
        r = torch.arange(size, device=like.device).unsqueeze(0)
        start = torch.div(i * size, self.bins, rounding_mode="floor")
        end = torch.div((i + 1) * size + self.bins - 1, self.bins, rounding_mode="floor")
        inside = ((r >= start) & (r < end)).to(like.dtype)
        return inside / inside.sum(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self._matrix(x.shape[-2], x), self._matrix(x.shape[-1], x)
        return torch.matmul(torch.matmul(ph, x), pw.transpose(0, 1))


def replace_adaptive_pooling(module: nn.Module) -> int:
    """Swap every square ``AdaptiveAvgPool2d`` for ``MatrixAdaptivePool``; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d):
            size = child.output_size
            bins = size if isinstance(size, int) else size[0]
            if not isinstance(size, int) and size[0] != size[1]:
                raise ValueError(f"{name}: only square adaptive pooling is supported, got {size}")
            setattr(module, name, MatrixAdaptivePool(bins))
            count += 1
        else:
            count += replace_adaptive_pooling(child)
    return count


class DeploymentModel(nn.Module):
    """uint8 NHWC RGB frame -> logits (N x C x h x w), with relighting when a relighting net is given.

    ``dtype`` float16 runs the networks in half precision; normalisation stays in fp32 (the
    /255 and mean/std steps lose nothing there and cost nothing) and the logits are returned as
    they come out of the network (the tail decides where fp32 is needed).
    """

    def __init__(self, segmenter: nn.Module, relight: nn.Module | None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.segmenter, self.relight, self.dtype = segmenter, relight, dtype
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("inv_std", 1 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255))

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        x = (frame.permute(0, 3, 1, 2).float() - self.mean) * self.inv_std
        x = x.to(self.dtype)
        if self.relight is not None:
            x = self.relight(x)
        return self.segmenter(x)
