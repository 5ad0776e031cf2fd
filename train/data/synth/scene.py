"""Procedural street scenes: a scene is a list of labelled shapes in normalised image coordinates.

A scene is sampled once (static layout: road, sidewalks, buildings, walls, fences, terrain,
vegetation, poles with lights and signs) and its dynamic objects (people, riders, vehicles) are
sampled separately, so a day/night pair shares the street but not the traffic, like the GPS-aligned
Dark Zurich pairs. Coordinates are fractions of the image width (x) and height (y); ``perspective``
gives an object's scale from the row its base stands on, so objects shrink towards the horizon.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# trainIds (runtime.classes.CLASS_NAMES order)
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)


@dataclass
class Shape:
    """One filled primitive. ``label`` None paints colour only (a window keeps its building's label).

    kind ``rect``: (x0, y0, x1, y1); ``ellipse``: (cx, cy, rx, ry); ``poly``: convex polygon
    ((x, y), ...) in either winding. ``emissive`` shapes glow at night with radius ``glow`` (x units).
    """

    kind: str
    params: tuple
    label: int | None
    color: tuple[float, float, float] | None = None
    emissive: tuple[float, float, float] | None = None
    glow: float = 0.0
    instance: int = 0
    #: a facade's window grid: (columns, rows, seed); a third of the windows are lit at night
    windows: tuple[int, int, int] | None = None


@dataclass
class Scene:
    horizon: float
    vanish_x: float
    road_half_width: float  # at the bottom row, in x units
    static: list[Shape] = field(default_factory=list)
    dynamic: list[Shape] = field(default_factory=list)
    #: bottom-of-image region labelled ignore in Cityscapes (the ego vehicle's bonnet), as a fraction of H
    ego_height: float = 0.0

    def depth_scale(self, y: float) -> float:
        """Scale of an object whose base stands on row ``y``: 0 at the horizon, 1 at the bottom."""
        return max(0.0, (y - self.horizon) / (1.0 - self.horizon))

    def road_edges(self, y: float) -> tuple[float, float]:
        s = self.depth_scale(y)
        return self.vanish_x - s * self.road_half_width, self.vanish_x + s * self.road_half_width


def _jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float = 0.12) -> tuple[float, ...]:
    return tuple(float(np.clip(c / 255.0 * (1 + rng.uniform(-amount, amount)), 0, 1)) for c in color)


def sample_static(rng: np.random.Generator, aspect: float) -> Scene:
    """Road, sidewalks, the two street sides and the street furniture."""
    scene = Scene(horizon=rng.uniform(0.36, 0.48), vanish_x=rng.uniform(0.42, 0.58),
                  road_half_width=rng.uniform(0.32, 0.5))
    h, vx, hw = scene.horizon, scene.vanish_x, scene.road_half_width
    walk = rng.uniform(0.25, 0.45)  # sidewalk width relative to the road's half width
    shapes = scene.static
    # ground: terrain everywhere below the horizon, then sidewalks and road on top of it
    shapes.append(Shape("rect", (0, h, 1, 1), TERRAIN, (0.45, 0.55, 0.3)))
    for side in (-1, 1):
        outer = vx + side * hw * (1 + walk)
        shapes.append(Shape("poly", ((vx, h), (vx + side * hw, 1.0), (outer, 1.0)), SIDEWALK, (0.6, 0.58, 0.55)))
    shapes.append(Shape("poly", ((vx, h), (vx - hw, 1.0), (vx + hw, 1.0)), ROAD, (0.35, 0.35, 0.37)))
    # lane markings paint the road without changing its label
    for t0 in np.arange(0.05, 1.0, 0.18):
        t1 = t0 + 0.08
        y0, y1 = h + t0 * (1 - h), h + t1 * (1 - h)
        shapes.append(Shape("poly", ((vx - 0.004 * t0, y0), (vx + 0.004 * t0, y0), (vx + 0.01 * t1, y1),
                                     (vx - 0.01 * t1, y1)), None, (0.85, 0.85, 0.8)))
    for side in (-1, 1):
        _street_side(rng, scene, side, walk, aspect)
    return scene


def _street_side(rng: np.random.Generator, scene: Scene, side: int, walk: float, aspect: float) -> None:
    """Buildings (with windows), vegetation, walls, fences and poles along one side of the street."""
    h, vx, hw = scene.horizon, scene.vanish_x, scene.road_half_width
    shapes = scene.static
    edge_x = 0.0 if side < 0 else 1.0
    # facades: segments between the vanishing point and the image border, taller towards the camera
    bounds = np.sort(rng.uniform(0, 1, rng.integers(3, 6)))
    bounds = np.concatenate([[0.0], bounds, [1.0]])
    for t0, t1 in zip(bounds[:-1], bounds[1:]):
        x0, x1 = vx + side * 0.02 + (edge_x - vx) * t0, vx + side * 0.02 + (edge_x - vx) * t1
        # the ground line behind the sidewalk, in image rows, at the segment's two ends
        g0, g1 = h + 0.02 + 0.1 * t0, h + 0.02 + 0.1 * t1
        height = rng.uniform(0.25, 0.6)
        top0, top1 = h - height * (0.2 + 0.8 * t0), h - height * (0.2 + 0.8 * t1)
        kind = rng.choice(["building", "building", "building", "trees"])
        if kind == "building":
            color = _jitter(rng, [(150, 140, 130), (120, 110, 105), (170, 150, 120), (140, 140, 150)][rng.integers(4)], 0.2)
            shapes.append(Shape("poly", ((x0, top0), (x1, top1), (x1, g1), (x0, g0)), BUILDING, color,
                                windows=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), int(rng.integers(1 << 30)))))
        else:
            shapes.append(Shape("poly", ((x0, top0 + 0.05), (x1, top1 + 0.05), (x1, g1), (x0, g0)), VEGETATION,
                                _jitter(rng, (70, 110, 40))))
            for _ in range(rng.integers(2, 5)):
                cx, cy = rng.uniform(min(x0, x1), max(x0, x1)), rng.uniform(min(top0, top1), h)
                r = rng.uniform(0.03, 0.09)
                shapes.append(Shape("ellipse", (cx, cy, r, r * aspect * 0.9), VEGETATION, _jitter(rng, (60, 100, 35))))
        if rng.random() < 0.35:  # a wall or fence in front of the segment
            label = WALL if rng.random() < 0.5 else FENCE
            wh = rng.uniform(0.03, 0.08)
            color = (0.55, 0.52, 0.5) if label == WALL else (0.5, 0.42, 0.35)
            shapes.append(Shape("poly", ((x0, g0 - wh * (0.3 + t0)), (x1, g1 - wh * (0.3 + t1)), (x1, g1), (x0, g0)),
                                label, color))
    # poles with street lamps, traffic lights and signs on the sidewalk
    for _ in range(rng.integers(2, 5)):
        y = rng.uniform(scene.horizon + 0.08, 0.95)
        s = scene.depth_scale(y)
        left, right = scene.road_edges(y)
        x = (left if side < 0 else right) + side * s * hw * walk * rng.uniform(0.3, 0.8)
        pw, ph = 0.006 + 0.012 * s, (0.25 + 0.35 * s) * rng.uniform(0.9, 1.2)
        shapes.append(Shape("rect", (x - pw / 2, y - ph, x + pw / 2, y), POLE, (0.4, 0.4, 0.42)))
        top = y - ph
        what = rng.choice(["lamp", "light", "sign"])
        if what == "lamp":
            lamp = (x - side * 0.03 * (0.3 + s), top + 0.005)
            shapes.append(Shape("rect", (min(x, lamp[0]), top, max(x, lamp[0]), top + 0.008 + 0.01 * s), POLE,
                                (0.4, 0.4, 0.42)))
            shapes.append(Shape("ellipse", (lamp[0], lamp[1] + 0.01 * s, 0.01 + 0.01 * s, 0.006 + 0.006 * s), POLE,
                                (0.7, 0.7, 0.65), emissive=(1.0, 0.8, 0.45), glow=0.05 + 0.12 * s))
        elif what == "light":
            bw, bh = 0.012 + 0.02 * s, (0.035 + 0.06 * s)
            shapes.append(Shape("rect", (x - bw / 2, top, x + bw / 2, top + bh), LIGHT, (0.15, 0.15, 0.12)))
            lit = rng.integers(3)
            lamp_color = [(1.0, 0.1, 0.05), (1.0, 0.75, 0.0), (0.1, 1.0, 0.3)][lit]
            shapes.append(Shape("ellipse", (x, top + bh * (0.2 + 0.3 * lit), bw * 0.3, bh * 0.12), LIGHT,
                                tuple(0.3 + 0.5 * c for c in lamp_color), emissive=lamp_color, glow=0.02 + 0.04 * s))
        else:
            r = 0.012 + 0.025 * s
            color = [(0.85, 0.1, 0.1), (0.1, 0.3, 0.8), (0.95, 0.85, 0.1)][rng.integers(3)]
            if rng.random() < 0.5:
                shapes.append(Shape("ellipse", (x, top + r, r, r * aspect), SIGN, color))
            else:
                shapes.append(Shape("poly", ((x - r, top), (x + r, top), (x, top + 2 * r * aspect)), SIGN, color))


#: (label, width at scale 1, height at scale 1, where) for the dynamic classes
_DYNAMIC = [
    (CAR, 0.30, 0.22, "road"), (CAR, 0.30, 0.22, "road"), (TRUCK, 0.36, 0.42, "road"), (BUS, 0.40, 0.48, "road"),
    (TRAIN, 0.42, 0.5, "road"), (PERSON, 0.05, 0.3, "walk"), (PERSON, 0.05, 0.3, "walk"),
    (MOTORCYCLE, 0.09, 0.14, "road"), (BICYCLE, 0.08, 0.14, "walk"),
]


def sample_dynamic(rng: np.random.Generator, scene: Scene, count: int | None = None) -> list[Shape]:
    """People, riders and vehicles standing on the road or sidewalk, sorted far to near."""
    h, hw = scene.horizon, scene.road_half_width
    count = int(rng.integers(5, 10)) if count is None else count
    picks = [_DYNAMIC[i] for i in rng.integers(0, len(_DYNAMIC), count)]
    placed = sorted(((rng.uniform(h + 0.06, 1.02), p) for p in picks), key=lambda t: t[0])
    shapes: list[Shape] = []
    for instance, (y, (label, w, ht, where)) in enumerate(placed, start=1):
        s = scene.depth_scale(y)
        left, right = scene.road_edges(y)
        if where == "road":
            x = rng.uniform(left + 0.5 * w * s, right - 0.5 * w * s) if right - left > w * s else (left + right) / 2
        else:
            side = rng.choice([-1, 1])
            x = (left if side < 0 else right) + side * s * hw * rng.uniform(0.1, 0.3)
        shapes += _vehicle_or_person(rng, label, x, y, w * s, ht * s, instance)
    return shapes


def _vehicle_or_person(rng: np.random.Generator, label: int, x: float, y: float, w: float, h: float,
                       instance: int) -> list[Shape]:
    body = tuple(float(c) for c in rng.uniform(0.1, 0.9, 3))
    glass = (0.15, 0.18, 0.22)
    front = rng.random() < 0.5  # facing the camera: white headlights; else red tail lights
    lamp = (1.0, 0.95, 0.85) if front else (1.0, 0.1, 0.05)
    out: list[Shape] = []
    if label in (CAR, TRUCK, BUS, TRAIN):
        roof = {CAR: 0.45, TRUCK: 0.0, BUS: 0.0, TRAIN: 0.0}[label]
        if roof:
            out.append(Shape("poly", ((x - w * 0.35, y - h), (x + w * 0.35, y - h), (x + w / 2, y - h * roof),
                                      (x - w / 2, y - h * roof)), label, body, instance=instance))
            out.append(Shape("poly", ((x - w * 0.3, y - h * 0.93), (x + w * 0.3, y - h * 0.93),
                                      (x + w * 0.42, y - h * 0.5), (x - w * 0.42, y - h * 0.5)), None, glass))
        out.append(Shape("rect", (x - w / 2, y - h * (roof or 1.0), x + w / 2, y - h * 0.12), label, body,
                         instance=instance))
        if not roof:
            out.append(Shape("rect", (x - w * 0.42, y - h * 0.9, x + w * 0.42, y - h * 0.55), None, glass))
        for cx in (x - w * 0.38, x + w * 0.38):  # wheels, then lamps
            out.append(Shape("ellipse", (cx, y - h * 0.1, w * 0.09, h * 0.1), label, (0.05, 0.05, 0.05)))
            out.append(Shape("ellipse", (cx, y - h * 0.3, w * 0.06, h * 0.04), label, (0.8, 0.8, 0.75),
                             emissive=lamp, glow=w * (0.6 if front else 0.25)))
        return out
    if label in (MOTORCYCLE, BICYCLE):
        out.append(Shape("ellipse", (x - w * 0.3, y - h * 0.2, w * 0.22, h * 0.2), label, (0.05, 0.05, 0.05)))
        out.append(Shape("ellipse", (x + w * 0.3, y - h * 0.2, w * 0.22, h * 0.2), label, (0.05, 0.05, 0.05)))
        out.append(Shape("rect", (x - w * 0.35, y - h * 0.5, x + w * 0.35, y - h * 0.25), label, body))
        if label == MOTORCYCLE:
            out.append(Shape("ellipse", (x + w * 0.4, y - h * 0.45, w * 0.08, h * 0.06), label, (0.9, 0.9, 0.8),
                             emissive=(1.0, 0.95, 0.85), glow=w * 0.8))
        # the rider on top
        rw, rh = w * 0.45, h * 1.1
        out += _person(rng, RIDER, x, y - h * 0.4, rw, rh, instance)
        return out
    return _person(rng, PERSON, x, y, w, h, instance)


def _person(rng: np.random.Generator, label: int, x: float, y: float, w: float, h: float, instance: int) -> list[Shape]:
    coat = tuple(float(c) for c in rng.uniform(0.05, 0.7, 3))
    return [
        Shape("rect", (x - w * 0.3, y - h * 0.45, x - w * 0.05, y), label, (0.15, 0.15, 0.2), instance=instance),
        Shape("rect", (x + w * 0.05, y - h * 0.45, x + w * 0.3, y), label, (0.15, 0.15, 0.2), instance=instance),
        Shape("rect", (x - w / 2, y - h * 0.82, x + w / 2, y - h * 0.42), label, coat, instance=instance),
        Shape("ellipse", (x, y - h * 0.9, w * 0.28, h * 0.09), label, (0.85, 0.65, 0.5), instance=instance),
    ]
