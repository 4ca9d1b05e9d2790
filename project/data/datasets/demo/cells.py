"""``cells_demo``: fluorescence-like images of nuclei, many of them touching, of varied size,
brightness, blur and noise. One class, "nucleus"; masks are polygons.

Each nucleus is a slightly wobbly ellipse (radii 9-19 px) drawn bright on a dark background,
with a darker rim so that touching nuclei stay separable by eye. Nuclei never overlap: the
pixels of each are exactly its polygon rasterised with COCO's rule, so the annotation and the
image agree to the pixel.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from ....structures import MaskCrop
from .generated import GeneratedSplit

THING_CLASSES = ("nucleus",)
VERSION = "v2"
IMAGE_SIDES = (256, 288, 320)
MAJOR_RADIUS = (9.0, 19.0)
NUM_NUCLEI = (10, 28)
VERTICES = 40
# BGR tints: grey, and the blue of a DAPI stain.
TINTS = ((1.0, 1.0, 1.0), (1.0, 0.55, 0.35))


def _outline(rng: np.random.Generator) -> np.ndarray:
    """An (N, 2) outline around (0, 0): an ellipse with random radii and angle, its radius
    wobbling by a few %."""
    a = rng.uniform(*MAJOR_RADIUS)
    b = a * rng.uniform(0.7, 1.0)
    angle = rng.uniform(0, np.pi)
    phi = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
    wobble = 1 + sum(rng.uniform(0, 0.04) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    x, y = a * np.cos(phi) * wobble, b * np.sin(phi) * wobble
    return np.stack([x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)], axis=1)


def _place(
    rng: np.random.Generator, occupied: np.ndarray, nuclei: List[Tuple[float, float, np.ndarray]]
) -> Optional[Tuple[np.ndarray, MaskCrop]]:
    """A new nucleus (flat polygon rounded to 0.01 px, as stored, and its pixels) overlapping
    none drawn so far; more than half the time pressed against one of them."""
    height, width = occupied.shape
    for _ in range(60):
        outline = _outline(rng)
        if nuclei and rng.uniform() < 0.6:
            nx, ny, other = nuclei[rng.integers(len(nuclei))]
            direction = rng.uniform(0, 2 * np.pi)
            unit = np.array([np.cos(direction), np.sin(direction)])
            # Reach of each outline along the line between the centres, then a gap of -1..1.5 px.
            distance = (other @ unit).max() + (-outline @ unit).max() + rng.uniform(-1.0, 1.5)
            cx, cy = nx + distance * unit[0], ny + distance * unit[1]
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        polygon = (outline + [cx, cy]).reshape(-1).round(2)
        crop = MaskCrop.from_polygons([polygon], (height, width))
        if crop.mask.sum() < 60:
            continue
        h, w = crop.mask.shape
        if not (occupied[crop.y0 : crop.y0 + h, crop.x0 : crop.x0 + w] & crop.mask).any():
            return polygon, crop
    return None


def _nucleus_intensity(rng: np.random.Generator, crop: MaskCrop) -> np.ndarray:
    """Brightness inside one nucleus: a level, a soft texture, and a darker 3-pixel rim."""
    level = rng.uniform(110, 235)
    h, w = crop.mask.shape
    texture = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
    inside = np.pad(crop.mask, 1).astype(np.uint8)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 3)[1:-1, 1:-1]
    rim = 0.55 + 0.45 * np.minimum(depth / 3.0, 1.0)
    return level * (1 + 0.08 * texture) * rim


def draw_cells_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """One ``cells_demo`` image (BGR uint8) and its annotations (polygons, XYWH boxes)."""
    height, width = (int(rng.choice(IMAGE_SIDES)) for _ in range(2))
    background = rng.uniform(5, 30)
    shading = cv2.resize(rng.uniform(-8, 8, (4, 4)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.full((height, width), background, dtype=np.float32) + shading
    occupied = np.zeros((height, width), dtype=bool)
    nuclei: List[Tuple[float, float, np.ndarray]] = []  # centre and outline relative to it
    annotations = []
    for _ in range(int(rng.integers(NUM_NUCLEI[0], NUM_NUCLEI[1] + 1))):
        placed = _place(rng, occupied, nuclei)
        if placed is None:
            continue
        polygon, crop = placed
        h, w = crop.mask.shape
        window = (slice(crop.y0, crop.y0 + h), slice(crop.x0, crop.x0 + w))
        occupied[window] |= crop.mask
        image[window][crop.mask] = _nucleus_intensity(rng, crop)[crop.mask]
        x0, y0, x1, y1 = crop.bounding_box()
        points = polygon.reshape(-1, 2)
        centre = points.mean(axis=0)
        nuclei.append((float(centre[0]), float(centre[1]), points - centre))
        annotations.append({"category_id": 0, "segmentation": [polygon.tolist()], "bbox": [x0, y0, x1 - x0, y1 - y0]})
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.4))
    image += rng.normal(0, rng.uniform(2, 7), image.shape).astype(np.float32)
    tint = np.asarray(TINTS[int(rng.integers(len(TINTS)))], dtype=np.float32)
    return np.clip(image[:, :, None] * tint, 0, 255).astype(np.uint8), annotations


def cells_demo_splits() -> List[GeneratedSplit]:
    return [
        GeneratedSplit("cells_demo", "train", VERSION, 1, 64, THING_CLASSES, draw_cells_image),
        GeneratedSplit("cells_demo", "val", VERSION, 2, 16, THING_CLASSES, draw_cells_image),
    ]
