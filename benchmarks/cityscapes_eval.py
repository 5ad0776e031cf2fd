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


def cityscapes_miou(predictions: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Class mIoU as cityscapesscripts computes it, for trainId predictions and labels."""
    try:
        from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    except ImportError:
        raise DannetError("--check-cityscapesscripts needs cityscapesscripts: pip install cityscapesscripts") from None
    with tempfile.TemporaryDirectory() as tmp:
        pred_files, gt_files = [], []
        for i, (pred, label) in enumerate(zip(predictions, labels)):
            pred_files.append(str(Path(tmp) / f"frankfurt_{i:06d}_000019_pred.png"))
            gt_files.append(str(Path(tmp) / f"frankfurt_{i:06d}_000019_gtFine_labelIds.png"))
            Image.fromarray(_to_label_ids(pred)).save(pred_files[-1])
            Image.fromarray(_to_label_ids(label)).save(gt_files[-1])
        args = cs.args
        args.evalInstLevelScore, args.JSONOutput, args.quiet, args.colorized = False, False, True, False
        with contextlib.redirect_stdout(io.StringIO()):
            result = cs.evaluateImgLists(pred_files, gt_files, args)
    return float(result["averageScoreClasses"])
