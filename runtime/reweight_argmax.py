"""ReweightArgmax in NumPy: the twin of the CUDA kernel's arithmetic, bit for bit.

Bilinear upsampling of C class scores with PyTorch's coordinate rules, per-class re-weighting
(mode 0: logits x w; mode 1: logits + log w, i.e. probabilities x w), argmax with ties to the lowest
class. Every step rounds to fp32 in the kernel's order (the kernel avoids fused multiply-adds for
this), so GPU tests can demand identical labels. Also the runtime's CPU post-processing for models
that output logits.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

_F = np.float32


def source_scale(in_size: int, out_size: int, align_corners: bool) -> np.float32:
    """PyTorch's area_pixel_compute_scale (no explicit scale factor)."""
    if align_corners:
        return _F(in_size - 1) / _F(out_size - 1) if out_size > 1 else _F(0)
    return _F(in_size) / _F(out_size)


def log_weights(weights: np.ndarray) -> np.ndarray:
    """Mode 1's weights as the kernel receives them: float32(log(float64(w))) per class.

    The one definition shared by every implementation (C++: ``dannet::logWeight``): the plugin, the
    host reference, this twin, the NVRTC path and the portable ONNX tail. It is the correctly rounded
    float32 log for all but vanishingly rare w, whereas float32 logs (``np.log`` on float32, C's
    ``logf``) may be 1 ulp off, and that ulp decides the label where two classes tie after
    re-weighting. ``math.log`` is the C library's ``log``, the function ``std::log(double)`` calls,
    so both languages round the same double.
    """
    w = np.asarray(weights, dtype=_F)
    if not np.all(w > 0):
        raise ValueError("mode 1 (multiply probabilities) needs positive weights")
    return np.array([math.log(float(v)) for v in w.ravel()], dtype=np.float64).astype(_F).reshape(w.shape)


def lerp(in_size: int, out_size: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output coordinate: the two source indices and their weights (l0 for i0, l1 for i1)."""
    scale = source_scale(in_size, out_size, align_corners)
    dst = np.arange(out_size, dtype=_F)
    if align_corners:
        src = scale * dst
    else:
        src = np.maximum(scale * (dst + _F(0.5)) + _F(-0.5), _F(0))
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < in_size - 1)
    l1 = (src + (-i0.astype(_F))).astype(_F)
    return i0, i1, (_F(1) + (-l1)).astype(_F), l1


def _scores(logits: np.ndarray, weights: np.ndarray, out_size: tuple[int, int], align_corners: bool,
            mode: int) -> Iterator[np.ndarray]:
    """Each class's re-weighted score at the output size (N x H x W fp32), class by class, as the kernel
    computes them."""
    z = np.asarray(logits, dtype=_F)
    if z.ndim != 4:
        raise ValueError(f"logits must be N x C x H x W, got shape {z.shape}")
    n, c, h, w = z.shape
    weights = np.asarray(weights, dtype=_F)
    if weights.shape != (c,):
        raise ValueError(f"need one weight per class: {c} classes, {weights.size} weights")
    if mode == 1:
        weights = log_weights(weights)  # the kernel receives log w from the host
    elif mode != 0:
        raise ValueError(f"mode must be 0 (multiply logits) or 1 (multiply probabilities), got {mode}")
    ya, yb, ly0, ly1 = lerp(h, out_size[0], align_corners)
    xa, xb, lx0, lx1 = lerp(w, out_size[1], align_corners)
    for k in range(c):
        plane = z[:, k]
        top = plane[:, ya][:, :, xa] * lx0 + plane[:, ya][:, :, xb] * lx1
        bottom = plane[:, yb][:, :, xa] * lx0 + plane[:, yb][:, :, xb] * lx1
        value = top * ly0[:, None] + bottom * ly1[:, None]
        yield value + weights[k] if mode == 1 else value * weights[k]


def reweight_argmax(logits: np.ndarray, weights: np.ndarray, out_size: tuple[int, int], align_corners: bool = True,
                    mode: int = 0) -> np.ndarray:
    """Labels (uint8, N x H x W) from logits (N x C x h x w, any float type; computed in fp32)."""
    best = labels = None
    for k, score in enumerate(_scores(logits, weights, out_size, align_corners, mode)):
        if best is None:
            best, labels = np.full_like(score, -np.finfo(_F).max), np.zeros(score.shape, dtype=np.uint8)
        better = score > best
        best[better], labels[better] = score[better], k
    return labels


def reweight_argmax_confidence(logits: np.ndarray, weights: np.ndarray, out_size: tuple[int, int],
                               align_corners: bool = True, mode: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and confidence levels (both uint8, N x H x W): the op's second output (plugin README).

    The confidence of a pixel is the softmax, over the classes, of the scores the argmax compares, taken at
    the winning class: ``1 / sum_c exp(s_c - max s)``. Mode 0: softmax(interp(z) * w); mode 1: the paper's
    re-weighted probabilities p w / sum(p w), which is softmax(interp(z) + log w). It is computed as the kernel
    computes it, in one pass over the classes with a running maximum and a running sum of exponentials
    rescaled when the maximum moves; the level is ``floor(255 * confidence + 0.5)``.
    """
    best = labels = total = None
    # non-finite logits (an fp16 engine's overflow) give inf and NaN here, as in the kernel: no warnings
    with np.errstate(all="ignore"):
        for k, score in enumerate(_scores(logits, weights, out_size, align_corners, mode)):
            if best is None:
                best, labels = np.full_like(score, -np.finfo(_F).max), np.zeros(score.shape, dtype=np.uint8)
                total = np.zeros_like(score)
            better = score > best
            total = np.where(better, total * np.exp(best - score) + _F(1), total + np.exp(score - best))
            best[better], labels[better] = score[better], k
        return labels, confidence_levels(_F(1) / total)


def confidence_levels(confidence: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 levels 0-255 (``floor(255 p + 0.5)``), as every tail writes them.
    Clamped as the kernel's ``confidenceLevel`` clamps: NaN gives 0 and anything from 255 up (the infinite
    1 / 0 of scores that are all -inf) 255, where a cast of NaN or inf to uint8 would be undefined."""
    level = np.floor(np.asarray(confidence, dtype=_F) * _F(255) + _F(0.5))
    return np.where(level >= 255, _F(255), np.where(level >= 0, level, _F(0))).astype(np.uint8)


def pack4(labels: np.ndarray) -> np.ndarray:
    """uint8 labels N x H x W -> int32 N x H x ceil(W/4), four labels per element, little-endian."""
    n, h, w = labels.shape
    padded = np.zeros((n, h, (w + 3) // 4 * 4), dtype=np.uint8)
    padded[..., :w] = labels
    return padded.view("<u4").view(np.int32)


def unpack4(packed: np.ndarray, width: int) -> np.ndarray:
    """The inverse of ``pack4``: a uint8 view (no copy) trimmed to ``width`` columns."""
    return np.ascontiguousarray(packed).view(np.uint8)[..., :width]
