"""A PNG grid of what a loader produces, so a user can look at it before training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from runtime.atomic import atomic_save_image
from runtime.classes import colorize

from .transforms import denormalize


def _row(images: list[np.ndarray], height: int) -> np.ndarray:
    tiles = []
    for im in images:
        h, w = im.shape[:2]
        tiles.append(np.asarray(Image.fromarray(im).resize((max(1, round(w * height / h)), height), Image.NEAREST)))
    return np.concatenate(tiles, axis=1)


def preview_grid(items: list[dict], out: str | Path, height: int = 192) -> Path:
    """One row per item: the image (or night | day) and its colourised label; invalid pixels grey."""
    rows = []
    for item in items:
        if "night" in item:
            tiles = [denormalize(item["night"]), denormalize(item["day"])]
        else:
            tiles = [denormalize(item["image"])]
            if "label" in item:
                color = colorize(item["label"].numpy())
                if "invalid" in item:
                    color[item["invalid"].numpy()] = 128
                tiles.append(color)
        rows.append(_row(tiles, height))
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
    return atomic_save_image(out, grid)
