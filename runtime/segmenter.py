"""``Segmenter``: the Python API of the runtime: a camera frame in, labels (and a picture) out.

    from runtime.segmenter import Segmenter
    seg = Segmenter("dannet.onnx")              # or "dannet.engine" (TensorRT)
    labels = seg.process(frame)                 # frame: H x W x 3 uint8 RGB, any size; labels at info.output_size
    picture = seg.overlay(frame, labels)        # palette colours blended over the frame

    seg = Segmenter("dannet_confidence.onnx")   # exported with dannet-export onnx --confidence
    labels, confidence = seg.process(frame)     # confidence: uint8 levels, 255 = certain

    with Segmenter("dannet.engine") as seg:     # the engine's GPU memory is freed at the end (or seg.close())
        labels = seg.process(frame)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .backends import Backend, open_backend
from .overlay import visualize


class Segmenter:
    def __init__(self, model: str | Path, backend: str = "auto", **options) -> None:
        self.backend: Backend = open_backend(model, backend, **options)
        self.info = self.backend.info

    def close(self) -> None:
        """Release the model now (``Backend.close``): a TensorRT engine holds GPU buffers, a stream and its
        context until then. Idempotent."""
        self.backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The frame at a size the network takes (bilinear, as DANNet's reference resizes frames): its input size,
        or for a dynamic-shape model the nearest size it takes (``info.network_size``: H and W rounded to
        multiples of 4 and brought within the model's range, for an engine its optimisation profile's): at other
        sizes a dynamic graph fails (the relighting residual does not broadcast) or is outside what it was exported
        or built for. So a frame of any size runs."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or not frame.size:
            raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got {frame.shape} {frame.dtype}")
        size = self.info.network_size(frame.shape[:2])
        if frame.shape[:2] == tuple(size):
            return frame
        return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))

    def process(self, frame: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """uint8 labels at the model's output size (``info.output_size``, fixed at export, dynamic models
        included), whatever the frame's size; for a model exported with ``--confidence`` (``info.confidence``), the
        pair labels, confidence levels (uint8, ``floor(255 p + 0.5)`` of the winning class's re-weighted softmax
        probability p). ``overlay`` draws them over the frame at its own size."""
        result = self.backend.infer(self.prepare(frame)[None])
        if self.info.confidence:
            return result.labels[0], result.confidence[0]
        return result.labels[0]

    def overlay(self, frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5, mode: str = "overlay",
                confidence: np.ndarray | None = None) -> np.ndarray:
        """The picture ``dannet-run --visualize mode`` shows (``confidence`` for the confidence modes)."""
        return visualize(frame, labels, mode, alpha, self.info.palette, confidence)
