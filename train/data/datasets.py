"""Datasets in the layouts they are distributed in: Cityscapes, Dark Zurich, Nighttime Driving, ACDC.

Every dataset builds its index when constructed and checks it then — root, split, every image's
label, every pair's two files, every file's image header, every label's size and mode against its
image — so a problem surfaces as one ``DatasetError`` line naming the path and what was expected,
before training starts. Decoding every pixel up front would cost as much as an epoch, so pixel data
is checked when it is read: a file whose compressed data is corrupt stops the run at that file,
named, in one line (also from a DataLoader worker).
"""
from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from runtime.classes import label_ids_to_train_ids
from runtime.errors import DataError

#: what Pillow raises for a file it cannot decode: a bad header, truncated or corrupt compressed data
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, zlib.error)
#: label images: one 8-bit channel of class ids
_LABEL_MODES = ("L", "P")


class DatasetError(DataError, ValueError):
    """A dataset that cannot be used; the message is one line naming the path and what was expected (exit 3)."""

    def __init__(self, message: str) -> None:
        # A DataLoader worker's error comes back re-raised as DatasetError("Caught DatasetError in DataLoader
        # worker process 0.\nOriginal Traceback ...\n...DatasetError: <message>"): keep the message only.
        lines = message.strip().splitlines()
        if len(lines) > 1 and lines[0].startswith("Caught DatasetError"):
            message = lines[-1].split("DatasetError: ", 1)[-1]
        super().__init__(message)


@dataclass(frozen=True)
class Sample:
    image: Path
    name: str  # relative stem, kept for predictions and submissions
    label: Path | None = None
    invalid: Path | None = None
    label_ids: bool = False  # label holds Cityscapes labelIds (mapped to trainIds on load)


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: not found (expected {what})")
    return path


def _check_readable(path: Path) -> tuple[tuple[int, int], str]:
    """The image's (width, height) and mode from its header, after checking its chunks (checksums)."""
    try:
        with Image.open(path) as im:
            size, mode = im.size, im.mode
            im.verify()
    except _DECODE_ERRORS as e:
        raise DatasetError(f"{path}: unreadable image ({e})") from None
    return size, mode


def _validate(samples: list[Sample], where: Path, pattern: str) -> list[Sample]:
    if not samples:
        raise DatasetError(f"{where}: no images matching {pattern} (empty split?)")
    for s in samples:
        for path in (s.image, s.label, s.invalid):
            if path is not None and not path.is_file():
                raise DatasetError(f"{path}: not found (expected beside {s.image.name})")
        image_size, _ = _check_readable(s.image)
        for path in (s.label, s.invalid):
            if path is not None:
                size, mode = _check_readable(path)
                _check_same_size(path, size, s.image, image_size)
                if mode not in _LABEL_MODES:
                    raise DatasetError(f"{path}: label image of mode {mode}; expected one 8-bit channel of class "
                                       f"ids (mode {' or '.join(_LABEL_MODES)}), e.g. *_labelTrainIds.png, not a "
                                       "colour image")
    return samples


def _check_same_size(path: Path, size: tuple[int, int], image: Path, image_size: tuple[int, int]) -> None:
    """A label map (or invalid mask) must have its image's (W, H): otherwise every pixel is scored against
    another pixel's class, silently. Checked in the index from the headers, and again after decoding (a file
    may have changed since)."""
    if size != image_size:
        raise DatasetError(f"{path}: label is {size[1]}x{size[0]} (HxW) but its image {image} is "
                           f"{image_size[1]}x{image_size[0]}; expected the same size")


