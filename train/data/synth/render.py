"""Rasterise a procedural scene into an RGB image and a trainId label map, by day or by night.

Everything is vectorised numpy over each shape's bounding box, which keeps generation well above
20 images/s at 512x256 on one core. A ``Camera`` maps the scene's normalised coordinates to pixels
with a small shift and zoom, which is how a day/night pair is coarsely misaligned.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .scene import SKY, Scene, Shape

_GLASS = (0.25, 0.28, 0.32)
#: emissive shapes whose glow is at least this wide are street lamps, which also light the ground below
_LAMP_GLOW = 0.05

#: per daytime look: sky (top, horizon) colours, colour gain, saturation, contrast
LOOKS: dict[str, dict[str, object]] = {
    # Cityscapes: overcast German cities, muted colours, cool tint
    "cityscapes": {"sky": ((0.78, 0.82, 0.86), (0.9, 0.9, 0.9)), "gain": (0.95, 0.98, 1.03), "sat": 0.65, "contrast": 0.85},
    # Dark Zurich day: sunny Swiss streets, saturated, warm, deep blue sky, hard contrast
    "zurich": {"sky": ((0.25, 0.5, 0.9), (0.65, 0.78, 0.95)), "gain": (1.08, 1.02, 0.9), "sat": 1.25, "contrast": 1.2},
}


@dataclass(frozen=True)
class Camera:
    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 1.0

    def to_pixels(self, x: np.ndarray | float, y: np.ndarray | float, width: int, height: int):
        return ((np.asarray(x) - 0.5) * self.zoom + 0.5 + self.dx) * width, \
               ((np.asarray(y) - 0.5) * self.zoom + 0.5 + self.dy) * height


def _mask(shape: Shape, cam: Camera, width: int, height: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Pixel-centre coverage of a shape, restricted to its bounding box: ``(box, bool mask)``."""
    if shape.kind == "rect":
        x0, y0, x1, y1 = shape.params
        (px0, px1), (py0, py1) = cam.to_pixels(np.array([x0, x1]), np.array([y0, y1]), width, height)
        bx = (px0, px1)
        by = (py0, py1)
    elif shape.kind == "ellipse":
        cx, cy, rx, ry = shape.params
        pcx, pcy = cam.to_pixels(cx, cy, width, height)
        prx, pry = rx * cam.zoom * width, ry * cam.zoom * height
        bx, by = (pcx - prx, pcx + prx), (pcy - pry, pcy + pry)
    else:
        pts = np.array(shape.params, dtype=np.float64)
        px, py = cam.to_pixels(pts[:, 0], pts[:, 1], width, height)
        bx, by = (px.min(), px.max()), (py.min(), py.max())
    c0, c1 = max(int(np.floor(bx[0] - 0.5)) + 1, 0), min(int(np.floor(bx[1] - 0.5)) + 1, width)
    r0, r1 = max(int(np.floor(by[0] - 0.5)) + 1, 0), min(int(np.floor(by[1] - 0.5)) + 1, height)
    if c1 <= c0 or r1 <= r0:
        return None
    box = (slice(r0, r1), slice(c0, c1))
    if shape.kind == "rect":
        return box, np.ones((r1 - r0, c1 - c0), dtype=bool)
    ys = (np.arange(r0, r1) + 0.5)[:, None]
    xs = (np.arange(c0, c1) + 0.5)[None, :]
    if shape.kind == "ellipse":
        mask = ((xs - pcx) / max(prx, 1e-6)) ** 2 + ((ys - pcy) / max(pry, 1e-6)) ** 2 <= 1.0
    else:  # convex polygon: on the same side of every edge
        inside_pos = inside_neg = None
        for i in range(len(px)):
            j = (i + 1) % len(px)
            cross = (px[j] - px[i]) * (ys - py[i]) - (py[j] - py[i]) * (xs - px[i])
            pos, neg = cross >= 0, cross <= 0
            inside_pos = pos if inside_pos is None else inside_pos & pos
            inside_neg = neg if inside_neg is None else inside_neg & neg
        mask = inside_pos | inside_neg
    return (box, mask) if mask.any() else None


