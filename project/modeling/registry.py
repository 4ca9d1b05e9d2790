"""Every registry of model components, under Detectron2's names.

A component registers itself with a decorator and is then chosen by name in the config::

    @ROI_MASK_HEAD_REGISTRY.register()
    class MyMaskHead(nn.Module):
        def __init__(self, cfg, input_shape: ShapeSpec): ...

    cfg.MODEL.ROI_MASK_HEAD.NAME = "MyMaskHead"
"""

from fvcore.common.registry import Registry

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Whole models, called as ``cls(cfg)``; chosen by MODEL.META_ARCHITECTURE."

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = (
    "Backbone builders, called as ``fn(cfg, input_shape)`` and returning a ``Backbone``; chosen by MODEL.BACKBONE.NAME."
)

PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = (
    "Proposal generators, called as ``cls(cfg, input_shape)``; chosen by MODEL.PROPOSAL_GENERATOR.NAME."
)

RPN_HEAD_REGISTRY = Registry("RPN_HEAD")
RPN_HEAD_REGISTRY.__doc__ = "RPN heads, called as ``cls(cfg, input_shape)``; chosen by MODEL.RPN.HEAD_NAME."

ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")
ANCHOR_GENERATOR_REGISTRY.__doc__ = (
    "Anchor generators, called as ``cls(cfg, input_shape)``; chosen by MODEL.ANCHOR_GENERATOR.NAME."
)

ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = "ROI heads, called as ``cls(cfg, input_shape)``; chosen by MODEL.ROI_HEADS.NAME."

ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD")
ROI_BOX_HEAD_REGISTRY.__doc__ = "Box heads, called as ``cls(cfg, input_shape)``; chosen by MODEL.ROI_BOX_HEAD.NAME."

ROI_MASK_HEAD_REGISTRY = Registry("ROI_MASK_HEAD")
ROI_MASK_HEAD_REGISTRY.__doc__ = "Mask heads, called as ``cls(cfg, input_shape)``; chosen by MODEL.ROI_MASK_HEAD.NAME."
