"""Detectron2's ROI heads for rotated boxes: outside this project's scope (see ``project.utils.unsupported``)."""

from ...utils.unsupported import unsupported_component

_REASON = "rotated boxes are outside this project's scope; its ROI heads predict axis-aligned XYXY boxes"

RotatedFastRCNNOutputLayers = unsupported_component("RotatedFastRCNNOutputLayers", _REASON)
RROIHeads = unsupported_component("RROIHeads", _REASON)

__all__ = ["RROIHeads", "RotatedFastRCNNOutputLayers"]
