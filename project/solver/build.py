"""``build_optimizer`` (SGD with per-group weight decay and LR) and ``build_gradient_clipper``."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

# Modules whose parameters are normalisation scales and shifts (``SOLVER.WEIGHT_DECAY_NORM``).
NORM_MODULE_TYPES: Tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm,  # BatchNorm1d/2d/3d and SyncBatchNorm
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)

CLIP_TYPES = ("value", "norm", "full_model")

GradientClipper = Callable[[Iterable[torch.Tensor]], None]


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: Optional[float] = None,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """Parameter groups for a ``torch.optim`` optimizer, as few as the hyper-parameters allow.

    Every trainable parameter (each once, even if shared) gets ``lr=base_lr`` and
    ``weight_decay``, except: parameters of normalisation layers (``NORM_MODULE_TYPES``) get
    ``weight_decay_norm`` when it is not None; parameters named ``bias`` get
    ``lr=base_lr * bias_lr_factor`` and, when it is not None, ``weight_decay_bias`` (which takes
    precedence over ``weight_decay_norm`` for a norm layer's bias). Parameters with equal
    hyper-parameters share a group, in the order first met in ``model.named_modules()``.
    """
    groups: Dict[Tuple[float, float], List[nn.Parameter]] = {}
    seen: set = set()
    for module in model.modules():
        is_norm = isinstance(module, NORM_MODULE_TYPES)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            lr, decay = base_lr, weight_decay
            if is_norm and weight_decay_norm is not None:
                decay = weight_decay_norm
            if name == "bias":
                lr = base_lr * bias_lr_factor
                if weight_decay_bias is not None:
                    decay = weight_decay_bias
            groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD over ``model``'s trainable parameters as ``cfg.SOLVER`` says: ``BASE_LR``,
    ``MOMENTUM``, ``NESTEROV``, ``WEIGHT_DECAY``, and the per-group overrides
    ``WEIGHT_DECAY_NORM``, ``BIAS_LR_FACTOR``, ``WEIGHT_DECAY_BIAS`` (see
    :func:`get_default_optimizer_params`). Gradient clipping is applied by the trainer (see
    :func:`build_gradient_clipper`) so that it sees unscaled gradients under AMP."""
    solver = cfg.SOLVER
    params = get_default_optimizer_params(
        model,
        base_lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        bias_lr_factor=solver.BIAS_LR_FACTOR,
        weight_decay_bias=solver.WEIGHT_DECAY_BIAS,
    )
    if not params:
        raise ValueError("build_optimizer: the model has no trainable parameters (all frozen?)")
    if solver.NESTEROV and solver.MOMENTUM <= 0:
        raise ValueError(f"SOLVER.NESTEROV=True needs SOLVER.MOMENTUM > 0, got {solver.MOMENTUM}")
    return torch.optim.SGD(
        params,
        lr=solver.BASE_LR,
        momentum=solver.MOMENTUM,
        nesterov=solver.NESTEROV,
        weight_decay=solver.WEIGHT_DECAY,
    )


def build_gradient_clipper(cfg) -> Optional[GradientClipper]:
    """The clipping that ``cfg.SOLVER.CLIP_GRADIENTS`` asks for, or None when disabled.

    The returned function takes the model's parameters and clips their ``.grad`` in place:

    * ``"value"``: every gradient element into ``[-CLIP_VALUE, CLIP_VALUE]``;
    * ``"norm"``: each parameter's gradient separately to ``NORM_TYPE``-norm at most
      ``CLIP_VALUE`` (Detectron2's per-parameter semantics);
    * ``"full_model"``: all gradients together, by their joint norm.
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return None
    if clip.CLIP_TYPE not in CLIP_TYPES:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE={clip.CLIP_TYPE!r}; expected one of {list(CLIP_TYPES)}")
    if clip.CLIP_VALUE <= 0:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be positive, got {clip.CLIP_VALUE}")
    max_value, norm_type = float(clip.CLIP_VALUE), float(clip.NORM_TYPE)

    def with_grad(params: Iterable[torch.Tensor]) -> List[torch.Tensor]:
        return [p for p in params if p.grad is not None]

    if clip.CLIP_TYPE == "value":
        return lambda params: nn.utils.clip_grad_value_(with_grad(params), max_value)
    if clip.CLIP_TYPE == "norm":

        def clip_each(params: Iterable[torch.Tensor]) -> None:
            for param in with_grad(params):
                nn.utils.clip_grad_norm_(param, max_value, norm_type)

        return clip_each
    return lambda params: nn.utils.clip_grad_norm_(with_grad(params), max_value, norm_type)
