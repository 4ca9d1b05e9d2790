"""The model: registries, backbones, proposal generators, ROI heads and meta-architectures.

Importing this package registers every built-in component by name. The names Detectron2
exports from ``detectron2.modeling`` for these parts are importable from here alike.
"""

from ..layers import ShapeSpec
from .anchor_generator import DefaultAnchorGenerator, build_anchor_generator
from .backbone import FPN, Backbone, ResNet, build_backbone, build_resnet_backbone
from .meta_arch import GeneralizedRCNN, build_model
from .postprocessing import detector_postprocess
from .proposal_generator import RPN, StandardRPNHead, build_proposal_generator, build_rpn_head
from .registry import (
    ANCHOR_GENERATOR_REGISTRY,
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    PROPOSAL_GENERATOR_REGISTRY,
    ROI_BOX_HEAD_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    RPN_HEAD_REGISTRY,
)
from .roi_heads import (
    BaseMaskRCNNHead,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    MaskRCNNConvUpsampleHead,
    ROIHeads,
    StandardROIHeads,
    build_box_head,
    build_mask_head,
    build_roi_heads,
)

__all__ = [
    "ANCHOR_GENERATOR_REGISTRY",
    "BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "RPN_HEAD_REGISTRY",
    "FPN",
    "RPN",
    "Backbone",
    "BaseMaskRCNNHead",
    "DefaultAnchorGenerator",
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "GeneralizedRCNN",
    "MaskRCNNConvUpsampleHead",
    "ROIHeads",
    "ResNet",
    "ShapeSpec",
    "StandardROIHeads",
    "StandardRPNHead",
    "build_anchor_generator",
    "build_backbone",
    "build_box_head",
    "build_mask_head",
    "build_model",
    "build_proposal_generator",
    "build_resnet_backbone",
    "build_roi_heads",
    "build_rpn_head",
    "detector_postprocess",
]
