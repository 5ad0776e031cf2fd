"""The official Cityscapes evaluation (``cityscapesscripts``) on trainId label maps, to cross-check
``train.metrics`` on the same predictions."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.classes import IGNORE_INDEX, TRAIN_ID_TO_LABEL_ID
from runtime.errors import DannetError


def _to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)  # 255 (ignore) -> labelId 0, "unlabeled", ignored in evaluation
    for train_id, label_id in TRAIN_ID_TO_LABEL_ID.items():
        lut[train_id] = label_id
    lut[IGNORE_INDEX] = 0
    return lut[train_ids]


class CityscapesScripts:
    """The official evaluation fed one image at a time: each prediction and label is written to a temporary
    folder as it comes, so a whole dataset's label maps are never held in memory (Cityscapes val at 1024x2048
    would be 2 GB). Open it before the work: a missing ``cityscapesscripts`` is said before minutes of it."""

    def __init__(self) -> None:
        try:
            from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling
        except ImportError:
            raise DannetError("--check-cityscapesscripts needs cityscapesscripts: pip install cityscapesscripts") \
                from None
        self._evaluation = evalPixelLevelSemanticLabeling
        self._folder = tempfile.TemporaryDirectory(prefix="dannet-cityscapes-")
        self._pred_files: list[str] = []
        self._gt_files: list[str] = []

    def add(self, prediction: np.ndarray, label: np.ndarray) -> None:
        """One image's trainId prediction and ground truth, written in Cityscapes' file naming."""
        stem = Path(self._folder.name) / f"frankfurt_{len(self._pred_files):06d}_000019"
        self._pred_files.append(f"{stem}_pred.png")
        self._gt_files.append(f"{stem}_gtFine_labelIds.png")
        Image.fromarray(_to_label_ids(prediction)).save(self._pred_files[-1])
        Image.fromarray(_to_label_ids(label)).save(self._gt_files[-1])

    def miou(self) -> float:
        """Class mIoU as cityscapesscripts computes it, over every image added."""
        args = self._evaluation.args
        args.evalInstLevelScore, args.JSONOutput, args.quiet, args.colorized = False, False, True, False
        with contextlib.redirect_stdout(io.StringIO()):
            result = self._evaluation.evaluateImgLists(self._pred_files, self._gt_files, args)
        return float(result["averageScoreClasses"])

    def close(self) -> None:
        self._folder.cleanup()

    def __enter__(self) -> "CityscapesScripts":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cityscapes_miou(predictions: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Class mIoU as cityscapesscripts computes it, for trainId predictions and labels."""
    with CityscapesScripts() as official:
        for prediction, label in zip(predictions, labels):
            official.add(prediction, label)
        return official.miou()
