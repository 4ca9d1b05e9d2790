"""Detectron2's keypoint heads: outside this project's scope (see ``project.utils.unsupported``)."""

from ...utils.unsupported import unsupported_component

_REASON = "keypoint detection is outside this project's scope; it predicts boxes and instance masks"

BaseKeypointRCNNHead = unsupported_component("BaseKeypointRCNNHead", _REASON)
KRCNNConvDeconvUpsampleHead = unsupported_component("KRCNNConvDeconvUpsampleHead", _REASON)

__all__ = ["BaseKeypointRCNNHead", "KRCNNConvDeconvUpsampleHead"]
