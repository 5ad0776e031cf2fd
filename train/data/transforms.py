"""The DANNet data transforms: random scale, crop and flip for training, resize for evaluation.

Images travel as PIL images until ``to_tensor``; labels as uint8 numpy arrays, resized with nearest
neighbour and padded with the ignore index. Training images are resized with PIL's bicubic filter
and evaluation images with its bilinear one, as the reference code does (its joint transforms for
training, torchvision's default ``Resize`` for evaluation); PIL's filters antialias downscaling.
Training scales round sizes down, like the reference's ``int(size * scale)``. Randomness comes from
torch's default generator, which training seeds for every sample (``train.engine.SeededDataset``),
so a sample's augmentation depends on the run's seed and its place in the stream alone, whichever
worker loads it (the reference draws from Python's ``random``: same distributions, other draws).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from runtime.classes import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

from ..models.relight import SIDE_MULTIPLE

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ImageNet-normalised float CHW tensor."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
    return (x - _MEAN) / _STD


def denormalize(x: torch.Tensor) -> np.ndarray:
    """ImageNet-normalised CHW tensor -> uint8 HWC image (for previews)."""
    return (((x.cpu() * _STD + _MEAN).clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy())


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(()).item()


def _randint(n: int) -> int:
    return int(torch.randint(0, n, ()).item()) if n > 0 else 0


def _resize(image: Image.Image, label: np.ndarray | None, size_hw: tuple[int, int],
            image_filter: int = Image.BICUBIC):
    h, w = size_hw
    image = image.resize((w, h), image_filter)
    if label is not None:
        label = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return image, label


def _pad_crop(image: Image.Image, label: np.ndarray | None, crop_hw: tuple[int, int], top: int, left: int):
    """Crop ``crop_hw`` at (top, left) after padding bottom/right to at least the crop size."""
    ch, cw = crop_hw
    w, h = image.size
    if h < ch or w < cw:
        padded = Image.new("RGB", (max(w, cw), max(h, ch)))
        padded.paste(image, (0, 0))
        image = padded
        if label is not None:
            label = np.pad(label, ((0, max(0, ch - h)), (0, max(0, cw - w))), constant_values=IGNORE_INDEX)
    image = image.crop((left, top, left + cw, top + ch))
    if label is not None:
        label = label[top:top + ch, left:left + cw]
    return image, label


class TrainTransform:
    """Source-domain augmentation: random scale in ``scale``, random ``crop`` (H, W), random flip."""

    def __init__(self, crop: tuple[int, int] = (512, 512), scale: tuple[float, float] = (0.5, 1.0),
                 flip: bool = True) -> None:
        self.crop, self.scale, self.flip = crop, scale, flip

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        w, h = image.size
        s = _uniform(*self.scale)
        image, label = _resize(image, label, (max(1, int(h * s)), max(1, int(w * s))))
        w, h = image.size
        top, left = _randint(h - self.crop[0] + 1), _randint(w - self.crop[1] + 1)
        image, label = _pad_crop(image, label, self.crop, top, left)
        if self.flip and torch.rand(()).item() < 0.5:
            image, label = image.transpose(Image.FLIP_LEFT_RIGHT), label[:, ::-1]
        return to_tensor(image), torch.from_numpy(label.astype(np.int64))  # a copy: writable, contiguous


class PairTransform:
    """Target-domain augmentation of a day/night pair: ONE random scale, crop and flip for both.

    Scale in ``scale``, square ``crop`` of the scaled night image's size, then (reference code)
    resize to ``resize_to`` (None keeps the crop size, as the paper's text reads).
    """

    def __init__(self, crop: int = 960, scale: tuple[float, float] = (0.9, 1.1), resize_to: int | None = 512,
                 flip: bool = True) -> None:
        self.crop, self.scale, self.resize_to, self.flip = crop, scale, resize_to, flip

    def __call__(self, night: Image.Image, day: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        w, h = night.size
        s = _uniform(*self.scale)
        size = (max(1, int(h * s)), max(1, int(w * s)))
        top, left = _randint(size[0] - self.crop + 1), _randint(size[1] - self.crop + 1)
        flip = self.flip and torch.rand(()).item() < 0.5
        out = []
        for image in (night, day):
            image, _ = _resize(image, None, size)
            image, _ = _pad_crop(image, None, (self.crop, self.crop), top, left)
            if self.resize_to is not None and self.resize_to != self.crop:
                image, _ = _resize(image, None, (self.resize_to, self.resize_to))
            if flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(to_tensor(image))
        return out[0], out[1]


class EvalTransform:
    """Resize the image to the network input; the label keeps its full resolution.

    The input is the image scaled by ``scale`` (DANNet evaluates Dark Zurich's 1080x1920 frames at
    540x960, i.e. scale 0.5), each side rounded to the nearest multiple of ``SIDE_MULTIPLE``: the
    relighting net gives any other size back changed. The predictions are upsampled to the label's
    size, so the rounding moves no scored pixel.
    """

    def __init__(self, scale: float = 0.5) -> None:
        self.scale = scale

    def __call__(self, image: Image.Image, label: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, h = image.size
        size = tuple(SIDE_MULTIPLE * max(1, round(side * self.scale / SIDE_MULTIPLE)) for side in (h, w))
        if size != (h, w):
            image, _ = _resize(image, None, size, Image.BILINEAR)
        return to_tensor(image), None if label is None else torch.from_numpy(label.copy()).long()
