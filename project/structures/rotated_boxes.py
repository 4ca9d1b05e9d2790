"""Detectron2's rotated boxes: outside this project's scope (see ``project.utils.unsupported``)."""

from ..utils.unsupported import unsupported_component

RotatedBoxes = unsupported_component(
    "RotatedBoxes", "rotated boxes are outside this project's scope; use Boxes (axis-aligned XYXY)"
)

__all__ = ["RotatedBoxes"]
