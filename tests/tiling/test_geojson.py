"""GeoJSON export: the schema, and polygons that rasterise back to exactly their masks (a pixel
is inside when its centre is), on hand-made patterns, random masks and DSB2018 nuclei."""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Any, Dict, List, Tuple

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import require_dataset

from project.structures import CroppedBitMasks, Instances, MaskCrop
from project.tiling.geojson import instances_to_geojson, mask_geometry, write_geojson

Polygon = List[List[List[float]]]


def _polygons(geometry: Dict[str, Any]) -> List[Polygon]:
    return [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]


def _rasterise(polygons: List[Polygon], window: Tuple[int, int, int, int]) -> np.ndarray:
    """Even-odd rule at pixel centres over the pixels ``window = (x0, y0, x1, y1)``: a pixel
    (x, y) is inside when a ray from (x + 0.5, y + 0.5) towards +x crosses the rings' edges an
    odd number of times."""
    x0, y0, x1, y1 = window
    cy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    cx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for polygon in polygons:
        for ring in polygon:
            points = np.asarray(ring, dtype=np.float64)
            for (xa, ya), (xb, yb) in zip(points[:-1], points[1:]):
                if ya == yb:
                    continue
                spans = (ya > cy) != (yb > cy)
                inside ^= spans & (cx < xa + (cy - ya) * (xb - xa) / (yb - ya))
    return inside


def _assert_round_trip(crop: MaskCrop) -> Dict[str, Any]:
    """The crop's geometry lies within the crop and rasterises back to exactly its mask."""
    geometry = mask_geometry(crop)
    h, w = crop.mask.shape
    points = np.concatenate([np.asarray(ring) for polygon in _polygons(geometry) for ring in polygon])
    assert points[:, 0].min() >= crop.x0 and points[:, 0].max() <= crop.x0 + w
    assert points[:, 1].min() >= crop.y0 and points[:, 1].max() <= crop.y0 + h
    window = (crop.x0, crop.y0, crop.x0 + w, crop.y0 + h)
    np.testing.assert_array_equal(_rasterise(_polygons(geometry), window), crop.mask)
    return geometry


def _signed_area(ring: List[List[float]]) -> float:
    """Shoelace area of a closed ring on the coordinates as written."""
    r = np.asarray(ring, dtype=np.float64)
    return 0.5 * float(np.sum(r[:-1, 0] * r[1:, 1] - r[1:, 0] * r[:-1, 1]))


def _four_connected(pixels: np.ndarray) -> bool:
    """Whether the True pixels of a bool array form one 4-connected set (flood fill)."""
    todo = {tuple(p) for p in np.argwhere(pixels)}
    if not todo:
        return False
    queue = deque([todo.pop()])
    while queue:
        y, x = queue.popleft()
        for n in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if n in todo:
                todo.remove(n)
                queue.append(n)
    return not todo


def _check_feature_collection(collection: Dict[str, Any]) -> None:
    """A hand-written check of the RFC 7946 structure and the properties this export promises."""
    assert collection["type"] == "FeatureCollection"
    assert isinstance(collection["features"], list)
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        geometry = feature["geometry"]
        assert geometry["type"] in ("Polygon", "MultiPolygon")
        polygons = _polygons(geometry)
        assert polygons and all(isinstance(p, list) and p for p in polygons)
        for polygon in polygons:
            for ring in polygon:
                assert len(ring) >= 5 and ring[0] == ring[-1]
                assert all(len(point) == 2 and all(isinstance(v, (int, float)) for v in point) for point in ring)
        properties = feature["properties"]
        assert properties["objectType"] == "detection"
        classification = properties["classification"]
        assert isinstance(classification["name"], str)
        assert len(classification["color"]) == 3 and all(0 <= c <= 255 for c in classification["color"])
        assert isinstance(properties["id"], int) and isinstance(properties["class_id"], int)
        assert isinstance(properties["score"], float) and properties["measurements"] == {"score": properties["score"]}


