"""Data for DANNet: loaders for the real datasets' layouts, DANNet's transforms, a procedural generator.

``build_dataset(name, root)`` gives an evaluation dataset by the names the CLIs use (``DATASETS``);
training builds ``SegmentationDataset(cityscapes_samples(...), TrainTransform(...))`` and
``DarkZurichPairs(...)`` directly.
"""
from __future__ import annotations

from pathlib import Path

from .datasets import (DarkZurichPairs, DatasetError, Sample, SegmentationDataset, acdc_night_samples,
                       cityscapes_samples, darkzurich_samples, nightdriving_samples, pairs_csv_path)
from .transforms import EvalTransform, PairTransform, TrainTransform

#: evaluation datasets by CLI name -> what they are (for --help)
DATASETS: dict[str, str] = {
    "cityscapes": "Cityscapes val (gtFine labelIds)",
    "darkzurich-val": "Dark Zurich night val (50 images with GT and invalid masks)",
    "darkzurich-test": "Dark Zurich night test (151 images, no GT: predictions for submission)",
    "nightdriving": "Nighttime Driving test (50 images, coarse GT)",
    "acdc-night": "ACDC night val (GT; its test split: images only)",
    "synthetic": "the generator's Dark Zurich-style night val (root: the `dannet-train synth` output)",
}
#: the evaluation datasets with labels, which an mIoU needs (validation, ``dannet-train eval``)
LABELLED_DATASETS = tuple(name for name in DATASETS if name != "darkzurich-test")


def dataset_samples(name: str, root: str | Path, split: str | None = None) -> list[Sample]:
    """The checked index of an evaluation dataset by CLI name. ``~`` is the user's home also where no shell
    expanded it (``--set data.source.root=~/data/cityscapes``, a YAML config)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    if name == "cityscapes":
        return cityscapes_samples(root, split or "val")
    if name in ("darkzurich-val", "darkzurich-test"):
        return darkzurich_samples(root, name.split("-")[1])
    if name == "nightdriving":
        return nightdriving_samples(root)
    if name == "acdc-night":
        return acdc_night_samples(root, split or "val")
    if name == "synthetic":
        return darkzurich_samples(root / "darkzurich" if (root / "darkzurich").is_dir() else root, split or "val")
    raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def build_dataset(name: str, root: str | Path, split: str | None = None,
                  transform: EvalTransform | None = None) -> SegmentationDataset:
    """An evaluation dataset by CLI name, resized for the network by ``transform`` (default: half size)."""
    return SegmentationDataset(dataset_samples(name, root, split), transform or EvalTransform())


__all__ = ["DATASETS", "LABELLED_DATASETS", "build_dataset", "dataset_samples", "DatasetError", "Sample",
           "SegmentationDataset", "DarkZurichPairs", "pairs_csv_path", "cityscapes_samples", "darkzurich_samples",
           "nightdriving_samples", "acdc_night_samples", "TrainTransform", "PairTransform", "EvalTransform"]
