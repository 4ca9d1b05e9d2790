"""Instances as GeoJSON (RFC 7946) polygons tracing each mask's pixel edges, for QuPath and GIS.

Coordinates are image pixels of the full-resolution image: x to the right, y downward, pixel
(column x, row y) covering the square [x, x + 1] x [y, y + 1] (QuPath's convention). Every
vertex is a pixel corner (integers), so a polygon is the outline of its mask exactly: a pixel's
centre (x + 0.5, y + 0.5) lies inside the polygon exactly when the pixel is in the mask.

Parts: two pixels belong to one polygon when they share an edge (4-connectivity); pixels that
only touch at a corner are separate polygons of a MultiPolygon, touching at that point. A hole
is a 4-connected background region enclosed by one part; it may touch the outer ring or another
hole at a corner. So every ring is simple (no vertex twice) and rings and parts meet only at
single corners, as OGC Simple Features validity asks.

Orientation (the RFC 7946 right-hand rule, read on the coordinates as written): outer rings
have positive shoelace area, sum(x[i] * y[i+1] - x[i+1] * y[i]) > 0, i.e. counterclockwise
when y is drawn upward as GIS tools do; holes have negative area. On screen, where y grows
downward, outer rings therefore run clockwise.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np

from ..structures import CroppedBitMasks, Instances, MaskCrop
from ..visualization.colors import class_colors

logger = logging.getLogger(__name__)

Ring = List[List[int]]


def _next(points: np.ndarray) -> np.ndarray:
    """Each vertex's successor on the closed outline (the first follows the last)."""
    return np.concatenate([points[1:], points[:1]])


def _simplified(points: np.ndarray) -> np.ndarray:
    """The (n, 2) cyclic vertex list without repeated consecutive points and without vertices
    where the outline goes straight on."""
    points = points[np.any(points != _next(points), axis=1)]
    outgoing = _next(points) - points
    incoming = np.concatenate([outgoing[-1:], outgoing[:-1]])
    turn = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
    return points[turn != 0]


def _closed_ring(points: np.ndarray, outer: bool) -> Ring:
    """(n, 2) integer vertices as a closed GeoJSON ring, turned to the module's orientation."""
    following = _next(points)
    area2 = int(np.sum(points[:, 0] * following[:, 1] - following[:, 0] * points[:, 1]))
    if (area2 > 0) != outer:
        points = points[::-1]
    return np.concatenate([points, points[:1]]).tolist()


def _part_rings(part: np.ndarray, x0: int, y0: int) -> List[Ring]:
    """Outer ring then holes of ``part``, a bool (h, w) mask of one 4-connected component whose
    top-left pixel is image pixel (x0, y0).

    OpenCV traces the part doubled in size (each pixel a 2 x 2 block) and padded by one: a
    contour point (u, v) is then the centre of a half-pixel next to the outline, and (u // 2,
    v // 2) the pixel corner that outline point belongs to.
    """
    h, w = part.shape
    doubled = np.zeros((2 * h + 2, 2 * w + 2), dtype=np.uint8)
    doubled[1:-1, 1:-1] = part.repeat(2, axis=0).repeat(2, axis=1)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parents = hierarchy.reshape(-1, 4)[:, 3]
    offset = np.array([x0, y0], dtype=np.int64)
    rings = []
    for contour, parent in sorted(zip(contours, parents), key=lambda item: item[1] >= 0):
        corners = (contour.reshape(-1, 2).astype(np.int64) >> 1) + offset
        rings.append(_closed_ring(_simplified(corners), outer=parent < 0))
    return rings


