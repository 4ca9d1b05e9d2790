"""Transforms (deterministic, fvcore) and augmentations (random policies choosing transforms)."""

from fvcore.transforms.transform import (
    BlendTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

from .augmentation import AugInput, Augmentation, AugmentationList, apply_augmentations
from .augmentation_impl import (
    FixedSizeCrop,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    ResizeScale,
    ResizeShortestEdge,
)
from .mask_resampling import MaskCropResampler
from .transform import CropTransform, ResizeTransform, clip_polygon

__all__ = [
    "AugInput",
    "Augmentation",
    "AugmentationList",
    "BlendTransform",
    "CropTransform",
    "FixedSizeCrop",
    "HFlipTransform",
    "MaskCropResampler",
    "NoOpTransform",
    "PadTransform",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "ResizeScale",
    "ResizeShortestEdge",
    "ResizeTransform",
    "Transform",
    "TransformList",
    "VFlipTransform",
    "apply_augmentations",
    "clip_polygon",
]
