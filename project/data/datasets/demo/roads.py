"""``road_demo``: a road curving towards the horizon through grass, with vehicles on it and
pedestrians on and beside it, seen in perspective. Classes "road", "vehicle", "pedestrian";
masks are compressed RLE.

Objects are drawn far to near and never overlap each other; the road's mask is what remains
visible of it. Every mask is taken from the drawn pixels, so annotation and image agree.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import cv2
import numpy as np

from ....structures import MaskCrop
from ....structures.rle import encode_mask
from .generated import GeneratedSplit

THING_CLASSES = ("road", "vehicle", "pedestrian")
ROAD, VEHICLE, PEDESTRIAN = 0, 1, 2
VERSION = "v2"
HEIGHT, WIDTH = 256, 384
MIN_VISIBLE_PIXELS = 40


class _Road:
    """The road's geometry: depth t in [0, 1] runs from the image bottom to the horizon."""

    def __init__(self, rng: np.random.Generator, horizon: float):
        self.horizon = horizon
        self.offset = rng.uniform(-0.15, 0.15) * WIDTH
        self.curve = rng.uniform(-0.5, 0.5) * WIDTH
        self.half_width = rng.uniform(0.3, 0.45) * WIDTH

    def y(self, t: np.ndarray) -> np.ndarray:
        return HEIGHT - (HEIGHT - self.horizon) * (1 - (1 - t) ** 1.6)

    def centre(self, t: np.ndarray) -> np.ndarray:
        return WIDTH / 2 + self.offset + self.curve * t**2

    def width_at(self, t: np.ndarray) -> np.ndarray:
        return self.half_width * (1 - 0.93 * t)

    def polygon(self) -> np.ndarray:
        t = np.linspace(0, 1, 40)
        left = np.stack([self.centre(t) - self.width_at(t), self.y(t)], axis=1)
        right = np.stack([self.centre(t) + self.width_at(t), self.y(t)], axis=1)[::-1]
        return np.concatenate([left, right]).astype(np.int32)


def _textured(rng: np.random.Generator, colour: Tuple[float, float, float], amount: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0, 1, (HEIGHT, WIDTH)).astype(np.float32), (0, 0), 1.5)
    return np.asarray(colour, dtype=np.float32) * (1 + amount * noise[:, :, None])


def _vehicle(
    rng: np.random.Generator, x: float, bottom: float, scale: float
) -> List[Tuple[np.ndarray, Tuple[float, ...]]]:
    """Polygons (int32 points) and BGR colours: a body with a cabin, windows and wheels."""
    w = scale * rng.uniform(0.2, 0.28) * WIDTH
    h = w * rng.uniform(0.55, 0.75)
    body_top = bottom - 0.55 * h
    colour = tuple(
        float(c)
        for c in rng.choice(
            [[40, 40, 200], [200, 80, 30], [230, 230, 230], [30, 200, 230], [40, 40, 40], [60, 160, 60]]
        )
    )
    body = [
        (x - w / 2, bottom - 0.12 * h),
        (x - w / 2, body_top),
        (x - 0.32 * w, body_top),
        (x - 0.22 * w, bottom - h),
        (x + 0.22 * w, bottom - h),
        (x + 0.32 * w, body_top),
        (x + w / 2, body_top),
        (x + w / 2, bottom - 0.12 * h),
    ]
    window = [
        (x - 0.26 * w, body_top),
        (x - 0.18 * w, bottom - 0.9 * h),
        (x + 0.18 * w, bottom - 0.9 * h),
        (x + 0.26 * w, body_top),
    ]
    parts = [(np.asarray(body), colour), (np.asarray(window), (70.0, 50.0, 40.0))]
    for side in (-1, 1):
        cx = x + side * 0.3 * w
        wheel = [
            (cx - 0.1 * w, bottom),
            (cx - 0.1 * w, bottom - 0.2 * h),
            (cx + 0.1 * w, bottom - 0.2 * h),
            (cx + 0.1 * w, bottom),
        ]
        parts.append((np.asarray(wheel), (20.0, 20.0, 20.0)))
    return [(np.round(p).astype(np.int32), c) for p, c in parts]