def mask_geometry(crop: MaskCrop) -> Optional[Dict[str, Any]]:
    """GeoJSON geometry of the mask's pixels in image coordinates (see the module docstring):
    a Polygon, or a MultiPolygon when the mask has several 4-connected parts (in the raster
    order of their first pixel). None for an empty mask."""
    if not crop.mask.any():
        return None
    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop.mask.astype(np.uint8), connectivity=4)
    polygons = []
    for k in range(1, count):
        x, y, w, h = (int(v) for v in stats[k, :4])
        polygons.append(_part_rings(labels[y : y + h, x : x + w] == k, crop.x0 + x, crop.y0 + y))
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def _features(
    instances: Instances,
    class_names: Sequence[str],
    thing_colors: Optional[Sequence[Sequence[int]]],
    object_type: str,
) -> Iterator[Dict[str, Any]]:
    """One Feature per object with a non-empty mask, in row order; logs a warning naming the
    objects left out for an empty mask."""
    masks = instances.pred_masks
    if not isinstance(masks, CroppedBitMasks):
        raise TypeError(
            f"GeoJSON export needs instances.pred_masks as CroppedBitMasks, got {type(masks).__name__}; "
            "paste a whole image's masks with project.structures.paste_masks_as_crops"
        )
    classes = instances.pred_classes.detach().cpu().numpy().astype(np.int64)
    if len(classes) and (classes.min() < 0 or classes.max() >= len(class_names)):
        raise ValueError(
            f"class ids {classes.min()}..{classes.max()} do not all name one of the "
            f"{len(class_names)} class_names; pass the dataset's thing_classes"
        )
    colors = class_colors(classes, thing_colors).tolist()
    scores = instances.scores.detach().cpu().tolist() if instances.has("scores") else None
    empty = []
    for row, crop in enumerate(masks.crops):
        geometry = mask_geometry(crop)
        if geometry is None:
            empty.append(row + 1)
            continue
        properties: Dict[str, Any] = {
            "objectType": object_type,
            "classification": {"name": class_names[classes[row]], "color": colors[row]},
            "id": row + 1,
            "class_id": int(classes[row]),
        }
        if scores is not None:
            properties["score"] = float(scores[row])
            properties["measurements"] = {"score": float(scores[row])}
        yield {"type": "Feature", "geometry": geometry, "properties": properties}
    if empty:
        shown = ", ".join(map(str, empty[:20])) + (", ..." if len(empty) > 20 else "")
        logger.warning(
            "%d of %d objects have an empty mask and are not in the GeoJSON (ids %s)", len(empty), len(masks), shown
        )


def instances_to_geojson(
    instances: Instances,
    class_names: Sequence[str],
    *,
    thing_colors: Optional[Sequence[Sequence[int]]] = None,
    object_type: str = "detection",
) -> Dict[str, Any]:
    """A GeoJSON FeatureCollection with one Feature per object of ``instances`` (fields
    ``pred_masks`` as ``CroppedBitMasks``, ``pred_classes``, optionally ``scores``).

    Geometry: ``mask_geometry`` (pixel coordinates, see the module docstring). Properties:
    ``objectType`` (QuPath's object kind), ``classification`` ``{"name", "color": [r, g, b]}``
    (``thing_colors[class]`` when given, else the class's palette colour), ``id`` = row + 1
    (the label TIFF's id), ``class_id``, and with scores ``score`` and ``measurements``
    ``{"score"}`` (what QuPath lists in its measurement table). Objects with an empty mask are
    left out, and a warning names them.
    """
    features = list(_features(instances, class_names, thing_colors, object_type))
    return {"type": "FeatureCollection", "features": features}


def write_geojson(
    path: Union[str, os.PathLike],
    instances: Instances,
    class_names: Sequence[str],
    *,
    thing_colors: Optional[Sequence[Sequence[int]]] = None,
    object_type: str = "detection",
) -> int:
    """Write ``instances_to_geojson(...)`` to ``path`` one feature at a time (memory holds one
    object's polygon, not the whole collection). Returns the number of features written."""
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"type":"FeatureCollection","features":[')
        for feature in _features(instances, class_names, thing_colors, object_type):
            f.write(("," if written else "") + "\n" + json.dumps(feature, separators=(",", ":")))
            written += 1
        f.write("\n]}\n")
    return written
