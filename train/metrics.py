"""Confusion-matrix mIoU: the project's one implementation (numpy only), as the Cityscapes scripts define it.

IoU_c = TP / (TP + FP + FN) over all pixels of a dataset (not averaged per image); pixels labelled
255 are not counted; a class that appears in neither labels nor predictions has no IoU (NaN) and
is left out of the mean.
"""
from __future__ import annotations

import numpy as np

from runtime.classes import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """``cm[g, p]`` = number of pixels of ground-truth class g predicted as p (int64, C x C)."""
    pred, label = np.asarray(pred).ravel(), np.asarray(label).ravel()
    if pred.shape != label.shape:
        raise ValueError(f"prediction and label differ in size: {pred.size} vs {label.size}")
    keep = label != IGNORE_INDEX
    if np.any(label[keep] >= num_classes) or np.any(pred[keep] >= num_classes) or np.any(pred[keep] < 0):
        raise ValueError(f"labels and predictions must be in 0..{num_classes - 1} (or {IGNORE_INDEX} in labels)")
    index = label[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


class ConfusionMeter:
    """Accumulates a confusion matrix over a dataset."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        self.cm = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        self.cm += confusion_matrix(pred, label, self.cm.shape[0])

    @property
    def iou(self) -> np.ndarray:
        return iou_per_class(self.cm)

    @property
    def miou(self) -> float:
        return mean_iou(self.cm)

    def table(self, names: tuple[str, ...] = CLASS_NAMES) -> str:
        """Per-class IoU table in percent, then the mean; absent classes shown as '-'."""
        lines = [f"{'class':<15} {'IoU %':>6}"]
        for name, value in zip(names, self.iou):
            lines.append(f"{name:<15} {'-' if np.isnan(value) else f'{100 * value:6.2f}':>6}")
        lines.append(f"{'mIoU':<15} {100 * self.miou:6.2f}")
        return "\n".join(lines)