def _window_grid(shape: Shape, cam: Camera, box: tuple[slice, slice], mask: np.ndarray, width: int,
                 height: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows on a facade quad ((x0, top0), (x1, top1), (x1, g1), (x0, g0)): ``(window, lit)`` masks.

    Each pixel gets facade coordinates u (along the street) and v (top to ground); windows are the
    cells of a ``columns x rows`` grid, and a seeded third of them are lit.
    """
    columns, rows, seed = shape.windows
    (x0, t0), (x1, t1), _, (_, g0) = shape.params
    g1 = shape.params[2][1]
    px, py = cam.to_pixels(np.array([x0, x1]), np.array([t0, t1, g0, g1]), width, height)
    u = ((np.arange(box[1].start, box[1].stop) + 0.5 - px[0]) / (px[1] - px[0]))[None, :]
    top, ground = py[0] + (py[1] - py[0]) * u, py[2] + (py[3] - py[2]) * u
    v = ((np.arange(box[0].start, box[0].stop) + 0.5)[:, None] - top) / np.maximum(ground - top, 1e-6)
    cu, cv = u * columns, v * (rows + 0.5)
    window = mask & (cu % 1 > 0.25) & (cu % 1 < 0.75) & (cv % 1 > 0.2) & (cv % 1 < 0.7) & (cv < rows)
    lit_cells = np.random.default_rng(seed).random((rows + 1, columns + 1)) < 0.3
    lit = window & lit_cells[np.clip(cv.astype(int), 0, rows), np.clip(cu.astype(int), 0, columns)]
    return window, lit


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (a random grid upsampled bilinearly): textures and shading."""
    small = rng.integers(0, 256, (max(2, height // cell), max(2, width // cell)), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR), dtype=np.float32) / 127.5 - 1


_NOISE_MARGIN = 128
_noise_banks: dict[tuple[int, ...], np.ndarray] = {}


def _noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean noise with standard deviation ``std``: a window at a random offset into a bank of
    uniform noise made once per image size (drawing fresh noise for every image was a tenth of the
    render time; the bank comes from a fixed seed, so output stays deterministic per ``rng``)."""
    h, w = shape[:2]
    bank = _noise_banks.get(shape)
    if bank is None:
        bank = np.random.default_rng(0).random((h + _NOISE_MARGIN, w + _NOISE_MARGIN, *shape[2:]), dtype=np.float32)
        bank = _noise_banks[shape] = (bank - 0.5) * np.float32(12 ** 0.5)
    y, x = rng.integers(0, _NOISE_MARGIN + 1, 2)
    return bank[y:y + h, x:x + w] * np.float32(std)


def _add_glow(light: np.ndarray, cx: float, cy: float, sigma: float, color: np.ndarray, strength: float) -> None:
    """Add an isotropic Gaussian glow; separable, so only two short ``exp`` vectors are evaluated."""
    height, width = light.shape[:2]
    r = 3 * sigma
    r0, r1 = max(int(cy - r), 0), min(int(cy + r) + 1, height)
    c0, c1 = max(int(cx - r), 0), min(int(cx + r) + 1, width)
    if r1 <= r0 or c1 <= c0:
        return
    gy = np.exp(-((np.arange(r0, r1, dtype=np.float32) + 0.5 - cy) ** 2) / (2 * sigma * sigma))
    gx = np.exp(-((np.arange(c0, c1, dtype=np.float32) + 0.5 - cx) ** 2) / (2 * sigma * sigma))
    light[r0:r1, c0:c1] += (strength * gy)[:, None, None] * (gx[:, None] * color)[None]


def _sky_rows(sky: np.ndarray) -> int:
    """Rows down to the lowest sky pixel: sky-only work touches this band, not the whole image."""
    rows = np.flatnonzero(sky.any(axis=1))
    return int(rows[-1]) + 1 if rows.size else 0


def render(scene: Scene, dynamic: list[Shape], size: tuple[int, int], rng: np.random.Generator,
           night: bool = False, look: str = "cityscapes", camera: Camera = Camera()) -> tuple[np.ndarray, np.ndarray]:
    """Render ``scene`` with the given dynamic objects: ``(rgb uint8 HxWx3, trainIds uint8 HxW)``."""
    height, width = size
    label = np.full((height, width), SKY, dtype=np.uint8)
    # shapes paint indices into a colour table (cheaper than painting float RGB per shape); 0 = sky
    paint = np.zeros((height, width), dtype=np.uint16)
    colors = [(0.0, 0.0, 0.0)]
    horizon_px = float(camera.to_pixels(0.5, scene.horizon, width, height)[1])
    emissive: list[tuple[Shape, tuple]] = []
    lit_windows: list[tuple[tuple[slice, slice], np.ndarray]] = []
    for shape in [*scene.static, *dynamic]:
        hit = _mask(shape, camera, width, height)
        if hit is None:
            continue
        box, mask = hit
        if shape.label is not None:
            label[box][mask] = shape.label
        paint[box][mask] = len(colors)
        colors.append(shape.color)
        if shape.emissive is not None:
            emissive.append((shape, hit))
        if shape.windows is not None:
            window, lit = _window_grid(shape, camera, box, mask, width, height)
            paint[box][window] = len(colors)
            colors.append(_GLASS)
            lit_windows.append((box, lit))
    albedo = np.asarray(colors, dtype=np.float32)[paint]
    sky = label == SKY
    texture = 0.12 * _smooth_noise(rng, height, width, 6) + 0.05 * _smooth_noise(rng, height, width, 2)
    shade = 0.15 * _smooth_noise(rng, height, width, 48)
    img = albedo * (1 + texture + shade)[..., None]
    rows = np.clip((np.arange(height, dtype=np.float32) + 0.5) / max(horizon_px, 1.0), 0, 1)[:, None, None]
    if night:
        img = _night(img, label, sky, rows, emissive, lit_windows, camera, rng)
    else:
        params = LOOKS[look]
        top, bottom = (np.array(c, dtype=np.float32) for c in params["sky"])
        band = _sky_rows(sky)
        img[:band] = np.where(sky[:band, :, None], (top * (1 - rows) + bottom * rows)[:band], img[:band])
        gray = img.mean(axis=2, keepdims=True)
        img = gray + (img - gray) * params["sat"]
        img = (img - 0.5) * params["contrast"] + 0.5
        img = img * np.array(params["gain"], dtype=np.float32)
        img += _noise(rng, img.shape, 0.01)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), label


def _night(img: np.ndarray, label: np.ndarray, sky: np.ndarray, rows: np.ndarray, emissive: list,
           lit_windows: list, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """Low light with a colour cast, black sky, lamps/headlights lighting their surroundings, glare, noise."""
    height, width = label.shape
    ambient = rng.uniform(0.06, 0.14)
    cast = np.array([1.0, rng.uniform(0.7, 0.9), rng.uniform(0.45, 0.7)], dtype=np.float32)
    light = np.zeros_like(img)
    for shape, (box, mask) in emissive:
        color = np.array(shape.emissive, dtype=np.float32)
        rr, cc = np.nonzero(mask)
        cy, cx = box[0].start + rr.mean() + 0.5, box[1].start + cc.mean() + 0.5
        sigma = max(shape.glow * camera.zoom * width / 4, 1.0)
        _add_glow(light, cx, cy, sigma, color, 0.6)
        if shape.glow >= _LAMP_GLOW:
            _add_glow(light, cx, cy + 2 * sigma, 2 * sigma, color, 0.25)  # the pool of light below a lamp
    out = img * (ambient * cast + 3.0 * light)
    band = _sky_rows(sky)
    night_sky = np.array([0.02, 0.02, 0.03], dtype=np.float32) + 0.05 * cast * rows[:band]
    out[:band] = np.where(sky[:band, :, None], night_sky, out[:band])
    out += 0.15 * light * light  # glare: halos over everything near a bright source
    out = 1.0 - np.exp(-1.6 * out)  # the sensor's response saturates instead of clipping hard
    for shape, (box, mask) in emissive:
        out[box][mask] = np.minimum(1.0, np.array(shape.emissive, dtype=np.float32) * 0.8 + 0.3)
    for box, lit in lit_windows:
        out[box][lit] = (0.95, 0.75, 0.4)
    # sensor noise: shot noise grows with the signal, read noise does not; a little chroma noise
    out += _noise(rng, out.shape, 1.0) * (0.012 + 0.04 * np.sqrt(np.clip(out, 0, 1)))
    out += _noise(rng, (height, width, 1), 0.008)
    return out
