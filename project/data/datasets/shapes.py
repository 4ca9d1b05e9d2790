"""Annotation-tool shapes (rectangles, circles, ellipses) as COCO polygons."""

from __future__ import annotations

import math
from typing import List

ELLIPSE_VERTICES = 32


def rectangle_polygon(x0: float, y0: float, x1: float, y1: float) -> List[float]:
    """The flat polygon ``[x, y, ...]`` of an axis-aligned rectangle given by two corners."""
    left, right = sorted((float(x0), float(x1)))
    top, bottom = sorted((float(y0), float(y1)))
    return [left, top, right, top, right, bottom, left, bottom]


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0) -> List[float]:
    """A flat ``ELLIPSE_VERTICES``-gon on the ellipse with centre (cx, cy), radii (rx, ry) and
    the rx axis turned by ``theta`` radians (clockwise on screen, y pointing down)."""
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    points: List[float] = []
    for k in range(ELLIPSE_VERTICES):
        a = 2 * math.pi * k / ELLIPSE_VERTICES
        dx, dy = rx * math.cos(a), ry * math.sin(a)
        points += [cx + dx * cos_t - dy * sin_t, cy + dx * sin_t + dy * cos_t]
    return points
