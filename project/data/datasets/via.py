"""VGG Image Annotator (VIA) JSON, as in Detectron2's balloon tutorial.

VIA 1.x exports ``{key: {"filename", "regions": {"0": region, ...}, ...}}``; VIA 2.x exports
the same with ``regions`` as a list, or a whole project with the images under
``_via_img_metadata``. A region has ``shape_attributes`` (``name``: polygon, rect, circle or
ellipse) and ``region_attributes``, one of which may name the class.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..bad_input import KIND_INVALID, BadAnnotationError, BadInputLog
from ..catalog import DatasetCatalog
from .checks import (
    check_box_xywh,
    check_polygon,
    load_json,
    read_image_size,
    segmentation_box_xywh,
)
from .metadata import register_metadata, set_thing_classes
from .records import image_record, instance_record, log_loaded
from .shapes import ellipse_polygon, rectangle_polygon

logger = logging.getLogger(__name__)

DEFAULT_CLASS_NAME = "object"


def _number(attributes: Mapping[str, Any], key: str, file: str, item: str, default: Optional[float] = None) -> float:
    """The finite number ``attributes[key]``; ``default`` when the key is absent and a default is given."""
    value = attributes.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise BadAnnotationError(
            file, item, f"shape attribute '{key}' must be a finite number, got {value!r}", KIND_INVALID
        )
    return float(value)


def _region_polygon(shape: Any, file: str, item: str) -> List[float]:
    if not isinstance(shape, dict):
        raise BadAnnotationError(file, item, "'shape_attributes' must be an object", KIND_INVALID)
    name = shape.get("name")
    if name == "polygon":
        xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            raise BadAnnotationError(
                file, item, "a polygon needs lists 'all_points_x' and 'all_points_y' of equal length", KIND_INVALID
            )
        return check_polygon([v for xy in zip(xs, ys) for v in xy], file, item)
    if name == "rect":
        x, y = _number(shape, "x", file, item), _number(shape, "y", file, item)
        w, h = _number(shape, "width", file, item), _number(shape, "height", file, item)
        return check_polygon(rectangle_polygon(x, y, x + w, y + h), file, item)
    if name == "circle":
        r = _number(shape, "r", file, item)
        return check_polygon(
            ellipse_polygon(_number(shape, "cx", file, item), _number(shape, "cy", file, item), r, r), file, item
        )
    if name == "ellipse":
        theta = _number(shape, "theta", file, item, default=0.0)
        return check_polygon(
            ellipse_polygon(
                _number(shape, "cx", file, item),
                _number(shape, "cy", file, item),
                _number(shape, "rx", file, item),
                _number(shape, "ry", file, item),
                theta,
            ),
            file,
            item,
        )
    raise BadAnnotationError(
        file, item, f"region shape '{name}' has no area; expected polygon, rect, circle or ellipse", KIND_INVALID
    )


def _region_class(attributes: Any, class_attribute: Optional[str], file: str, item: str) -> str:
    if class_attribute is None:
        return DEFAULT_CLASS_NAME
    value = attributes.get(class_attribute) if isinstance(attributes, dict) else None
    if isinstance(value, dict):  # checkbox attribute: {"option": true, ...}
        chosen = [k for k, v in value.items() if v]
        value = chosen[0] if len(chosen) == 1 else None
    if not isinstance(value, str) or not value:
        raise BadAnnotationError(
            file, item, f"region attribute '{class_attribute}' must name one class, got {value!r}", KIND_INVALID
        )
    return value


def _regions(entry: Mapping[str, Any], filename: str, json_file: str, log: BadInputLog) -> List[Any]:
    """An image entry's regions as a list (VIA 1.x keeps them in an object keyed "0", "1", ...);
    a value of another type is reported, and the image has no region."""
    regions = entry.get("regions") or []
    if isinstance(regions, dict):
        return list(regions.values())
    if isinstance(regions, list):
        return regions
    log.report(
        BadAnnotationError(
            json_file, f"image '{filename}'", f"'regions' must be a list or an object, got {regions!r}", KIND_INVALID
        )
    )
    return []


def _image_entries(data: Any, json_file: str) -> List[Any]:
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise BadAnnotationError(json_file, "top level", "a VIA file maps image keys to image entries", KIND_INVALID)
    return list(data.values())


def load_via_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    *,
    class_attribute: Optional[str] = None,
    thing_classes: Optional[Sequence[str]] = None,
    on_bad_annotation: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Load a VIA 1.x or 2.x JSON into dataset dicts (integer image ids in file order).

    Each region is one instance. Its class is the region attribute ``class_attribute`` (a text
    value, or a checkbox with exactly one option ticked); without ``class_attribute`` every
    region is of one class (``thing_classes[0]`` or "object"). Classes are ``thing_classes``
    when given, else all names found, sorted. Image sizes are read from the image headers.
    """
    data = load_json(json_file)
    log = BadInputLog.for_dataset(dataset_name, json_file, on_bad_annotation, logger)
    parsed: List[Tuple[str, Tuple[int, int], List[Tuple[str, List[float], str]]]] = []
    for index, entry in enumerate(_image_entries(data, json_file)):
        filename = entry.get("filename") if isinstance(entry, dict) else None
        try:
            if not isinstance(filename, str):
                raise BadAnnotationError(
                    json_file, f"image entry #{index}", "an image entry needs a 'filename'", KIND_INVALID
                )
            image_file = os.path.join(image_root, filename)
            image_size = read_image_size(image_file, f"image '{filename}' of {os.path.basename(json_file)}")
        except BadAnnotationError as e:
            log.report(e)
            continue
        instances = []
        for k, region in enumerate(_regions(entry, filename, json_file, log)):
            item = f"image '{filename}', region #{k}"
            try:
                if not isinstance(region, dict):
                    raise BadAnnotationError(json_file, item, "a region must be an object", KIND_INVALID)
                polygon = _region_polygon(region.get("shape_attributes"), json_file, item)
                name = _region_class(region.get("region_attributes"), class_attribute, json_file, item)
            except BadAnnotationError as e:
                log.report(e)
                continue
            instances.append((name, polygon, item))
        parsed.append((image_file, image_size, instances))

    if class_attribute is None:
        classes = [thing_classes[0] if thing_classes else DEFAULT_CLASS_NAME]
    else:
        classes = list(thing_classes) if thing_classes else sorted({n for *_, inst in parsed for n, _, _ in inst})
    class_index = {c: i for i, c in enumerate(classes)}
    if dataset_name is not None:
        set_thing_classes(dataset_name, classes, range(1, len(classes) + 1))
    dataset_dicts = []
    for image_file, image_size, instances in parsed:
        annotations = []
        for name, polygon, item in instances:
            category = class_index[classes[0]] if class_attribute is None else class_index.get(name)
            try:
                if category is None:
                    raise BadAnnotationError(
                        json_file, item, f"class '{name}' is not in thing_classes {classes}", KIND_INVALID
                    )
                bbox = check_box_xywh(segmentation_box_xywh([polygon]), image_size, json_file, item)
            except BadAnnotationError as e:
                log.report(e)
                continue
            annotations.append(instance_record(bbox, category, [polygon]))
        dataset_dicts.append(image_record(image_file, image_size, len(dataset_dicts), annotations))
    log.summarize()
    log_loaded(logger, dataset_dicts, json_file)
    return dataset_dicts


def register_via_instances(
    name: str, metadata: Mapping[str, Any], json_file: str, image_root: str, **options: Any
) -> None:
    """Register a VIA JSON under ``name`` (read lazily).

    ``options`` go to ``load_via_json`` (``class_attribute``, ``on_bad_annotation``);
    ``metadata["thing_classes"]``, when given, fixes the classes and their order.
    """
    thing_classes = metadata.get("thing_classes")
    DatasetCatalog.register(
        name, lambda: load_via_json(json_file, image_root, name, thing_classes=thing_classes, **options)
    )
    register_metadata(name, metadata, image_root=image_root)
