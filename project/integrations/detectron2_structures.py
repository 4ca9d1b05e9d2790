"""Converting the structures that cross the boundary between Detectron2 and this project.

Both sides hold the same data in classes of the same names (``Instances``, ``Boxes``,
``BitMasks``, ``PolygonMasks``, ``ImageList``, ``ShapeSpec``); conversion rewraps it. Tensors
are moved into the other side's object, never copied (polygons are copied by Detectron2's
``PolygonMasks``, which stores its own float64 arrays). This project's ``CroppedBitMasks``
(masks kept around their boxes) become Detectron2 ``BitMasks`` or, for ``pred_masks``, the
(N, H, W) bool tensor Detectron2 models return. Converting an object already of the target
side returns it unchanged, so a conversion may run twice. Other values (plain tensors, lists)
pass through.

Also here: forwarding the training statistics this project's model code records (in this
project's ``EventStorage``) into Detectron2's ``EventStorage`` when Detectron2 drives training.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import detectron2.structures as d2
from detectron2.layers import ShapeSpec as D2ShapeSpec
from detectron2.utils.events import get_event_storage as d2_event_storage

from .. import structures as ours
from ..utils.events import EventStorage, current_event_storage


def to_detectron2_value(value: Any, field: str = "") -> Any:
    """One field value as Detectron2 holds it (see the module docstring); ``field`` is the
    field's name (``pred_masks`` become a plain tensor, as Detectron2 models return them)."""
    if isinstance(value, ours.Instances):
        return to_detectron2_instances(value)
    if isinstance(value, ours.Boxes):
        return d2.Boxes(value.tensor)
    if isinstance(value, ours.CroppedBitMasks):
        dense = value.tensor
        return dense if field == "pred_masks" else d2.BitMasks(dense)
    if isinstance(value, ours.BitMasks):
        return value.tensor if field == "pred_masks" else d2.BitMasks(value.tensor)
    if isinstance(value, ours.PolygonMasks):
        return d2.PolygonMasks(value.polygons)
    return value


def to_project_value(value: Any) -> Any:
    """One field value as this project holds it (the inverse of ``to_detectron2_value``)."""
    if isinstance(value, d2.Instances):
        return to_project_instances(value)
    if isinstance(value, d2.Boxes):
        return ours.Boxes(value.tensor)
    if isinstance(value, d2.BitMasks):
        return ours.BitMasks(value.tensor)
    if isinstance(value, d2.PolygonMasks):
        return ours.PolygonMasks(value.polygons)
    return value


def to_detectron2_instances(instances: ours.Instances | d2.Instances) -> d2.Instances:
    """This project's ``Instances`` as Detectron2's, field by field."""
    if isinstance(instances, d2.Instances):
        return instances
    fields = {name: to_detectron2_value(value, name) for name, value in instances.get_fields().items()}
    return d2.Instances(instances.image_size, **fields)


def to_project_instances(instances: ours.Instances | d2.Instances) -> ours.Instances:
    """Detectron2's ``Instances`` as this project's, field by field."""
    if isinstance(instances, ours.Instances):
        return instances
    fields = {name: to_project_value(value) for name, value in instances.get_fields().items()}
    return ours.Instances(instances.image_size, **fields)


def to_project_instance_list(instances: Optional[Sequence[Any]]) -> Optional[List[ours.Instances]]:
    return None if instances is None else [to_project_instances(i) for i in instances]


def to_detectron2_instance_list(instances: Sequence[Any]) -> List[d2.Instances]:
    return [to_detectron2_instances(i) for i in instances]


def to_project_image_list(images: Any) -> ours.ImageList:
    """Detectron2's ``ImageList`` as this project's (the same padded tensor)."""
    if isinstance(images, ours.ImageList):
        return images
    return ours.ImageList(images.tensor, [tuple(size) for size in images.image_sizes])


def to_detectron2_shape_specs(shapes: Mapping[str, Any]) -> Dict[str, D2ShapeSpec]:
    """``{name: ShapeSpec}`` with Detectron2's ``ShapeSpec``."""
    return {
        name: D2ShapeSpec(channels=s.channels, height=s.height, width=s.width, stride=s.stride)
        for name, s in shapes.items()
    }


# Input dict entries holding structures: ground truth in training, precomputed proposals.
_INPUT_STRUCTURE_KEYS = ("instances", "proposals")


def to_project_inputs(batched_inputs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Model input dicts with their ``instances``/``proposals`` as this project's structures;
    new dicts, the caller's are left as they are. The image tensors are the same objects."""
    converted = []
    for item in batched_inputs:
        item = dict(item)
        for key in _INPUT_STRUCTURE_KEYS:
            if key in item:
                item[key] = to_project_value(item[key])
        converted.append(item)
    return converted


def to_detectron2_outputs(outputs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Per-image output dicts with every ``Instances`` as Detectron2's."""
    return [{key: to_detectron2_value(value, key) for key, value in output.items()} for output in outputs]


def _open_detectron2_storage() -> Any:
    """Detectron2's innermost open ``EventStorage``, or None outside any."""
    try:
        return d2_event_storage()
    except AssertionError:  # Detectron2 asserts that a storage is open
        return None


@contextlib.contextmanager
def detectron2_events() -> Iterator[None]:
    """Run this project's model code so that what it records (``fast_rcnn/cls_accuracy``,
    ``mask_rcnn/accuracy``, training pictures ...) lands in Detectron2's open ``EventStorage``
    at its iteration. Does nothing when Detectron2 has no storage open or this project's
    storage is open already (this project's trainer drives the model)."""
    target = _open_detectron2_storage()
    if target is None or current_event_storage() is not None:
        yield
        return
    with EventStorage(target.iter) as local:
        yield
    for name, (value, _) in local.latest().items():
        target.put_scalar(name, value)
    for picture in local.images():
        target.put_image(picture.name, picture.image)


__all__ = [
    "detectron2_events",
    "to_detectron2_instance_list",
    "to_detectron2_instances",
    "to_detectron2_outputs",
    "to_detectron2_shape_specs",
    "to_detectron2_value",
    "to_project_image_list",
    "to_project_inputs",
    "to_project_instance_list",
    "to_project_instances",
    "to_project_value",
]
