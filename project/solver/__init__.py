"""Optimisation: the SGD optimizer with per-parameter-group hyper-parameters, gradient
clipping, and warmup + multi-step / cosine learning-rate schedules."""

from .build import build_gradient_clipper, build_optimizer, get_default_optimizer_params
from .lr_scheduler import LRMultiplier, WarmupParamScheduler, build_lr_scheduler

__all__ = [
    "LRMultiplier",
    "WarmupParamScheduler",
    "build_gradient_clipper",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
]
