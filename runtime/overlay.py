"""Drawing labels over frames: palette overlay, mask, or both side by side; and for models with a confidence
output, the confidence as a grey picture or as the overlay darkened where confidence is low (numpy only)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .classes import CLASS_NAMES, PALETTE

LEGEND_WIDTH, LEGEND_ROW = 120, 14
#: what ``--visualize`` accepts; the last two need a model exported with ``--confidence``
MODES = ("overlay", "mask", "both", "confidence", "overlay-confidence")
CONFIDENCE_MODES = ("confidence", "overlay-confidence")


def _at_size(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 map (labels or confidence levels) at ``size``, nearest neighbour: values are never blended."""
    if values.shape == size:
        return values
    return np.asarray(Image.fromarray(values).resize(size[::-1], Image.NEAREST))


def mask(labels: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Palette colours of a label map (H x W x 3 uint8); labels outside the palette are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = palette
    return lut[labels]


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5, palette: np.ndarray = PALETTE) -> np.ndarray:
    """``(1 - alpha) * frame + alpha * colour``, with labels resized (nearest) to the frame if needed."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = mask(_at_size(labels, frame.shape[:2]), palette)
    a = np.uint16(round(alpha * 256))
    blended = (frame.astype(np.uint16) * (256 - a) + colours.astype(np.uint16) * a + 128) >> 8
    return blended.astype(np.uint8)


def grey(confidence: np.ndarray) -> np.ndarray:
    """Confidence levels as a grey RGB picture (H x W x 3): black is the least confident, white certain."""
    return np.repeat(confidence[..., None], 3, axis=2)


def darken(picture: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Each pixel's colour scaled by its confidence ``level / 255`` (rounded): dark where the model is unsure."""
    scaled = (picture.astype(np.uint16) * confidence[..., None].astype(np.uint16) + 127) // 255
    return scaled.astype(np.uint8)


def visualize(frame: np.ndarray, labels: np.ndarray, mode: str = "overlay", alpha: float = 0.5,
              palette: np.ndarray = PALETTE, confidence: np.ndarray | None = None) -> np.ndarray:
    """``overlay``, ``mask`` (at the frame size), ``both`` (overlay | mask side by side), and with the model's
    ``confidence`` levels: ``confidence`` (grey, at the frame size) or ``overlay-confidence`` (the overlay
    darkened by confidence)."""
    if mode == "overlay":
        return overlay(frame, labels, alpha, palette)
    if mode == "mask":
        return mask(_at_size(labels, frame.shape[:2]), palette)
    if mode == "both":
        return np.concatenate([overlay(frame, labels, alpha, palette),
                               mask(_at_size(labels, frame.shape[:2]), palette)], axis=1)
    if mode in CONFIDENCE_MODES:
        if confidence is None:
            raise ValueError(f"visualize mode {mode} needs confidence levels (a model exported with --confidence)")
        levels = _at_size(confidence, frame.shape[:2])
        return grey(levels) if mode == "confidence" else darken(overlay(frame, labels, alpha, palette), levels)
    raise ValueError(f"visualize mode must be one of {', '.join(MODES)}, got {mode!r}")


def legend(picture: np.ndarray, labels: np.ndarray, palette: np.ndarray = PALETTE,
           names: tuple[str, ...] = CLASS_NAMES) -> np.ndarray:
    """``picture`` with a panel on its right naming the classes in ``labels``, largest area first
    (as many as the height holds)."""
    height = picture.shape[0]
    panel = Image.new("RGB", (LEGEND_WIDTH, height), (32, 32, 32))
    draw, font = ImageDraw.Draw(panel), ImageFont.load_default()
    areas = np.bincount(labels.ravel(), minlength=256)[: len(names)]
    present = [c for c in np.argsort(-areas, kind="stable") if areas[c] > 0]
    for row, c in enumerate(present[: max(height // LEGEND_ROW, 0)]):
        y = row * LEGEND_ROW + 2
        draw.rectangle((4, y, 14, y + LEGEND_ROW - 4), fill=tuple(int(v) for v in palette[c]))
        draw.text((20, y - 1), names[c], fill=(230, 230, 230), font=font)
    return np.concatenate([picture, np.asarray(panel)], axis=1)
