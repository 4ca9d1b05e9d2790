"""Backbones: the ``Backbone`` interface, ResNet, FPN and ``build_backbone``.

Importing this package registers ``build_resnet_backbone`` and ``build_resnet_fpn_backbone``
in ``BACKBONE_REGISTRY``.
"""

from ..registry import BACKBONE_REGISTRY
from .backbone import Backbone
from .build import build_backbone
from .fpn import FPN, LastLevelMaxPool, build_resnet_fpn_backbone
from .resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    CNNBlockBase,
    ResNet,
    ResNetBlockBase,
    build_resnet_backbone,
    make_stage,
)

__all__ = [
    "BACKBONE_REGISTRY",
    "Backbone",
    "BasicBlock",
    "BasicStem",
    "BottleneckBlock",
    "CNNBlockBase",
    "FPN",
    "LastLevelMaxPool",
    "ResNet",
    "ResNetBlockBase",
    "build_backbone",
    "build_resnet_backbone",
    "build_resnet_fpn_backbone",
    "make_stage",
]
