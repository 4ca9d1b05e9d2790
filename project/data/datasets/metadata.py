"""Metadata the register functions attach to a dataset name."""

from __future__ import annotations

import colorsys
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ..catalog import MetadataCatalog


def default_thing_colors(num_classes: int) -> List[Tuple[int, int, int]]:
    """Distinct, reproducible RGB colours: hues spread by the golden ratio."""
    colors = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


def set_thing_classes(dataset_name: str, thing_classes: Sequence[str], dataset_ids: Sequence[int]) -> None:
    """Record the classes of a loaded dataset: ``thing_classes``, the map from the ids in the
    source files to contiguous ids 0..K-1 (``thing_dataset_id_to_contiguous_id``), and
    ``thing_colors`` unless already set. Raises if the name already has different classes."""
    meta = MetadataCatalog.get(dataset_name)
    meta.thing_classes = list(thing_classes)
    meta.thing_dataset_id_to_contiguous_id = {int(d): i for i, d in enumerate(dataset_ids)}
    if meta.get("thing_colors") is None:
        meta.thing_colors = default_thing_colors(len(thing_classes))


def register_metadata(dataset_name: str, metadata: Mapping[str, Any], **fixed: Any) -> None:
    """Attach the user's ``metadata`` and the register function's ``fixed`` entries
    (``evaluator_type``, ``json_file``, ...); the user's take precedence."""
    values: Dict[str, Any] = {"evaluator_type": "coco", **fixed, **dict(metadata)}
    if "thing_classes" in values and "thing_colors" not in values:
        values["thing_colors"] = default_thing_colors(len(values["thing_classes"]))
    MetadataCatalog.get(dataset_name).set(**values)
