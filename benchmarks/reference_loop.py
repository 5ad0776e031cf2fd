"""DANNet's reference inference loop, written plainly, as the authors' evaluation code does it:
NumPy normalisation, PyTorch eager fp32 relighting + segmentation, logits x w, bilinear upsampling
of all C logits to full resolution (align_corners=True), NumPy argmax. The baseline of ``compare``.
For a model exported with ``--reweight probs`` it adds log w instead: the argmax of the paper's re-weighted
probabilities ``p_c w_c / sum_k p_k w_k``, as that model's tail computes it; for one exported with
``--half-pixel`` it upsamples with align_corners=False, as that tail does."""
from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from runtime.backends import Inference, ModelInfo
from runtime.classes import IMAGENET_MEAN, IMAGENET_STD


@torch.no_grad()
def reference_labels(segmenter: nn.Module, relight: nn.Module | None, frame: np.ndarray, weights: np.ndarray,
                     out_size: tuple[int, int], timings: dict[str, list[float]] | None = None,
                     reweight: str = "logits", align_corners: bool = True) -> np.ndarray:
    """uint8 labels (H_out x W_out) for one uint8 RGB frame at the network input size."""
    t0 = time.perf_counter()
    x = ((frame.astype(np.float32) / 255 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD))
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    t1 = time.perf_counter()
    if relight is not None:
        x = relight(x)
    w = torch.from_numpy(np.asarray(weights, np.float32)).view(1, -1, 1, 1)
    logits = segmenter(x) + torch.log(w) if reweight == "probs" else segmenter(x) * w
    t2 = time.perf_counter()
    up = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=align_corners)[0].numpy()
    labels = np.argmax(up, axis=0).astype(np.uint8)
    t3 = time.perf_counter()
    if timings is not None:
        for stage, seconds in (("preprocess", t1 - t0), ("network", t2 - t1), ("postprocess", t3 - t2)):
            timings.setdefault(stage, []).append(seconds)
    return labels


class ReferenceSegmenter:
    """The reference loop behind ``Segmenter``'s evaluation interface (``prepare``, ``backend.infer``), so that
    ``export.scoring.evaluate`` scores it on the same images, resized the same way, as the exported graphs."""

    name = "reference loop"

    def __init__(self, segmenter: nn.Module, relight: nn.Module | None, weights: np.ndarray,
                 input_size: tuple[int, int], output_size: tuple[int, int], reweight: str = "logits",
                 align_corners: bool = True) -> None:
        from runtime.segmenter import Segmenter

        self.networks, self.weights = (segmenter, relight), weights
        self.reweight, self.align_corners = reweight, align_corners
        self.output_size = output_size
        self.info = ModelInfo(input_size=input_size, output_size=output_size, precision="fp32")
        self.prepare = partial(Segmenter.prepare, self)  # the runtime's own resize of a camera frame
        self.backend = self

    def infer(self, frames: np.ndarray) -> Inference:
        return Inference(np.stack([reference_labels(*self.networks, frame, self.weights, self.output_size,
                                                    reweight=self.reweight, align_corners=self.align_corners)
                                    for frame in frames]))
