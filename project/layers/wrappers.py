"""Thin wrappers around torch layers and ops used throughout the model."""

from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import ops

from .batch_norm import FrozenBatchNorm2d, get_norm


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional norm layer and activation.

    The norm is a child module named ``norm``, so the state-dict keys read
    ``<conv>.weight`` and ``<conv>.norm.weight`` as in Detectron2. A ``FrozenBatchNorm2d`` is
    applied in place on the convolution's output: the same arithmetic (and so the same
    rounding) as applying it as a layer, without allocating two more activation maps.
    """

    def __init__(
        self,
        *args,
        norm: Optional[nn.Module] = None,
        activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if isinstance(self.norm, FrozenBatchNorm2d):
            scale, shift = self.norm.scale_and_shift()
            x = x.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))
        elif self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def conv3x3_norm_relu(in_channels: int, out_channels: int, norm: str) -> Conv2d:
    """A 3x3 convolution (stride 1, size-preserving padding) followed by the norm named by
    ``norm`` (see ``get_norm``; no bias when there is one) and ReLU: the hidden layer of the box
    and mask heads."""
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=nn.ReLU(),
    )


def cat(tensors: List[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` that skips the copy when there is a single tensor."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


def nonzero_tuple(x: torch.Tensor):
    """``x.nonzero(as_tuple=True)``, also for 0-dim tensors."""
    if x.dim() == 0:
        return x.unsqueeze(0).nonzero(as_tuple=True)
    return x.nonzero(as_tuple=True)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms`` on (N, 4) XYXY ``boxes`` and (N,) ``scores`` of any float
    dtype (boxes are float32 while a model may score in float64 or half), computed in float32.
    Boxes overlap only within the same ``idxs`` value. Returns the kept indices, best score first."""
    return ops.batched_nms(boxes.float(), scores.float(), idxs, iou_threshold)
