"""The dataset-dict records every loader builds: one per image, one per instance, and the
summary line logged once a dataset is loaded."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence, Tuple

from project.structures import BoxMode


def image_record(
    file_name: str, image_size: Tuple[int, int], image_id: Any, annotations: List[Dict[str, Any]]
) -> Dict[str, Any]:
    """A dataset dict for one image; ``image_size`` is (height, width) in pixels."""
    return {
        "file_name": file_name,
        "height": image_size[0],
        "width": image_size[1],
        "image_id": image_id,
        "annotations": annotations,
    }


def instance_record(bbox: Sequence[float], category_id: int, segmentation: Any, iscrowd: int = 0) -> Dict[str, Any]:
    """An annotation dict for one instance: ``bbox`` is absolute XYWH pixels, ``category_id``
    a contiguous class index, ``segmentation`` polygons (list of flat [x0, y0, ...] lists) or
    a compressed RLE dict."""
    return {
        "bbox": bbox,
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": category_id,
        "segmentation": segmentation,
        "iscrowd": iscrowd,
    }


def log_loaded(
    logger: logging.Logger, dataset_dicts: Sequence[Dict[str, Any]], source: str, what: str = "instances"
) -> None:
    """Log "Loaded <N> images with <M> <what> from <source>" at INFO on ``logger``."""
    logger.info(
        "Loaded %d images with %d %s from %s",
        len(dataset_dicts),
        sum(len(d["annotations"]) for d in dataset_dicts),
        what,
        source,
    )
