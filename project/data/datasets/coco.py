"""COCO instance JSON: loading into dataset dicts, registering, and writing dataset dicts back
as COCO JSON."""

from __future__ import annotations

import io
import json
import logging
import os
from collections import defaultdict
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from project.structures import BoxMode, PolygonMasks

from ...structures.rle import compress, encode_mask
from ...utils.file_io import atomic_write
from ..bad_input import (
    KIND_CORRUPT_IMAGE,
    KIND_IMAGE_SIZE,
    KIND_INVALID,
    KIND_MISSING_IMAGE,
    BadAnnotationError,
    BadInputLog,
)
from ..catalog import DatasetCatalog, MetadataCatalog
from .checks import (
    check_box_xywh,
    check_image_header,
    check_mask_box,
    check_polygon,
    check_rle,
    load_json,
)
from .metadata import register_metadata, set_thing_classes
from .records import image_record

logger = logging.getLogger(__name__)

_ANNOTATION_KEYS = ("iscrowd", "bbox", "keypoints", "category_id")


def _usable_id(value: Any) -> bool:
    """Whether ``value`` can be an image or category id: a number or a string."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _check_categories(categories: Any, json_file: str) -> List[Dict[str, Any]]:
    if not isinstance(categories, list) or not categories:
        raise BadAnnotationError(json_file, "categories", "expected a non-empty list of categories", KIND_INVALID)
    seen = set()
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise BadAnnotationError(
                json_file, f"category #{i}", "a category needs an integer 'id' and a string 'name'", KIND_INVALID
            )
        if c["id"] in seen:
            raise BadAnnotationError(json_file, f"category id {c['id']}", "category id is used twice", KIND_INVALID)
        seen.add(c["id"])
    return sorted(categories, key=lambda c: c["id"])


def _warn_about_categories(categories: List[Dict[str, Any]], annotations: List[Any], json_file: str) -> None:
    ids = [c["id"] for c in categories]
    if ids != list(range(1, len(ids) + 1)):
        logger.warning(
            "%s: category ids %s are not 1..%d; they are mapped in id order to contiguous class "
            "indices 0..%d (metadata 'thing_dataset_id_to_contiguous_id' keeps the mapping)",
            json_file,
            ids,
            len(ids),
            len(ids) - 1,
        )
    used = {a.get("category_id") for a in annotations if isinstance(a, dict) and _usable_id(a.get("category_id"))}
    unused = [c for c in categories if c["id"] not in used]
    if unused:
        names = ", ".join(f"id {c['id']} '{c['name']}'" for c in unused)
        logger.warning(
            "%s: categories without any annotation: %s. They are kept as classes (so class indices "
            "follow the file and count towards NUM_CLASSES); exports such as Roboflow's add such a "
            "placeholder category with id 0",
            json_file,
            names,
        )


def _image_record(image: Any, index: int, image_root: str, json_file: str) -> Dict[str, Any]:
    if not isinstance(image, dict):
        raise BadAnnotationError(json_file, f"image #{index}", "an image entry must be an object", KIND_INVALID)
    missing = [k for k in ("id", "file_name", "height", "width") if k not in image]
    if missing:
        raise BadAnnotationError(
            json_file, f"image #{index} (id {image.get('id')})", f"image entry lacks {missing}", KIND_INVALID
        )
    if not _usable_id(image["id"]):
        raise BadAnnotationError(
            json_file,
            f"image #{index}",
            f"image 'id' must be a number or a string, got {image['id']!r}",
            KIND_INVALID,
        )
    if not isinstance(image["file_name"], str) or not image["file_name"]:
        raise BadAnnotationError(
            json_file,
            f"image id {image['id']}",
            f"'file_name' must be a file name, got {image['file_name']!r}",
            KIND_INVALID,
        )
    height, width = image["height"], image["width"]
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise BadAnnotationError(
            json_file,
            f"image id {image['id']}",
            f"height and width must be positive integers, got {height}x{width}",
            KIND_INVALID,
        )
    return image_record(os.path.join(image_root, image["file_name"]), (height, width), image["id"], [])


def _segmentation(segm: Any, image_size, json_file: str, item: str, log: BadInputLog) -> Any:
    """The checked segmentation, or None when the annotation has none. Bad polygons are
    reported and dropped one by one; an annotation whose polygons are all bad is dropped."""
    if isinstance(segm, dict):
        return check_rle(segm, image_size, json_file, item)
    if not isinstance(segm, list):
        raise BadAnnotationError(
            json_file, item, "segmentation must be a list of polygons or an RLE dict", KIND_INVALID
        )
    if not segm:
        return None
    polygons, errors = [], []
    for k, polygon in enumerate(segm):
        try:
            polygons.append(check_polygon(polygon, json_file, f"{item}, polygon #{k}"))
        except BadAnnotationError as e:
            errors.append(e)
    if errors and not polygons:
        raise errors[0]  # nothing left of the annotation: the caller reports and drops it
    for e in errors:
        log.report(e)  # only the bad polygons are dropped
    return polygons


def _annotation_record(
    ann: Any,
    index: int,
    image_size,
    category_map: Mapping[int, int],
    json_file: str,
    extra_keys: Sequence[str],
    log: BadInputLog,
) -> Dict[str, Any]:
    item = f"annotation id {ann.get('id', f'#{index}')}" if isinstance(ann, dict) else f"annotation #{index}"
    if not isinstance(ann, dict):
        raise BadAnnotationError(json_file, item, "an annotation must be an object", KIND_INVALID)
    if not _usable_id(ann.get("category_id")) or ann["category_id"] not in category_map:
        raise BadAnnotationError(
            json_file, item, f"category_id {ann.get('category_id')!r} is not among the categories", KIND_INVALID
        )
    if ann.get("iscrowd", 0) not in (0, 1):
        raise BadAnnotationError(json_file, item, f"iscrowd must be 0 or 1, got {ann['iscrowd']!r}", KIND_INVALID)
    record = {k: ann[k] for k in (*_ANNOTATION_KEYS, *extra_keys) if k in ann}
    record["iscrowd"] = int(ann.get("iscrowd", 0))
    record["bbox"] = check_box_xywh(ann.get("bbox"), image_size, json_file, item)
    record["bbox_mode"] = BoxMode.XYWH_ABS
    record["category_id"] = category_map[ann["category_id"]]
    if "segmentation" in ann:
        segm = _segmentation(ann["segmentation"], image_size, json_file, item, log)
        if segm is not None:
            check_mask_box(segm, record["bbox"], image_size, json_file, item)
            record["segmentation"] = segm
    return record


def load_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    extra_annotation_keys: Optional[Sequence[str]] = None,
    *,
    on_bad_annotation: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Load a COCO instances JSON into dataset dicts, sorted by image id.

    Category ids of any value (0 included) become contiguous class indices in id order; with
    ``dataset_name`` the classes and that mapping go into its metadata. Segmentations are
    polygons (kept as lists) or RLE (returned compressed, str counts). Images missing from
    ``image_root``, unreadable (their header is read, not their pixels) or of another size than
    their entry says, and bad annotations (a mask far from its bbox among them), are reported
    and skipped or raise, depending on ``on_bad_annotation`` (see ``project.data.bad_input``).
    A file that is not valid JSON, or lacks images/annotations/categories, always raises.
    """
    data = load_json(json_file)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise BadAnnotationError(
            json_file, "top level", "a COCO file needs 'images', 'annotations' and 'categories' lists", KIND_INVALID
        )
    categories = _check_categories(data.get("categories"), json_file)
    _warn_about_categories(categories, data["annotations"], json_file)
    category_map = {c["id"]: i for i, c in enumerate(categories)}
    if dataset_name is not None:
        set_thing_classes(dataset_name, [c["name"] for c in categories], [c["id"] for c in categories])

    log = BadInputLog.for_dataset(dataset_name, json_file, on_bad_annotation, logger)
    records: Dict[Any, Dict[str, Any]] = {}
    for index, image in enumerate(data["images"]):
        try:
            record = _image_record(image, index, image_root, json_file)
            if record["image_id"] in records:
                raise BadAnnotationError(
                    json_file, f"image id {record['image_id']}", "image id is used twice", KIND_INVALID
                )
        except BadAnnotationError as e:
            log.report(e)
            continue
        records[record["image_id"]] = record

    listed_image_ids = {im.get("id") for im in data["images"] if isinstance(im, dict) and _usable_id(im.get("id"))}
    annotations_of = defaultdict(list)
    for index, ann in enumerate(data["annotations"]):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        image_id = image_id if _usable_id(image_id) else None
        if image_id not in records:
            if image_id not in listed_image_ids:
                log.report(
                    BadAnnotationError(
                        json_file,
                        f"annotation id {ann.get('id') if isinstance(ann, dict) else f'#{index}'}",
                        f"image_id {image_id!r} is not among the images",
                        KIND_INVALID,
                    )
                )
            continue  # its image was bad and has been reported already
        annotations_of[image_id].append((index, ann))

    extra_keys = tuple(extra_annotation_keys or ())
    dataset_dicts = []
    for image_id in sorted(records, key=lambda i: (isinstance(i, str), i)):
        record = records[image_id]
        image_size = (record["height"], record["width"])
        anns = annotations_of.get(image_id, [])
        try:
            check_image_header(record["file_name"], f"image id {image_id} ({len(anns)} annotations)", image_size)
        except BadAnnotationError as e:
            log.report(e)
            continue
        for index, ann in anns:
            try:
                record["annotations"].append(
                    _annotation_record(ann, index, image_size, category_map, json_file, extra_keys, log)
                )
            except BadAnnotationError as e:
                log.report(e)
        dataset_dicts.append(record)
    log.summarize()
    counts = log.counts
    logger.info(
        "Loaded %d images (dropped: %d missing on disk, %d unreadable or of another size than listed) "
        "with %d annotations from %s",
        len(dataset_dicts),
        counts[KIND_MISSING_IMAGE],
        counts[KIND_CORRUPT_IMAGE] + counts[KIND_IMAGE_SIZE],
        sum(len(d["annotations"]) for d in dataset_dicts),
        json_file,
    )
    return dataset_dicts


