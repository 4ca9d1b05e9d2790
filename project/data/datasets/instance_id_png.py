"""Instance-id label images: one label PNG per image, where a pixel's value identifies the
instance it belongs to and 0 is background.

Two encodings:

- "instance" (Penn-Fudan ``PedMasks``): every nonzero value is one instance; one class.
- "cityscapes" (``*_gtFine_instanceIds.png``): a value >= 1000 is instance ``value % 1000`` of
  class ``value // 1000``; a value below 1000 is a class id for pixels not split into
  instances, which become a crowd region (``iscrowd=1``) when that class is a thing class.

The label file of ``<image_root>/<path><image_suffix>`` is
``<label_root>/<path><label_suffix>``. Masks are stored in the dataset dicts as compressed RLE.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ...structures.rle import encode_mask, rle_area_and_box
from ..bad_input import BadAnnotationError, BadInputLog
from ..catalog import DatasetCatalog
from .checks import check_mask_size, read_image_size, read_mask_file
from .metadata import register_metadata, set_thing_classes
from .records import image_record, instance_record, log_loaded

logger = logging.getLogger(__name__)

ID_ENCODINGS = ("instance", "cityscapes")
# Cityscapes label ids of its instance classes (labels.py of the Cityscapes scripts).
CITYSCAPES_THING_CLASSES: Dict[int, str] = {
    24: "person",
    25: "rider",
    26: "car",
    27: "truck",
    28: "bus",
    31: "train",
    32: "motorcycle",
    33: "bicycle",
}
_CITYSCAPES_INSTANCE_OFFSET = 1000


def _image_files(image_root: str, image_suffix: str) -> List[str]:
    """Paths (relative to ``image_root``, sorted) of the files ending with ``image_suffix``."""
    found = []
    for directory, _, files in os.walk(image_root):
        found.extend(os.path.relpath(os.path.join(directory, f), image_root) for f in files if f.endswith(image_suffix))
    return sorted(found)


def _instances(label: np.ndarray, id_encoding: str, class_ids: Mapping[int, int]) -> List[tuple]:
    """(value, class index, iscrowd) of each labelled region of a thing class, in value order."""
    regions = []
    for value in np.unique(label).tolist():
        if value == 0:
            continue
        if id_encoding == "instance":
            regions.append((value, 0, 0))
            continue
        is_instance = value >= _CITYSCAPES_INSTANCE_OFFSET
        class_id = value // _CITYSCAPES_INSTANCE_OFFSET if is_instance else value
        if class_id in class_ids:
            regions.append((value, class_ids[class_id], 0 if is_instance else 1))
    return regions


def load_instance_id_png(
    image_root: str,
    label_root: str,
    dataset_name: Optional[str] = None,
    *,
    image_suffix: str = ".png",
    label_suffix: str = "_mask.png",
    id_encoding: str = "instance",
    thing_classes: Optional[Mapping[int, str]] = None,
    on_bad_annotation: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Load images and their instance-id label PNGs into dataset dicts (integer image ids in
    sorted path order).

    ``thing_classes`` maps the class ids encoded in the labels to names (with "instance", the
    single class's id is 1; default ``{1: "object"}``; with "cityscapes", default
    ``CITYSCAPES_THING_CLASSES``); classes are indexed in id order and regions of other
    classes are ignored. A missing or unreadable image or label file, or a label whose size
    differs from its image, is reported (see ``project.data.bad_input``).
    """
    if id_encoding not in ID_ENCODINGS:
        raise ValueError(f"id_encoding must be one of {ID_ENCODINGS}, got {id_encoding!r}")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"image root {image_root} does not exist")
    if thing_classes is None:
        thing_classes = {1: "object"} if id_encoding == "instance" else CITYSCAPES_THING_CLASSES
    ordered_ids = sorted(thing_classes)
    if id_encoding == "instance" and len(ordered_ids) != 1:
        raise ValueError(f"the 'instance' encoding has a single class, got thing_classes={dict(thing_classes)}")
    class_index = {class_id: i for i, class_id in enumerate(ordered_ids)}
    if dataset_name is not None:
        set_thing_classes(dataset_name, [thing_classes[i] for i in ordered_ids], ordered_ids)

    log = BadInputLog.for_dataset(dataset_name, image_root, on_bad_annotation, logger)
    dataset_dicts = []
    for relative in _image_files(image_root, image_suffix):
        image_file = os.path.join(image_root, relative)
        label_file = os.path.join(label_root, relative[: -len(image_suffix)] + label_suffix)
        item = f"labels of image '{relative}'"
        try:
            image_size = read_image_size(image_file, f"image '{relative}'")
            label = read_mask_file(label_file, item)
            check_mask_size(label.shape, image_size, label_file, item)
        except BadAnnotationError as e:
            log.report(e)
            continue
        annotations = []
        for value, category, iscrowd in _instances(label, id_encoding, class_index):
            rle = encode_mask(label == value)
            _, bbox = rle_area_and_box(rle)
            annotations.append(instance_record(bbox, category, rle, iscrowd))
        dataset_dicts.append(image_record(image_file, image_size, len(dataset_dicts), annotations))
    log.summarize()
    log_loaded(logger, dataset_dicts, f"{image_root} and {label_root}")
    return dataset_dicts


def register_instance_id_png(
    name: str, metadata: Mapping[str, Any], image_root: str, label_root: str, **options: Any
) -> None:
    """Register images with instance-id label PNGs under ``name`` (read lazily).

    ``options`` go to ``load_instance_id_png`` (``image_suffix``, ``label_suffix``,
    ``id_encoding``, ``thing_classes`` as {encoded class id: name}, ``on_bad_annotation``).
    With the "instance" encoding, ``metadata["thing_classes"]`` may name the single class.
    """
    if "thing_classes" not in options and options.get("id_encoding", "instance") == "instance":
        options["thing_classes"] = {1: list(metadata.get("thing_classes", ["object"]))[0]}
    DatasetCatalog.register(name, lambda: load_instance_id_png(image_root, label_root, name, **options))
    fixed: Dict[str, Any] = {"image_root": image_root}
    if "thing_classes" in options:
        fixed["thing_classes"] = [options["thing_classes"][i] for i in sorted(options["thing_classes"])]
    register_metadata(name, {k: v for k, v in metadata.items() if k != "thing_classes"}, **fixed)