def _decoded(path: Path, mode: str | None = None) -> Image.Image:
    """The fully decoded image (converted to ``mode``); a file that does not decode is named in one line."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode else im.copy()
    except _DECODE_ERRORS as e:
        raise DatasetError(f"{path}: cannot decode the image ({e}); the file is damaged: replace it") from None


def _sibling(image: Path, images_dir: Path, labels_dir: Path, image_suffix: str, label_suffix: str) -> Path:
    rel = image.relative_to(images_dir)
    return labels_dir / rel.parent / rel.name.replace(image_suffix, label_suffix)


def cityscapes_samples(root: Path, split: str, list_file: Path | None = None) -> list[Sample]:
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelIds.png``.

    ``*_gtFine_labelTrainIds.png`` is used instead where present. ``list_file`` restricts the set to
    the listed images (one path per line, relative to ``leftImg8bit/<split>`` or to ``root``).
    """
    images_dir = _need_dir(root / "leftImg8bit" / split, f"Cityscapes: {root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png")
    labels_dir = root / "gtFine" / split
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if list_file is not None:
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: image list not found")
        wanted = {line.strip().split()[0] for line in list_file.read_text().splitlines() if line.strip()}
        images = [p for p in images if str(p.relative_to(images_dir)) in wanted or str(p.relative_to(root)) in wanted]
    samples = []
    for image in images:
        train_ids = _sibling(image, images_dir, labels_dir, "_leftImg8bit.png", "_gtFine_labelTrainIds.png")
        label = train_ids if train_ids.is_file() else \
            _sibling(image, images_dir, labels_dir, "_leftImg8bit.png", "_gtFine_labelIds.png")
        samples.append(Sample(image, str(image.relative_to(images_dir))[: -len("_leftImg8bit.png")], label,
                              label_ids=label is not train_ids))
    return _validate(samples, images_dir, "<city>/*_leftImg8bit.png")


def _rgb_anon_samples(images_dir: Path, gt_dir: Path | None) -> list[Sample]:
    """Dark Zurich / ACDC style: ``<seq>/*_rgb_anon.png`` with ``<seq>/*_gt_labelTrainIds.png`` + ``_gt_invIds.png``."""
    samples = []
    for image in sorted(images_dir.glob("*/*_rgb_anon.png")):
        name = str(image.relative_to(images_dir))[: -len("_rgb_anon.png")]
        label = invalid = None
        if gt_dir is not None:
            label = _sibling(image, images_dir, gt_dir, "_rgb_anon.png", "_gt_labelTrainIds.png")
            inv = _sibling(image, images_dir, gt_dir, "_rgb_anon.png", "_gt_invIds.png")
            invalid = inv if inv.is_file() else None
        samples.append(Sample(image, name, label, invalid))
    return _validate(samples, images_dir, "<sequence>/*_rgb_anon.png")


def darkzurich_samples(root: Path, split: str) -> list[Sample]:
    """Dark Zurich night ``val`` (with GT and invalid masks) or ``test`` (images only)."""
    expected = f"Dark Zurich: {root}/rgb_anon/{split}/night/<sequence>/*_rgb_anon.png"
    images_dir = _need_dir(root / "rgb_anon" / split / "night", expected)
    gt_dir = _need_dir(root / "gt" / split / "night", f"Dark Zurich GT: {root}/gt/{split}/night") if split == "val" else None
    return _rgb_anon_samples(images_dir, gt_dir)


def acdc_night_samples(root: Path, split: str) -> list[Sample]:
    """ACDC night ``train``/``val`` (with GT) or ``test`` (images only)."""
    images_dir = _need_dir(root / "rgb_anon" / "night" / split,
                           f"ACDC: {root}/rgb_anon/night/{split}/<sequence>/*_rgb_anon.png")
    gt_dir = None if split == "test" else _need_dir(root / "gt" / "night" / split, f"ACDC GT: {root}/gt/night/{split}")
    return _rgb_anon_samples(images_dir, gt_dir)


def nightdriving_samples(root: Path) -> list[Sample]:
    """Nighttime Driving test: ``leftImg8bit/test/night/*`` with coarse trainId labels."""
    images_dir = _need_dir(root / "leftImg8bit" / "test" / "night",
                           f"Nighttime Driving: {root}/leftImg8bit/test/night/*_leftImg8bit.png")
    labels_dir = root / "gtCoarse_daytime_trainvaltest" / "test" / "night"
    samples = [Sample(p, p.name[: -len("_leftImg8bit.png")],
                      _sibling(p, images_dir, labels_dir, "_leftImg8bit.png", "_gtCoarse_labelTrainIds.png"))
               for p in sorted(images_dir.glob("*_leftImg8bit.png"))]
    return _validate(samples, images_dir, "*_leftImg8bit.png")


