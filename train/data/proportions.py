"""How often each class occurs in a labelled set: the ``a_k`` of DANNet's class weights (paper eq. 1).

The paper takes them from Cityscapes, its source; a model trained on another labelled source (its own
day images, the generator's) needs that source's: with Cityscapes' numbers, classes that are rare in
Cityscapes but common in the source (the generator's buses and trains) get the largest weights, in the
losses and in the test-time re-weighting.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from tqdm import tqdm

from runtime.classes import CLASS_NAMES, NUM_CLASSES

from .datasets import DatasetError, Sample, load_label


def class_pixel_counts(samples: Iterable[Sample], progress: bool = True) -> np.ndarray:
    """Pixels of each trainId over the samples' labels (ignored pixels not counted)."""
    samples = list(samples)
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for sample in tqdm(samples, desc="class proportions", unit="label", disable=not progress, leave=False):
        label = load_label(sample)
        if label is None:
            raise DatasetError(f"{sample.image}: has no label to count classes on (data.source.split must be a "
                               "labelled split)")
        counts += np.bincount(label.ravel(), minlength=256)[:NUM_CLASSES]
    return counts


def proportions_of(counts: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each class's share of the labelled pixels, and the names of the classes that never occur. An absent
    class gets the smallest share present: its weight is the rarest class's, not one that ``-log 0`` would
    make infinite (and whose size would squeeze every other weight towards the mean)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        raise DatasetError("the source labels hold no pixel of any of the 19 classes")
    shares = counts / counts.sum()
    absent = shares == 0
    shares[absent] = shares[~absent].min()
    return shares / shares.sum(), [name for name, missing in zip(CLASS_NAMES, absent) if missing]
