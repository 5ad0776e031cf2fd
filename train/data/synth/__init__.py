"""Procedural day/night street scenes written in the layouts of the real datasets.

``generate(out, layout, count, size, seed)`` writes Cityscapes-, Dark Zurich-, Nighttime Driving-
and ACDC-style folders (see ``LAYOUTS``) that the loaders in ``train.data`` read exactly like the
real datasets. Cityscapes-style scenes use an overcast daytime look, Dark Zurich day a sunny one,
and every night image is rendered from the same kind of scene with low light, colour cast, lamps,
headlights, glare and sensor noise, so there is a domain gap on both axes.

``count`` is the number of training images (Cityscapes train, Dark Zurich pairs, ACDC train);
validation and test sets get ``max(2, count // 4)`` images. Output is deterministic per seed.
"""
from __future__ import annotations

import csv
import ctypes
import io
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from runtime.atomic import atomic_write
from runtime.classes import IGNORE_INDEX, TRAIN_ID_TO_LABEL_ID
from runtime.errors import DannetError

from .render import Camera, render
from .scene import Scene, sample_dynamic, sample_static

LAYOUTS = ("cityscapes", "darkzurich", "nightdriving", "acdc")
#: the pairs CSV (night_stem,day_stem per line) that the generator writes and DANNet's code reads
PAIRS_CSV = "zurich_dn_pair_train.csv"
_EGO_LABEL_ID = 1  # Cityscapes "ego vehicle": not evaluated (trainId 255)
#: the smallest side of a generated image: below it a scene's lamps, signs and people have no pixels to be drawn in
MIN_SIDE = 32


def check_size(size: tuple[int, int], setting: str = "--size") -> None:
    """Refuse, naming ``setting``, an image size the generator cannot draw a scene at: before any work."""
    if min(size) < MIN_SIDE:
        raise DannetError(f"{setting} {size[0]}x{size[1]}: the generator draws images of at least "
                          f"{MIN_SIDE}x{MIN_SIDE}")


def check_new(out: Path) -> None:
    """Refuse a folder to generate into that already holds anything (``generate`` says why): before any work."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DannetError(f"{out}: already exists and is not an empty folder; generate into a new or empty one "
                          "(files of another set would be read as part of this one)")


def _keep_freed_memory() -> None:
    """Keep freed full-image buffers in the heap instead of returning them to the OS.

    glibc unmaps large freed blocks, so every full-image temporary page-faults afresh; measured
    here, that was a third of the render time. Only affects glibc; elsewhere it does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    libc.mallopt(m_mmap_threshold, 64 << 20)
    libc.mallopt(m_trim_threshold, 256 << 20)
    libc.mallopt(m_top_pad, 64 << 20)


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)


def _misaligned(rng: np.random.Generator) -> Camera:
    """A GPS-aligned pair's camera offset: a few percent of shift and zoom."""
    return Camera(dx=rng.uniform(-0.04, 0.04), dy=rng.uniform(-0.02, 0.02), zoom=rng.uniform(1.0, 1.08))


def _coarse(label: np.ndarray, margin: int) -> np.ndarray:
    """Coarse annotation: pixels within ``margin`` of a class boundary become ignore (255)."""
    out = label.copy()
    h, w = label.shape
    for dy in range(-margin, margin + 1, max(1, margin)):
        for dx in range(-margin, margin + 1, max(1, margin)):
            shifted = np.pad(label, margin, mode="edge")[margin + dy:margin + dy + h, margin + dx:margin + dx + w]
            out[shifted != label] = IGNORE_INDEX
    return out


def _invalid_mask(image: np.ndarray, scene: Scene, camera: Camera) -> np.ndarray:
    """Dark Zurich/ACDC-style invalid regions: far and too dark to label with confidence (1 = invalid)."""
    h, w = image.shape[:2]
    far = int(np.clip(camera.to_pixels(0.5, scene.horizon, w, h)[1] + 0.06 * h, 0, h))
    top = image[:far]
    invalid = np.zeros((h, w), dtype=np.uint8)
    invalid[:far] = np.maximum(np.maximum(top[..., 0], top[..., 1]), top[..., 2]) < 12
    return invalid


def _frame_stem(seq: str, index: int) -> str:
    return f"{seq}_frame_{index:06d}"