def load_image(path: Path) -> Image.Image:
    return _decoded(path, "RGB")


def load_label(sample: Sample, image_size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The trainId label map of a sample (None if it has none), checked against ``image_size`` (W, H)."""
    if sample.label is None:
        return None
    label = np.asarray(_decoded(sample.label), dtype=np.uint8)
    if image_size is not None:
        _check_same_size(sample.label, label.shape[1::-1], sample.image, image_size)
    return label_ids_to_train_ids(label) if sample.label_ids else label


class SegmentationDataset(Dataset):
    """Images with optional labels; items are dicts: ``image``, ``name`` and, where known, ``label``
    (trainIds, 255 = ignore) and ``invalid`` (bool mask of Dark Zurich/ACDC invalid regions).

    ``transform(image, label) -> (image tensor, label tensor or None)``.
    """

    def __init__(self, samples: list[Sample], transform: Callable) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = load_image(sample.image)
        size = image.size
        image, label = self.transform(image, load_label(sample, size))
        item = {"image": image, "name": sample.name}
        if label is not None:
            item["label"] = label
        if sample.invalid is not None:
            invalid = np.asarray(_decoded(sample.invalid))
            _check_same_size(sample.invalid, invalid.shape[1::-1], sample.image, size)
            item["invalid"] = torch.from_numpy(invalid != 0)
        return item


def pairs_csv_path(root: Path, pairs: str | Path) -> Path:
    """Where a pairs CSV named by a config or a flag is: an absolute path as given, a relative one under the
    dataset's root (where the released pairs file sits), so one name means the same file everywhere; ``~`` is
    the user's home."""
    pairs = Path(pairs).expanduser()
    return pairs if pairs.is_absolute() else root / pairs


class DarkZurichPairs(Dataset):
    """Unlabelled, coarsely aligned Dark Zurich night/day pairs: items ``{"night", "day", "name"}``.

    The pairs come from a CSV of ``night_stem,day_stem`` lines relative to ``rgb_anon/`` (the format
    the DANNet authors published, e.g. ``train/night/GOPR0351/GOPR0351_frame_000001,train/day/...``).
    ``transform(night, day)`` applies one random scale/crop/flip to both images, which must therefore
    have the same size (a day image of another size would be stretched onto the night one's grid).
    """

    def __init__(self, root: Path, pairs_csv: Path, transform: Callable) -> None:
        images_dir = _need_dir(root / "rgb_anon" / "train", f"Dark Zurich: {root}/rgb_anon/train/{{day,night}}/...")
        if not pairs_csv.is_file():
            raise DatasetError(f"{pairs_csv}: pairs CSV not found (expected lines 'night_stem,day_stem')")
        rows: list[tuple[int, Path, Path]] = []  # (line number, night, day)
        with open(pairs_csv, newline="") as f:
            for line_no, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise DatasetError(f"{pairs_csv}:{line_no}: expected 'night_stem,day_stem', got {','.join(row)!r}")
                night, day = (root / "rgb_anon" / f"{stem.strip()}_rgb_anon.png" for stem in row)
                for path, what in ((night, "night"), (day, "day")):
                    if not path.is_file():
                        raise DatasetError(f"{pairs_csv}:{line_no}: {what} image {path} not found")
                rows.append((line_no, night, day))
        if not rows:
            raise DatasetError(f"{pairs_csv}: no pairs (empty file)")
        for line_no, night, day in rows:
            (night_w, night_h), _ = _check_readable(night)
            (day_w, day_h), _ = _check_readable(day)
            if (day_w, day_h) != (night_w, night_h):
                raise DatasetError(f"{pairs_csv}:{line_no}: day image {day} is {day_h}x{day_w} but night image {night} "
                                   f"is {night_h}x{night_w}; expected the same size")
        self.pairs = [(night, day) for _, night, day in rows]
        self.images_dir, self.transform = images_dir, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        night_path, day_path = self.pairs[index]
        night, day = self.transform(load_image(night_path), load_image(day_path))
        return {"night": night, "day": day, "name": night_path.name[: -len("_rgb_anon.png")]}
