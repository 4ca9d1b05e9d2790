"""LabelMe annotations: one JSON file per image (``shapes`` with ``label``, ``points``,
``shape_type``, ``group_id``; ``imagePath``; optionally the image itself in ``imageData``).

Shapes sharing a label and a non-null ``group_id`` form one instance; every other shape is an
instance of its own. Polygons, rectangles and circles are supported. Shapes labelled
``__ignore__`` or ``_background_`` (LabelMe's conventions) are not instances: they are counted
and logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from PIL import Image, UnidentifiedImageError

from ..bad_input import KIND_CORRUPT_IMAGE, KIND_INVALID, BadAnnotationError, BadInputLog
from ..catalog import DatasetCatalog
from .checks import (
    check_box_xywh,
    check_image_file,
    check_image_header,
    check_points,
    check_polygon,
    load_json,
    read_image_size,
    segmentation_box_xywh,
)
from .metadata import register_metadata, set_thing_classes
from .records import image_record, instance_record, log_loaded
from .shapes import ellipse_polygon, rectangle_polygon

logger = logging.getLogger(__name__)

IGNORED_LABELS = ("__ignore__", "_background_")


def default_embedded_image_dir() -> str:
    """Where images embedded in LabelMe files are written when their file is missing."""
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "generated", "labelme_embedded")


def _shape_polygon(shape: Mapping[str, Any], file: str, item: str) -> List[float]:
    shape_type = shape.get("shape_type") or "polygon"
    points = check_points(shape.get("points"), file, item)
    if shape_type == "polygon":
        return check_polygon([v for p in points for v in p], file, item)
    if shape_type in ("rectangle", "circle"):
        if len(points) != 2:
            raise BadAnnotationError(file, item, f"a {shape_type} needs 2 points, got {len(points)}", KIND_INVALID)
        (x0, y0), (x1, y1) = points
        if shape_type == "rectangle":
            return check_polygon(rectangle_polygon(x0, y0, x1, y1), file, item)
        radius = math.hypot(x1 - x0, y1 - y0)
        return check_polygon(ellipse_polygon(x0, y0, radius, radius), file, item)
    raise BadAnnotationError(
        file, item, f"shape_type '{shape_type}' has no area; expected polygon, rectangle or circle", KIND_INVALID
    )


def _embedded_image(data: Mapping[str, Any], json_file: str, directory: str) -> str:
    """Write the file's ``imageData`` (base64 of the image file) to ``directory``, named by its
    content hash, and return the path."""
    try:
        raw = base64.b64decode(data["imageData"], validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            extension = (im.format or "png").lower().replace("jpeg", "jpg")
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as e:
        raise BadAnnotationError(
            json_file, "imageData", f"embedded image cannot be decoded ({e})", KIND_CORRUPT_IMAGE
        ) from None
    path = os.path.join(directory, f"{hashlib.sha1(raw).hexdigest()}.{extension}")
    if not os.path.isfile(path):
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    return path


def _image_file(data: Mapping[str, Any], json_file: str, image_root: Optional[str], embedded_dir: str) -> str:
    image_path = data.get("imagePath") or ""
    if not isinstance(image_path, str):
        raise BadAnnotationError(
            json_file, "imagePath", f"'imagePath' must be a file name, got {image_path!r}", KIND_INVALID
        )
    if image_root is not None:
        path = os.path.join(image_root, os.path.basename(image_path))
    else:
        path = os.path.join(os.path.dirname(json_file), image_path)
    if image_path and os.path.isfile(path):
        return path
    if data.get("imageData"):
        return _embedded_image(data, json_file, embedded_dir)
    check_image_file(path, f"image of {os.path.basename(json_file)}")
    return path


def _image_size(data: Mapping[str, Any], image_file: str, json_file: str) -> Tuple[int, int]:
    """(height, width) from the image file's header, which must agree with the file's
    ``imageHeight`` and ``imageWidth`` when it gives them."""
    item = f"image of {os.path.basename(json_file)}"
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        check_image_header(image_file, item, (height, width))
        return height, width
    return read_image_size(image_file, item)


def _instances(shapes: Sequence[Any], json_file: str, log: BadInputLog) -> List[Tuple[str, List[List[float]]]]:
    """(label, polygons) per instance, in order of first shape; bad shapes reported."""
    grouped: Dict[Any, Tuple[str, List[List[float]]]] = {}
    ignored = 0
    for k, shape in enumerate(shapes):
        label = shape.get("label") if isinstance(shape, dict) else None
        item = f"shape #{k} ('{label}')"
        if not isinstance(label, str):
            log.report(BadAnnotationError(json_file, item, "a shape needs a string 'label'", KIND_INVALID))
            continue
        if label in IGNORED_LABELS:
            ignored += 1
            continue
        try:
            polygon = _shape_polygon(shape, json_file, item)
        except BadAnnotationError as e:
            log.report(e)
            continue
        group = shape.get("group_id")
        if group is not None and not isinstance(group, (int, str)):
            log.report(
                BadAnnotationError(
                    json_file, item, f"'group_id' must be an integer or null, got {group!r}", KIND_INVALID
                )
            )
            continue
        key = (label, group) if group is not None else ("shape", k)
        grouped.setdefault(key, (label, []))[1].append(polygon)
    if ignored:
        logger.info("%s: %d shape(s) labelled %s are not instances", json_file, ignored, " or ".join(IGNORED_LABELS))
    return list(grouped.values())


def load_labelme_json(
    json_dir: str,
    image_root: Optional[str] = None,
    dataset_name: Optional[str] = None,
    *,
    thing_classes: Optional[Sequence[str]] = None,
    embedded_image_dir: Optional[str] = None,
    on_bad_annotation: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Load every ``*.json`` LabelMe file in ``json_dir`` (sorted; integer image ids 0, 1, ...).

    The image is ``imagePath`` relative to the JSON file (or its base name under
    ``image_root``); when that file is missing but ``imageData`` is embedded, the embedded image
    is written once under ``embedded_image_dir`` (default
    ``$DETECTRON2_DATASETS/generated/labelme_embedded``) and used. Classes are
    ``thing_classes`` when given (other labels are reported), else all labels found, sorted.
    A malformed file, or an image whose header does not read or gives another size than
    ``imageHeight`` and ``imageWidth``, is reported as a whole; bad shapes one by one.
    """
    if not os.path.isdir(json_dir):
        raise FileNotFoundError(f"LabelMe directory {json_dir} does not exist")
    embedded_dir = embedded_image_dir or default_embedded_image_dir()
    log = BadInputLog.for_dataset(dataset_name, json_dir, on_bad_annotation, logger)
    parsed = []
    for name in sorted(f for f in os.listdir(json_dir) if f.endswith(".json")):
        json_file = os.path.join(json_dir, name)
        try:
            data = load_json(json_file)
            if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
                raise BadAnnotationError(json_file, "top level", "a LabelMe file needs a 'shapes' list", KIND_INVALID)
            image_file = _image_file(data, json_file, image_root, embedded_dir)
            image_size = _image_size(data, image_file, json_file)
        except BadAnnotationError as e:
            log.report(e)
            continue
        parsed.append((json_file, image_file, image_size, _instances(data["shapes"], json_file, log)))

    classes = list(thing_classes) if thing_classes else sorted({label for *_, inst in parsed for label, _ in inst})
    class_index = {c: i for i, c in enumerate(classes)}
    if dataset_name is not None:
        set_thing_classes(dataset_name, classes, range(1, len(classes) + 1))
    dataset_dicts = []
    for json_file, image_file, image_size, instances in parsed:
        annotations = []
        for k, (label, polygons) in enumerate(instances):
            item = f"instance #{k} ('{label}')"
            try:
                if label not in class_index:
                    raise BadAnnotationError(
                        json_file, item, f"label '{label}' is not in thing_classes {classes}", KIND_INVALID
                    )
                bbox = check_box_xywh(segmentation_box_xywh(polygons), image_size, json_file, item)
            except BadAnnotationError as e:
                log.report(e)
                continue
            annotations.append(instance_record(bbox, class_index[label], polygons))
        dataset_dicts.append(image_record(image_file, image_size, len(dataset_dicts), annotations))
    log.summarize()
    log_loaded(logger, dataset_dicts, f"LabelMe files in {json_dir}")
    return dataset_dicts


def register_labelme_instances(
    name: str, metadata: Mapping[str, Any], json_dir: str, image_root: Optional[str] = None, **options: Any
) -> None:
    """Register a folder of LabelMe JSON files under ``name`` (read lazily).

    ``metadata["thing_classes"]``, when given, fixes the classes and their order; ``options``
    go to ``load_labelme_json``.
    """
    thing_classes = metadata.get("thing_classes")
    DatasetCatalog.register(
        name, lambda: load_labelme_json(json_dir, image_root, name, thing_classes=thing_classes, **options)
    )
    register_metadata(name, metadata, image_root=image_root or json_dir)
