"""A Detectron2-compatible Mask R-CNN toolkit (model, data, training, evaluation, predictor)."""

__version__ = "0.1.0"
