"""Meta-architectures: whole models assembled from registered components."""

from .build import META_ARCH_REGISTRY, build_model
from .rcnn import GeneralizedRCNN

__all__ = ["META_ARCH_REGISTRY", "GeneralizedRCNN", "build_model"]
