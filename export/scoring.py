"""mIoU of deployed models (``runtime.segmenter.Segmenter``) on a labelled night set, as a camera frame is fed.

Each image is resized to the network input by the runtime; labels of another size than the ground truth are
resized to it (nearest neighbour), and the confusion matrix comes from ``train.metrics``, the project's one mIoU.
``dannet-bench miou`` and ``compare`` report it; ``dannet-export int8`` gates its quantised model on it, which is
why it lives here and not in ``benchmarks`` (``export`` never imports ``benchmarks``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from train.metrics import ConfusionMeter


def predict(seg, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    labels = seg.backend.infer(seg.prepare(frame)[None]).labels[0]  # with or without confidence
    if labels.shape != size:
        labels = np.asarray(Image.fromarray(np.ascontiguousarray(labels)).resize(size[::-1], Image.NEAREST))
    return labels


@dataclass
class Evaluation:
    """Per model, in the order given: its confusion matrix, and the share of pixels (ignored ones included) it
    labels as the first model does (1.0 for the first)."""

    meters: list[ConfusionMeter]
    same_as_first: list[float]


def evaluate(models: Sequence, samples: Sequence, progress: bool = True,
             each: Callable[[object, list[np.ndarray], np.ndarray], None] | None = None) -> Evaluation:
    """Run every ``Segmenter`` in ``models`` on every sample, scored with ``train.metrics``; ``each(sample,
    predictions, label)`` sees every image's predictions (to save or re-score them)."""
    from train.data.datasets import load_image, load_label

    meters = [ConfusionMeter() for _ in models]
    same, total = np.zeros(len(models), dtype=np.int64), 0
    # disable only when asked: an explicit disable=False would override the user's TQDM_DISABLE
    bar = {} if progress else {"disable": True}
    for sample in tqdm(samples, desc="miou", unit="img", **bar):
        image = load_image(sample.image)
        frame, label = np.asarray(image), load_label(sample, image.size)
        preds = [predict(seg, frame, label.shape) for seg in models]
        for meter, pred in zip(meters, preds):
            meter.update(pred, label)
        same += [int((pred == preds[0]).sum()) for pred in preds]
        total += label.size
        if each is not None:
            each(sample, preds, label)
    return Evaluation(meters, [float(n / total) if total else float("nan") for n in same])