def _cityscapes(root: Path, count: int, size: tuple[int, int], rng: np.random.Generator) -> Iterator[None]:
    lut = np.zeros(256, dtype=np.uint8)
    for train_id, label_id in TRAIN_ID_TO_LABEL_ID.items():
        lut[train_id] = label_id
    for split, cities, n in (("train", ("aachen", "bochum"), count), ("val", ("frankfurt",), max(2, count // 4))):
        for i in range(n):
            city = cities[i % len(cities)]
            scene = sample_static(rng, size[1] / size[0])
            image, train_ids = render(scene, sample_dynamic(rng, scene), size, rng, look="cityscapes")
            label_ids = lut[train_ids]
            label_ids[int(size[0] * 0.93):] = _EGO_LABEL_ID  # the ego vehicle's bonnet
            stem = f"{city}_{i:06d}_000019"
            _save_png(image, root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            _save_png(label_ids, root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            yield


def _night_with_gt(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scene = sample_static(rng, size[1] / size[0])
    camera = _misaligned(rng)
    image, label = render(scene, sample_dynamic(rng, scene), size, rng, night=True, camera=camera)
    return image, label, _invalid_mask(image, scene, camera)


def _darkzurich(root: Path, count: int, size: tuple[int, int], rng: np.random.Generator) -> Iterator[None]:
    pairs = []
    for i in range(count):
        scene = sample_static(rng, size[1] / size[0])
        day, _ = render(scene, sample_dynamic(rng, scene), size, rng, look="zurich")
        yield
        night, _ = render(scene, sample_dynamic(rng, scene), size, rng, night=True, camera=_misaligned(rng))
        day_stem = f"train/day/GOPR0345/{_frame_stem('GOPR0345', i + 1)}"
        night_stem = f"train/night/GOPR0351/{_frame_stem('GOPR0351', i + 1)}"
        _save_png(day, root / "rgb_anon" / f"{day_stem}_rgb_anon.png")
        _save_png(night, root / "rgb_anon" / f"{night_stem}_rgb_anon.png")
        pairs.append((night_stem, day_stem))
        yield
    rows = io.StringIO(newline="")
    csv.writer(rows).writerows(pairs)
    atomic_write(root / PAIRS_CSV, rows.getvalue())  # the index a training run reads: never half written
    for i in range(max(2, count // 4)):
        image, label, invalid = _night_with_gt(rng, size)
        stem = _frame_stem("GOPR0356", i + 1)
        _save_png(image, root / "rgb_anon" / "val" / "night" / "GOPR0356" / f"{stem}_rgb_anon.png")
        _save_png(label, root / "gt" / "val" / "night" / "GOPR0356" / f"{stem}_gt_labelTrainIds.png")
        _save_png(invalid, root / "gt" / "val" / "night" / "GOPR0356" / f"{stem}_gt_invIds.png")
        yield
    for i in range(max(2, count // 4)):
        image, _, _ = _night_with_gt(rng, size)
        _save_png(image, root / "rgb_anon" / "test" / "night" / "GOPR0364" /
                  f"{_frame_stem('GOPR0364', i + 1)}_rgb_anon.png")
        yield


def _nightdriving(root: Path, count: int, size: tuple[int, int], rng: np.random.Generator) -> Iterator[None]:
    for i in range(max(2, count // 4)):
        image, label, _ = _night_with_gt(rng, size)
        stem = f"{i}_frame_{(i + 1) * 30:04d}"
        _save_png(image, root / "leftImg8bit" / "test" / "night" / f"{stem}_leftImg8bit.png")
        _save_png(_coarse(label, max(2, size[0] // 100)),
                  root / "gtCoarse_daytime_trainvaltest" / "test" / "night" / f"{stem}_gtCoarse_labelTrainIds.png")
        yield


def _acdc(root: Path, count: int, size: tuple[int, int], rng: np.random.Generator) -> Iterator[None]:
    for split, seq, n in (("train", "GOPR0351", count), ("val", "GOPR0606", max(2, count // 4)),
                          ("test", "GOPR0594", max(2, count // 4))):
        for i in range(n):
            image, label, invalid = _night_with_gt(rng, size)
            stem = _frame_stem(seq, i + 1)
            _save_png(image, root / "rgb_anon" / "night" / split / seq / f"{stem}_rgb_anon.png")
            if split != "test":
                _save_png(label, root / "gt" / "night" / split / seq / f"{stem}_gt_labelTrainIds.png")
                _save_png(invalid, root / "gt" / "night" / split / seq / f"{stem}_gt_invIds.png")
            yield


_WRITERS: dict[str, Callable[..., Iterator[None]]] = {
    "cityscapes": _cityscapes, "darkzurich": _darkzurich, "nightdriving": _nightdriving, "acdc": _acdc,
}


def images_written(layout: str, count: int) -> int:
    """How many images ``generate`` renders for a layout (a day/night pair counts twice)."""
    small = max(2, count // 4)
    return {"cityscapes": count + small, "darkzurich": 2 * count + 2 * small, "nightdriving": small,
            "acdc": count + 2 * small}[layout]


def generate(out: str | Path, layout: str, count: int, size: tuple[int, int], seed: int = 0,
             progress: Callable[[], None] | None = None) -> Path:
    """Write one synthetic dataset (``layout`` in ``LAYOUTS``) under ``out``; returns ``out``.

    Each layout has its own random stream derived from ``seed``, so ``--layout all`` and a single
    layout produce the same files for that layout. ``progress`` is called once per image.

    ``out`` must be new or empty: files of another set left beside these would be read as part of it (other
    sizes, other scenes), so the same seed would no longer mean the same data. The set is written in
    ``<out>.partial`` and renamed to ``out`` when complete, so an ``out`` that exists is a whole set, never
    the remains of an interrupted run (whose ``.partial`` folder the next run starts afresh).
    """
    if layout not in _WRITERS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if count < 1:
        raise ValueError(f"need a count >= 1, got {count}")
    check_size(size)
    out = Path(out)
    check_new(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _keep_freed_memory()
    rng = np.random.default_rng([seed, LAYOUTS.index(layout)])
    for _ in _WRITERS[layout](partial, count, size, rng):
        if progress is not None:
            progress()
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return out


def night_drive(scenes: int, frames_per_scene: int, size: tuple[int, int],
                seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A night driving clip: ``(rgb, trainIds)`` frames, the camera moving into each scene in turn (the
    view zooms towards the vanishing point) while lamps, glare and sensor noise change from frame to frame."""
    check_size(size)
    rng = np.random.default_rng([seed, 7])
    for _ in range(scenes):
        scene = sample_static(rng, size[1] / size[0])
        dynamic = sample_dynamic(rng, scene)
        for t in range(frames_per_scene):
            yield render(scene, dynamic, size, rng, night=True, camera=Camera(zoom=1.0 + 0.5 * t / frames_per_scene))
