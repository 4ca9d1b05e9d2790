"""Per-instance mask folders in the DSB2018 layout::

    <root>/<id>/images/<id>.png     the image
    <root>/<id>/masks/*.png         one mask per instance (nonzero = inside)

All instances have one class. Masks are stored in the dataset dicts as compressed RLE.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional

from ...structures.rle import encode_mask, rle_area_and_box
from ..bad_input import KIND_INVALID, BadAnnotationError, BadInputLog
from ..catalog import DatasetCatalog
from .checks import check_mask_size, read_image_size, read_mask_file
from .metadata import register_metadata, set_thing_classes
from .records import image_record, instance_record, log_loaded

logger = logging.getLogger(__name__)

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _find_image(folder: str, sample_id: str, image_dirname: str) -> str:
    image_dir = os.path.join(folder, image_dirname)
    preferred = os.path.join(image_dir, sample_id + ".png")
    if os.path.isfile(preferred):
        return preferred
    candidates = (
        sorted(f for f in os.listdir(image_dir) if f.lower().endswith(_IMAGE_EXTENSIONS))
        if os.path.isdir(image_dir)
        else []
    )
    if len(candidates) != 1:
        raise BadAnnotationError(
            image_dir,
            f"sample '{sample_id}'",
            f"expected {sample_id}.png or exactly one image, found {candidates}",
            KIND_INVALID,
        )
    return os.path.join(image_dir, candidates[0])


def load_mask_folder_instances(
    root: str,
    dataset_name: Optional[str] = None,
    *,
    image_dirname: str = "images",
    mask_dirname: str = "masks",
    thing_classes: Optional[List[str]] = None,
    on_bad_annotation: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """Load every ``<root>/<id>/`` sample (sorted by id) into dataset dicts with integer image
    ids 0, 1, ... Each mask file becomes one annotation of class 0 whose segmentation is
    compressed RLE. A missing or unreadable image or mask, a mask whose size differs from its
    image, or an empty mask is reported (see ``project.data.bad_input``)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"mask-folder dataset root {root} does not exist")
    if dataset_name is not None:
        set_thing_classes(dataset_name, thing_classes or ["object"], [1])
    log = BadInputLog.for_dataset(dataset_name, root, on_bad_annotation, logger)
    dataset_dicts = []
    for sample_id in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
        folder = os.path.join(root, sample_id)
        try:
            image_file = _find_image(folder, sample_id, image_dirname)
            image_size = read_image_size(image_file, f"sample '{sample_id}'")
        except BadAnnotationError as e:
            log.report(e)
            continue
        mask_dir = os.path.join(folder, mask_dirname)
        mask_files = sorted(os.listdir(mask_dir)) if os.path.isdir(mask_dir) else []
        annotations = []
        for mask_name in mask_files:
            mask_file = os.path.join(mask_dir, mask_name)
            item = f"mask '{mask_name}'"
            try:
                mask = read_mask_file(mask_file, item)
                check_mask_size(mask.shape, image_size, mask_file, item)
                if not mask.any():
                    raise BadAnnotationError(mask_file, item, "mask is empty", KIND_INVALID)
            except BadAnnotationError as e:
                log.report(e)
                continue
            rle = encode_mask(mask)
            _, bbox = rle_area_and_box(rle)
            annotations.append(instance_record(bbox, 0, rle))
        dataset_dicts.append(image_record(image_file, image_size, len(dataset_dicts), annotations))
    log.summarize()
    log_loaded(logger, dataset_dicts, root, what="instance masks")
    return dataset_dicts


def register_mask_folder_instances(name: str, metadata: Mapping[str, Any], root: str, **options: Any) -> None:
    """Register a DSB2018-style mask-folder dataset under ``name`` (read lazily).

    ``metadata["thing_classes"]`` names the single class (default ``["object"]``); ``options``
    go to ``load_mask_folder_instances``.
    """
    thing_classes = list(metadata.get("thing_classes", ["object"]))
    if len(thing_classes) != 1:
        raise ValueError(f"a mask-folder dataset has one class, got thing_classes={thing_classes}")
    DatasetCatalog.register(
        name, lambda: load_mask_folder_instances(root, name, thing_classes=thing_classes, **options)
    )
    register_metadata(name, {**metadata, "thing_classes": thing_classes}, image_root=root)