# Each pattern as rows of text: '#' is a mask pixel.
PATTERNS = {
    "single pixel": ["#"],
    "square with a hole": ["###", "#.#", "###"],
    "two holes": ["#####", "#.#.#", "#####"],
    "diagonal pair": ["#.", ".#"],
    "anti-diagonal pair": [".#", "#."],
    "diagonal staircase": ["#...", ".#..", "..#.", "...#"],
    "hole leaking at a corner": ["###", "#.#", "##."],
    "hole touching the outline at a corner": ["####", "#..#", "#.##", "###."],
    "island in a hole": ["#####", "#...#", "#.#.#", "#...#", "#####"],
    "island touching the frame at a corner": ["#####", "#...#", "#.#.#", "#..##", "#####"],
    "holes touching each other at a corner": ["####", "#.##", "##.#", "####"],
    "several parts": ["##..#", "##...", "....#", "###.#"],
    "checkerboard": ["#.#.#", ".#.#.", "#.#.#", ".#.#."],
    "spiral": ["#######", "#.....#", "#.###.#", "#.#.#.#", "#.#...#", "#.#####"],
}


def _pattern_mask(rows: List[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_polygons_rasterise_back_to_the_mask(name):
    mask = _pattern_mask(PATTERNS[name])
    _assert_round_trip(MaskCrop(mask, 7, 3, (20, 30)))


def test_masks_on_the_image_border_rasterise_back():
    image_size = (6, 8)
    full = np.zeros(image_size, dtype=bool)
    full[0, :] = True
    full[:, -1] = True
    full[-1, 0] = True
    full[2:4, 0:2] = True
    geometry = _assert_round_trip(MaskCrop.from_array(full))
    np.testing.assert_array_equal(_rasterise(_polygons(geometry), (0, 0, 8, 6)), full)
    points = np.concatenate([np.asarray(ring) for polygon in _polygons(geometry) for ring in polygon])
    assert points[:, 0].min() == 0 and points[:, 0].max() == 8 and points[:, 1].max() == 6


def test_diagonal_pixels_are_separate_polygons_touching_at_a_corner():
    geometry = mask_geometry(MaskCrop(_pattern_mask(["#.", ".#"]), 10, 20, (40, 40)))
    assert geometry["type"] == "MultiPolygon"
    squares = sorted(sorted(map(tuple, polygon[0][:-1])) for polygon in geometry["coordinates"])
    assert squares == [[(10, 20), (10, 21), (11, 20), (11, 21)], [(11, 21), (11, 22), (12, 21), (12, 22)]]


def _random_masks(seed: int, count: int) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(tuple(rng.integers(1, 14, size=2))) < rng.uniform(0.2, 0.85) for _ in range(count)]


def test_random_masks_rasterise_back_exactly():
    for mask in _random_masks(seed=0, count=400):
        if mask.any():
            _assert_round_trip(MaskCrop(mask, 5, 9, (40, 50)))
        else:
            assert mask_geometry(MaskCrop(mask, 5, 9, (40, 50))) is None


def test_rings_are_simple_rectilinear_pixel_edges_with_outer_rings_positive():
    for mask in _random_masks(seed=1, count=300):
        if not mask.any():
            continue
        for polygon in _polygons(mask_geometry(MaskCrop(mask, 2, 3, (30, 30)))):
            for index, ring in enumerate(polygon):
                points = np.asarray(ring)
                assert points.dtype.kind == "i"  # vertices are pixel corners
                assert len({tuple(p) for p in points[:-1]}) == len(points) - 1  # no vertex twice
                steps = np.diff(points, axis=0)
                assert ((steps[:, 0] == 0) != (steps[:, 1] == 0)).all()  # axis-aligned edges
                turns = np.roll(steps, -1, axis=0)
                assert (steps[:, 0] * turns[:, 1] - steps[:, 1] * turns[:, 0] != 0).all()  # a corner at each vertex
                assert (_signed_area(ring) > 0) == (index == 0)


def test_polygons_are_the_4_connected_parts_of_the_mask():
    for mask in _random_masks(seed=2, count=300):
        if not mask.any():
            continue
        h, w = mask.shape
        parts = np.zeros(mask.shape, dtype=np.int64)
        for k, polygon in enumerate(_polygons(mask_geometry(MaskCrop(mask, 0, 0, (h, w)))), start=1):
            pixels = _rasterise([polygon], (0, 0, w, h))
            assert _four_connected(pixels)
            assert not (parts[pixels] != 0).any()  # parts do not overlap
            parts[pixels] = k
        np.testing.assert_array_equal(parts != 0, mask)
        # No two parts share an edge: each part is a whole 4-connected component.
        for a, b in ((parts[1:], parts[:-1]), (parts[:, 1:], parts[:, :-1])):
            assert not ((a != 0) & (b != 0) & (a != b)).any()


def _instances(crops: List[MaskCrop], image_size: Tuple[int, int]) -> Instances:
    n = len(crops)
    return Instances(
        image_size,
        pred_masks=CroppedBitMasks(crops, image_size),
        pred_classes=torch.arange(n, dtype=torch.int64) % 2,
        scores=torch.linspace(0.9, 0.5, n),
    )


def test_feature_collection_schema_ids_classes_and_json_round_trip(caplog):
    image_size = (40, 60)
    crops = [
        MaskCrop(_pattern_mask(PATTERNS["square with a hole"]), 1, 1, image_size),
        MaskCrop.empty(image_size),
        MaskCrop(_pattern_mask(PATTERNS["several parts"]), 30, 20, image_size),
        MaskCrop(np.zeros((3, 3), dtype=bool), 5, 5, image_size),
    ]
    instances = _instances(crops, image_size)
    colors = [[255, 0, 0], [0, 128, 255]]
    with caplog.at_level(logging.WARNING, logger="project.tiling.geojson"):
        collection = instances_to_geojson(instances, ["nucleus", "debris"], thing_colors=colors)
    assert "2 of 4 objects have an empty mask" in caplog.text and "ids 2, 4" in caplog.text
    _check_feature_collection(collection)
    assert json.loads(json.dumps(collection)) == collection
    features = collection["features"]
    assert [f["properties"]["id"] for f in features] == [1, 3]
    assert [f["geometry"]["type"] for f in features] == ["Polygon", "MultiPolygon"]
    assert features[0]["properties"]["classification"] == {"name": "nucleus", "color": [255, 0, 0]}
    assert features[0]["properties"]["class_id"] == 0
    assert features[1]["properties"]["score"] == pytest.approx(instances.scores[2].item())
    for feature, row in zip(features, (0, 2)):
        crop = crops[row]
        h, w = crop.mask.shape
        window = (crop.x0, crop.y0, crop.x0 + w, crop.y0 + h)
        np.testing.assert_array_equal(_rasterise(_polygons(feature["geometry"]), window), crop.mask)


def test_write_geojson_streams_the_same_collection(tmp_path):
    image_size = (50, 50)
    crops = [MaskCrop(mask, 3 * i, 2 * i, image_size) for i, mask in enumerate(_random_masks(seed=3, count=12))]
    instances = _instances(crops, image_size)
    path = tmp_path / "objects.geojson"
    written = write_geojson(path, instances, ["a", "b"])
    with open(path) as f:
        loaded = json.load(f)
    expected = instances_to_geojson(instances, ["a", "b"])
    assert loaded == json.loads(json.dumps(expected))
    assert written == len(expected["features"]) == sum(bool(c.mask.any()) for c in crops)


def test_class_ids_outside_the_class_names_are_refused():
    image_size = (10, 10)
    instances = _instances([MaskCrop(np.ones((2, 2), dtype=bool), 0, 0, image_size)] * 2, image_size)
    with pytest.raises(ValueError, match="class_names"):
        instances_to_geojson(instances, ["only one"])


def test_dsb2018_nuclei_round_trip_exactly(data_root):
    with open(require_dataset(data_root, "dsb2018") / "annotations_val.json") as f:
        annotations = json.load(f)["annotations"]
    for annotation in annotations[:300]:
        full = mask_util.decode(annotation["segmentation"]).astype(bool)
        _assert_round_trip(MaskCrop.from_array(full))