def _pedestrian(
    rng: np.random.Generator, x: float, bottom: float, scale: float
) -> List[Tuple[np.ndarray, Tuple[float, ...]]]:
    """Polygons and BGR colours: legs, torso and head of a standing person."""
    h = scale * rng.uniform(0.26, 0.34) * HEIGHT
    w = h * 0.32
    shirt = tuple(float(c) for c in rng.uniform(40, 240, 3))
    trousers = (float(rng.uniform(20, 90)),) * 3
    skin = (120.0, 160.0, 210.0)
    hip, shoulder = bottom - 0.48 * h, bottom - 0.82 * h
    legs = [
        (x - 0.4 * w, bottom),
        (x - 0.3 * w, hip),
        (x + 0.3 * w, hip),
        (x + 0.4 * w, bottom),
        (x + 0.08 * w, bottom),
        (x, hip + 0.15 * h),
        (x - 0.08 * w, bottom),
    ]
    torso = [(x - 0.45 * w, hip), (x - 0.5 * w, shoulder), (x + 0.5 * w, shoulder), (x + 0.45 * w, hip)]
    radius = 0.1 * h
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    head = np.stack([x + radius * np.cos(angles), shoulder - 0.9 * radius + radius * np.sin(angles)], axis=1)
    parts = [(np.asarray(legs), trousers), (np.asarray(torso), shirt), (head, skin)]
    return [(np.round(p).astype(np.int32), c) for p, c in parts]


def _objects(rng: np.random.Generator, road: _Road) -> List[Tuple[int, float, float, float]]:
    """(class, x, bottom y, scale) of the vehicles and pedestrians, sorted far to near."""
    objects = []
    for _ in range(int(rng.integers(1, 5))):
        t = rng.uniform(0.03, 0.65)
        x = road.centre(t) + rng.uniform(-0.6, 0.6) * road.width_at(t)
        objects.append((VEHICLE, float(x), float(road.y(t)), float(1 - 0.9 * t)))
    for _ in range(int(rng.integers(1, 5))):
        t = rng.uniform(0.03, 0.55)
        side = rng.choice([-1.0, 1.0])
        x = road.centre(t) + side * road.width_at(t) * rng.uniform(0.7, 1.25)
        objects.append((PEDESTRIAN, float(x), float(road.y(t)), float(1 - 0.9 * t)))
    return sorted(objects, key=lambda o: o[2])


def draw_road_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """One ``road_demo`` image (BGR uint8) and its annotations (RLE masks, XYWH boxes)."""
    horizon = rng.uniform(0.3, 0.42) * HEIGHT
    road = _Road(rng, horizon)
    rows = np.arange(HEIGHT, dtype=np.float32)[:, None, None]
    sky = (
        np.asarray([235, 200, 150], np.float32)
        + (np.asarray([245, 230, 205], np.float32) - [235, 200, 150]) * rows / horizon
    )
    grass = _textured(rng, (50 + rng.uniform(0, 30), 130 + rng.uniform(0, 40), 60 + rng.uniform(0, 30)), 0.1)
    image = np.where(rows < horizon, sky * np.ones((1, WIDTH, 1), np.float32), grass)

    owner = np.full((HEIGHT, WIDTH), -1, dtype=np.int32)  # index into `instances`, -1 background
    road_pixels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    cv2.fillPoly(road_pixels, [road.polygon()], 1)
    asphalt = _textured(rng, (rng.uniform(85, 125),) * 3, 0.08)
    image[road_pixels == 1] = asphalt[road_pixels == 1]
    for t0 in np.arange(0.02, 0.9, 0.09):  # dashed centre line
        t = np.linspace(t0, t0 + 0.045, 6)
        line = np.stack([road.centre(t), road.y(t)], axis=1).astype(np.int32)
        cv2.polylines(image, [line], False, (235, 235, 235), max(1, int(4 * (1 - t0))))
    owner[road_pixels == 1] = 0
    instances = [ROAD]

    taken = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for category, x, bottom, scale in _objects(rng, road):
        parts = (_vehicle if category == VEHICLE else _pedestrian)(rng, x, bottom, scale)
        silhouette = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        cv2.fillPoly(silhouette, [p for p, _ in parts], 1)
        grown = cv2.dilate(silhouette, np.ones((5, 5), np.uint8)).astype(bool)
        if (grown & taken).any() or silhouette.sum() < MIN_VISIBLE_PIXELS:
            continue
        taken |= silhouette.astype(bool)
        for points, colour in parts:
            cv2.fillPoly(image, [points], colour)
        owner[silhouette == 1] = len(instances)
        instances.append(category)

    image = image + rng.normal(0, rng.uniform(2, 5), image.shape).astype(np.float32)
    annotations = []
    for index, category in enumerate(instances):
        mask = owner == index
        if mask.sum() < MIN_VISIBLE_PIXELS:
            continue
        x0, y0, x1, y1 = MaskCrop.from_array(mask).bounding_box()
        annotations.append(
            {"category_id": category, "segmentation": encode_mask(mask), "bbox": [x0, y0, x1 - x0, y1 - y0]}
        )
    return np.clip(image, 0, 255).astype(np.uint8), annotations


def road_demo_splits() -> List[GeneratedSplit]:
    return [
        GeneratedSplit("road_demo", "train", VERSION, 1, 64, THING_CLASSES, draw_road_image),
        GeneratedSplit("road_demo", "val", VERSION, 2, 16, THING_CLASSES, draw_road_image),
    ]
