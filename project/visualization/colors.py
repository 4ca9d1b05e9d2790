"""Colours for drawing instances: a fixed palette and the ways of assigning it.

Colours are RGB uint8 triples. The palette is deterministic (golden-ratio steps around the hue
circle), so the same instance index or class id gets the same colour in every picture.
"""

from __future__ import annotations

import colorsys
from enum import Enum
from typing import Optional, Sequence

import numpy as np

PALETTE_SIZE = 64


class ColorMode(Enum):
    """How ``Visualizer`` colours instances (Detectron2's names).

    IMAGE: one colour per instance, on the image. SEGMENTATION: one colour per class (the
    metadata's ``thing_colors`` when it has them). IMAGE_BW: one colour per instance, and the
    image outside every mask is turned grey so the objects stand out.
    """

    IMAGE = 0
    SEGMENTATION = 1
    IMAGE_BW = 2


def _palette(size: int) -> np.ndarray:
    hues = (np.arange(size) * 0.618033988749895) % 1.0
    rows = []
    for i, hue in enumerate(hues):
        # Alternate saturation and value a little so neighbours in hue still differ.
        saturation = 0.85 if i % 2 == 0 else 0.65
        value = 0.95 if i % 3 else 0.8
        rows.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return np.rint(np.array(rows) * 255).astype(np.uint8)


PALETTE = _palette(PALETTE_SIZE)


def palette_colors(indices: Sequence[int]) -> np.ndarray:
    """(N, 3) uint8 RGB colours of palette entries ``indices`` (taken modulo the palette size)."""
    return PALETTE[np.asarray(indices, dtype=np.int64).reshape(-1) % PALETTE_SIZE]


def class_colors(classes: Sequence[int], thing_colors: Optional[Sequence[Sequence[int]]] = None) -> np.ndarray:
    """(N, 3) uint8 RGB colour of each class id: ``thing_colors[c]`` (RGB, 0-255, as in
    Detectron2's metadata) when given and long enough, else the palette entry of ``c``."""
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if thing_colors is not None and len(classes) and classes.max() < len(thing_colors):
        return np.asarray(thing_colors, dtype=np.float64)[classes].clip(0, 255).round().astype(np.uint8)
    return palette_colors(classes)


def darker(colors: np.ndarray, factor: float = 0.55) -> np.ndarray:
    """``colors`` (…, 3) uint8 scaled towards black by ``factor`` (for label backgrounds)."""
    return np.rint(colors.astype(np.float32) * factor).astype(np.uint8)
