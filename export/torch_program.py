"""``export.to_torch_program``: the deployment model as a ``torch.export`` program (``.pt2``) for the runtime's
PyTorch backend, the reference the ONNX and TensorRT paths are compared with.

The runtime may not import the training code (Jetson images often lack it), so it cannot rebuild networks
from a checkpoint; a ``.pt2`` file carries the graph and weights, loads with ``torch.export.load`` alone,
and has the same contract as the portable ONNX graph: uint8 NHWC RGB frame in, uint8 labels out (with
``ExportSpec.confidence``, the pair labels, confidence levels, computed as the portable tail computes them).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from runtime.atomic import atomic_file, check_writable
from runtime.backends import PT2_METADATA
from train.evaluate import reweighted_scores

from .onnx_export import ExportError, ExportSpec, deployment_metadata, deployment_model, dynamic_shapes


class FrameToLabels(nn.Module):
    """Frame -> logits (``DeploymentModel``) -> the portable tail in PyTorch -> uint8 labels, or with
    ``spec.confidence`` (labels, confidence levels), with the class ``weights`` (one per class)."""

    def __init__(self, body: nn.Module, spec: ExportSpec, weights: np.ndarray) -> None:
        super().__init__()
        self.body, self.spec = body, spec
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, frame: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        scores = reweighted_scores(self.body(frame).float(), self.weights, self.spec.output_size, self.spec.reweight,
                                   self.spec.align_corners)
        labels = scores.argmax(dim=1).to(torch.uint8)
        if not self.spec.confidence:
            return labels
        # the op spec's confidence: 1 / sum_c exp(s_c - max s), as the level floor(255 p + 0.5); level 0 where the
        # scores are not finite (inf - inf is NaN, and a cast of NaN to uint8 is undefined), as the ONNX tail
        top = scores.amax(dim=1, keepdim=True)
        probability = 1 / torch.exp(scores - top).sum(dim=1)
        return labels, torch.floor(probability * 255 + 0.5).nan_to_num(nan=0.0).to(torch.uint8)


def to_torch_program(checkpoint: str | Path, out: str | Path, spec: ExportSpec = ExportSpec(), *,
                     light: str | Path | None = None, arch: str | None = None, backbone: str | None = None,
                     say: Callable[[str], None] = print) -> Path:
    """Export a checkpoint as ``out`` (.pt2); returns ``out``."""
    if spec.tail != "portable":
        raise ExportError("--tail plugin is for TensorRT; a PyTorch program carries the tail in PyTorch")
    started = time.perf_counter()
    check_writable(out, "--out")  # before the work, not after it
    body, arch, backbone, weights, spec = deployment_model(checkpoint, spec, light, arch, backbone)
    say(f"[1/2] torch.export of {arch} ({backbone}{' + relighting' if body.relight is not None else ''}, "
        f"{spec.precision}) at {spec.input_size[0]}x{spec.input_size[1]}")
    # the batch is always dynamic here (ONNX graphs fix it to 1 unless --dynamic, as TensorRT profiles want)
    shapes = dynamic_shapes(spec) or {"frame": {0: torch.export.Dim("batch", min=1, max=64)}}
    frame = torch.zeros(2, *spec.input_size, 3, dtype=torch.uint8)
    with torch.no_grad():
        program = torch.export.export(FrameToLabels(body, spec, weights).eval(), (frame,), dynamic_shapes=shapes)
    metadata = deployment_metadata(spec, weights, "uint8", arch, backbone, body.relight is not None, checkpoint, light)
    out = Path(out)
    say("[2/2] saving")
    with atomic_file(out) as f:  # an existing program is replaced whole or not at all
        torch.export.save(program, f, extra_files={PT2_METADATA: json.dumps(metadata)})
    say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.0f} s)")
    return out
