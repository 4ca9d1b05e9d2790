"""Meta-architectures: whole models assembled from registered components."""

from .build import build_model
from .rcnn import GeneralizedRCNN

__all__ = ["GeneralizedRCNN", "build_model"]
