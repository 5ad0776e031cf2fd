"""The Cityscapes class table: the one place for class names, colours, ids and DANNet's class weights.

Everything here is numpy-only so that the runtime imports on machines without torch.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
NUM_CLASSES: int = len(CLASS_NAMES)
IGNORE_INDEX: int = 255

#: trainIds 0..10 are the static classes (road .. sky) that the static loss supervises.
STATIC_CLASSES: tuple[int, ...] = tuple(range(11))
DYNAMIC_CLASSES: tuple[int, ...] = tuple(range(11, NUM_CLASSES))

#: Official Cityscapes colours, indexed by trainId (uint8 RGB, shape 19 x 3).
PALETTE: np.ndarray = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

#: Cityscapes labelId -> trainId for the 19 evaluated classes; every other labelId maps to 255.
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
TRAIN_ID_TO_LABEL_ID: dict[int, int] = {t: l for l, t in LABEL_ID_TO_TRAIN_ID.items()}

#: Proportion of each class among the labelled pixels of Cityscapes train (DANNet paper, eq. 1).
CITYSCAPES_PROPORTIONS: np.ndarray = np.array(
    [
        0.36869696, 0.06084986, 0.22824049, 0.00655399, 0.00877272, 0.01227341, 0.00207795,
        0.0055127, 0.15928651, 0.01157818, 0.04018982, 0.01218957, 0.00135122, 0.06994545,
        0.00267456, 0.00235192, 0.00232904, 0.00098658, 0.00413907,
    ],
    dtype=np.float64,
)
CITYSCAPES_PROPORTIONS.setflags(write=False)

#: The std of the class weights DANNet uses while training and at test time (paper, section 3.4 / 4).
TRAIN_WEIGHTS_STD: float = 0.05
TEST_WEIGHTS_STD: float = 0.16

#: ImageNet normalisation applied to RGB images scaled to [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


#: the largest test-time std the command lines accept: with the Cityscapes proportions the rarest-to-
#: commonest spread reaches road's weight 0 at std 0.52, and a weight <= 0 turns re-weighting upside down
#: (and has no log, which the ``probs`` mode takes)
MAX_WEIGHTS_STD = 0.5
#: how the class weights re-weight the scores at test time (``eval.reweight``, ``--reweight``): multiply the
#: logits (the reference code, the default) or the probabilities (the paper)
REWEIGHTS = ("logits", "probs")


def class_weights(std: float, avg: float = 1.0, proportions: np.ndarray | None = None) -> np.ndarray:
    """DANNet's re-weighting of rare classes (paper eq. 1-2).

    ``w'_k = -log(a_k)`` is standardised (unbiased standard deviation) and rescaled to mean ``avg`` and
    standard deviation ``std``, so rare classes get weights above ``avg`` and frequent ones below.
    ``proportions`` defaults to the Cityscapes proportions; pass your own source set's to recompute.
    Equally frequent classes have no rare ones to favour: every weight is ``avg`` (their spread is 0).
    """
    a = CITYSCAPES_PROPORTIONS if proportions is None else np.asarray(proportions, dtype=np.float64)
    if a.ndim != 1 or a.size < 2 or np.any(a <= 0):
        raise ValueError(f"proportions must be a 1-D array of at least 2 positive values, got {a!r}")
    w = -np.log(a)
    if w.max() == w.min():  # (their computed std need not be exactly 0)
        return np.full(a.size, avg, dtype=np.float32)
    return ((w - w.mean()) / w.std(ddof=1) * std + avg).astype(np.float32)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a Cityscapes labelIds image to trainIds (255 for every class not evaluated)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut[np.asarray(label_ids, dtype=np.uint8)]


def colorize(labels: np.ndarray) -> np.ndarray:
    """RGB image (H x W x 3 uint8) of a trainId label map; ignored pixels are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut[np.asarray(labels, dtype=np.uint8)]