def register_coco_instances(
    name: str, metadata: Mapping[str, Any], json_file: str, image_root: str, **options: Any
) -> None:
    """Register a COCO instances JSON under ``name``; nothing is read until the dataset is used.

    ``options`` go to ``load_coco_json`` (``extra_annotation_keys``, ``on_bad_annotation``).
    """
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name, **options))
    register_metadata(name, metadata, json_file=json_file, image_root=image_root)


def _coco_segmentation(segm: Any) -> Any:
    if isinstance(segm, dict):
        return compress(segm)
    if isinstance(segm, np.ndarray):
        return encode_mask(segm)
    return [[float(v) for v in np.asarray(p).reshape(-1)] for p in segm]


def _segmentation_area(segm: Any) -> float:
    """COCO's ``area`` of a mask: a compressed RLE's pixel count; for polygons the sum of their
    shoelace areas in float32, as COCO's own annotations and Detectron2's conversion give it."""
    if isinstance(segm, dict):
        return float(mask_util.area(dict(segm, counts=segm["counts"].encode("ascii"))))
    return PolygonMasks([segm]).area()[0].item()


def _coco_box(ann: Mapping[str, Any]) -> List[float]:
    """The annotation's box as COCO writes it: XYWH, or XYWHA (centre, size, angle) for a
    rotated box, which stays as it is."""
    target = BoxMode.XYWHA_ABS if ann["bbox_mode"] == BoxMode.XYWHA_ABS else BoxMode.XYWH_ABS
    return BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], target)


