"""Converting a registered dataset (Detectron2 dataset dicts) into COCO ground-truth JSON."""
from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any, Callable, Dict, List

import numpy as np
import pycocotools.mask as mask_util

from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..structures import Boxes, BoxMode, PolygonMasks

logger = logging.getLogger(__name__)


def dataset_id_mapper(dataset_name: str) -> Callable[[int], int]:
    """Model (contiguous) class id -> category id of the dataset's COCO JSON, through metadata
    ``thing_dataset_id_to_contiguous_id``; the identity when the dataset has no such mapping."""
    mapping = MetadataCatalog.get(dataset_name).get("thing_dataset_id_to_contiguous_id")
    if mapping is None:
        return int
    reverse = {int(contiguous): int(dataset_id) for dataset_id, contiguous in mapping.items()}

    def to_dataset_id(contiguous_id: int) -> int:
        if int(contiguous_id) not in reverse:
            raise ValueError(
                f"dataset '{dataset_name}': class id {contiguous_id} is not a contiguous id of its metadata "
                f"thing_dataset_id_to_contiguous_id (known: {sorted(reverse)})"
            )
        return reverse[int(contiguous_id)]

    return to_dataset_id


def _compressed_rle(segmentation: Dict[str, Any], height: int, width: int, where: str) -> Dict[str, Any]:
    """A COCO RLE with string ``counts``; uncompressed RLE (``counts`` a list) is compressed."""
    counts = segmentation.get("counts")
    if isinstance(counts, list):
        size = segmentation.get("size", [height, width])
        segmentation = mask_util.frPyObjects(segmentation, *size)
        counts = segmentation["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str) or "size" not in segmentation:
        raise ValueError(
            f"{where}: 'segmentation' RLE needs 'size' and 'counts' (str, bytes or list), got {segmentation!r:.200}"
        )
    return {"size": [int(s) for s in segmentation["size"]], "counts": counts}


def _annotation_to_coco(
    annotation: Dict[str, Any], height: int, width: int, to_dataset_id: Callable[[int], int], where: str
) -> Dict[str, Any]:
    """One dataset-dict annotation as a COCO annotation (without ``id`` and ``image_id``)."""
    for key in ("bbox", "bbox_mode", "category_id"):
        if key not in annotation:
            raise ValueError(f"{where}: annotation has no '{key}' (fields present: {sorted(annotation)})")
    bbox = np.asarray(annotation["bbox"], dtype=np.float64).reshape(-1)
    if bbox.shape != (4,):
        raise ValueError(f"{where}: 'bbox' must have 4 numbers, got {annotation['bbox']!r}")
    bbox_xywh = BoxMode.convert(bbox.tolist(), annotation["bbox_mode"], BoxMode.XYWH_ABS)
    coco_annotation: Dict[str, Any] = {
        "bbox": [round(float(v), 3) for v in bbox_xywh],
        "iscrowd": int(annotation.get("iscrowd", 0)),
        "category_id": to_dataset_id(int(annotation["category_id"])),
    }
    segmentation = annotation.get("segmentation")
    if segmentation is None:
        bbox_xyxy = BoxMode.convert(bbox.tolist(), annotation["bbox_mode"], BoxMode.XYXY_ABS)
        coco_annotation["area"] = float(Boxes([bbox_xyxy]).area()[0])
    elif isinstance(segmentation, list):
        coco_annotation["segmentation"] = [np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in segmentation]
        coco_annotation["area"] = float(PolygonMasks([segmentation]).area()[0])
    elif isinstance(segmentation, dict):
        rle = _compressed_rle(segmentation, height, width, where)
        coco_annotation["segmentation"] = rle
        coco_annotation["area"] = float(mask_util.area(dict(rle, counts=rle["counts"].encode("ascii"))))
    else:
        raise ValueError(
            f"{where}: 'segmentation' must be a list of polygons or an RLE dict, got {type(segmentation).__name__}"
        )
    return coco_annotation


def convert_to_coco_dict(dataset_name: str) -> Dict[str, Any]:
    """The registered dataset ``dataset_name`` as a COCO ground-truth dict.

    Images keep their ``image_id`` (or their index when absent); annotations are numbered from
    1; boxes become XYWH; ``area`` is the polygon or RLE area (the box area without a
    segmentation); categories come from metadata ``thing_classes``, with contiguous ids mapped
    back to dataset ids through ``thing_dataset_id_to_contiguous_id`` when it is set.
    """
    dataset_dicts = DatasetCatalog.get(dataset_name)
    metadata = MetadataCatalog.get(dataset_name)
    thing_classes = metadata.get("thing_classes")
    if thing_classes is None:
        raise ValueError(
            f"dataset '{dataset_name}': metadata has no 'thing_classes'; it is needed to convert it to COCO format"
        )
    to_dataset_id = dataset_id_mapper(dataset_name)
    categories = [{"id": to_dataset_id(i), "name": name} for i, name in enumerate(thing_classes)]

    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    for index, record in enumerate(dataset_dicts):
        where = f"dataset '{dataset_name}', image {record.get('file_name', index)!r}"
        for key in ("height", "width"):
            if key not in record:
                raise ValueError(f"{where}: dataset dict has no '{key}' (fields present: {sorted(record)})")
        image = {
            "id": record.get("image_id", index),
            "width": int(record["width"]),
            "height": int(record["height"]),
            "file_name": str(record.get("file_name", "")),
        }
        images.append(image)
        for annotation in record.get("annotations", []):
            coco_annotation = _annotation_to_coco(annotation, image["height"], image["width"], to_dataset_id, where)
            coco_annotation.update(id=len(annotations) + 1, image_id=image["id"])
            annotations.append(coco_annotation)

    logger.info(
        "Converted dataset '%s' to COCO format: %d images, %d annotations", dataset_name, len(images), len(annotations)
    )
    return {
        "info": {
            "date_created": str(datetime.datetime.now()),
            "description": f"COCO ground truth converted from the registered dataset '{dataset_name}'",
        },
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }


def write_json_atomically(obj: Any, path: str) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file, so that a failed write (e.g. a
    full disk) never leaves a truncated file under the final name."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp_path, "w") as f:
            json.dump(obj, f)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def convert_to_coco_json(dataset_name: str, output_file: str, allow_cached: bool = True) -> None:
    """Write ``convert_to_coco_dict(dataset_name)`` to ``output_file``; keep an existing file
    when ``allow_cached`` (delete it, or pass False, after changing the dataset)."""
    if allow_cached and os.path.exists(output_file):
        logger.info("Using the cached COCO ground truth of '%s' at %s", dataset_name, output_file)
        return
    write_json_atomically(convert_to_coco_dict(dataset_name), output_file)
    logger.info("Wrote the COCO ground truth of '%s' to %s", dataset_name, output_file)