def dataset_dicts_to_coco(
    dataset_dicts: Sequence[Mapping[str, Any]],
    thing_classes: Sequence[str],
    contiguous_to_dataset_id: Optional[Mapping[int, int]] = None,
    file_name_root: Optional[str] = None,
) -> Dict[str, Any]:
    """A COCO instances dict (images, annotations, categories) from dataset dicts.

    Category ids are ``contiguous_to_dataset_id[class]`` (the class index itself without it).
    Boxes are written XYWH (rotated ones XYWHA), masks as polygons or compressed RLE (str counts), ``area`` as
    the polygons' area or the RLE's pixel count (the box's area without a mask). File names are made relative to
    ``file_name_root`` when given.
    """
    to_dataset_id = (
        dict(contiguous_to_dataset_id) if contiguous_to_dataset_id else {i: i for i in range(len(thing_classes))}
    )
    categories = [{"id": int(to_dataset_id[i]), "name": name} for i, name in enumerate(thing_classes)]
    images, annotations = [], []
    for index, d in enumerate(dataset_dicts):
        file_name = d["file_name"]
        if file_name_root is not None:
            file_name = os.path.relpath(file_name, file_name_root)
        image_id = d.get("image_id", index)
        images.append({"id": image_id, "file_name": file_name, "height": int(d["height"]), "width": int(d["width"])})
        for ann in d.get("annotations", []):
            bbox = _coco_box(ann)
            record = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(to_dataset_id[ann["category_id"]]),
                "bbox": [float(v) for v in bbox],
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
            if "segmentation" in ann:
                record["segmentation"] = _coco_segmentation(ann["segmentation"])
                record["area"] = _segmentation_area(record["segmentation"])
            else:
                record["area"] = float(bbox[2] * bbox[3])
            if "keypoints" in ann:
                record["keypoints"] = ann["keypoints"]
            annotations.append(record)
    return {"images": images, "annotations": annotations, "categories": categories}


def convert_to_coco_dict(dataset_name: str) -> Dict[str, Any]:
    """The registered dataset as a COCO instances dict, with category ids mapped back through
    the metadata's ``thing_dataset_id_to_contiguous_id`` when it has one."""
    meta = MetadataCatalog.get(dataset_name)
    dataset_dicts = DatasetCatalog.get(dataset_name)
    id_map = meta.get("thing_dataset_id_to_contiguous_id")
    reverse = {v: k for k, v in id_map.items()} if id_map else None
    return dataset_dicts_to_coco(dataset_dicts, meta.thing_classes, reverse)


def _dump_json(obj: Any, binary_file: BinaryIO) -> None:
    text = io.TextIOWrapper(binary_file, encoding="utf-8")
    json.dump(obj, text)
    text.flush()
    text.detach()  # the caller owns (and closes) the binary file


def save_coco_json(coco_dict: Any, output_file: str) -> None:
    """Write a COCO dict (or results list) as JSON, atomically: a failed write raises
    ``FileWriteError`` naming ``output_file`` and leaves what was there before."""
    atomic_write(output_file, lambda f: _dump_json(coco_dict, f))


def convert_to_coco_json(dataset_name: str, output_file: str, allow_cached: bool = True) -> None:
    """Write the registered dataset as COCO JSON to ``output_file`` (kept if it exists and
    ``allow_cached``)."""
    if allow_cached and os.path.exists(output_file):
        logger.info("Using the cached COCO JSON of '%s' at %s", dataset_name, output_file)
        return
    save_coco_json(convert_to_coco_dict(dataset_name), output_file)
    logger.info("Wrote dataset '%s' as COCO JSON to %s", dataset_name, output_file)
