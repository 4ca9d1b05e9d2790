"""Box heads: turn pooled RoI features into one feature vector per RoI."""

from __future__ import annotations

from typing import List

import torch
from fvcore.nn import weight_init
from torch import nn

from ...layers import ShapeSpec, conv3x3_norm_relu
from ..registry import ROI_BOX_HEAD_REGISTRY


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHead(nn.Sequential):
    """``NUM_CONV`` 3x3 convs (``conv1``...) then ``NUM_FC`` fully connected layers (``fc1``...),
    each followed by ReLU. Input (R, C, P, P); output (R, FC_DIM), or the conv map if NUM_FC is 0."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        head = cfg.MODEL.ROI_BOX_HEAD
        shape = (input_shape.channels, input_shape.height, input_shape.width)
        for k in range(head.NUM_CONV):
            conv = conv3x3_norm_relu(shape[0], head.CONV_DIM, head.NORM)
            weight_init.c2_msra_fill(conv)
            self.add_module(f"conv{k + 1}", conv)
            shape = (head.CONV_DIM, shape[1], shape[2])
        for k in range(head.NUM_FC):
            if k == 0:
                self.add_module("flatten", nn.Flatten())
            fc = nn.Linear(int(torch.tensor(shape).prod()), head.FC_DIM)
            weight_init.c2_xavier_fill(fc)
            self.add_module(f"fc{k + 1}", fc)
            self.add_module(f"fc_relu{k + 1}", nn.ReLU())
            shape = (head.FC_DIM,)
        self._output_size: List[int] = list(shape)

    @property
    def output_shape(self) -> ShapeSpec:
        if len(self._output_size) == 1:
            return ShapeSpec(channels=self._output_size[0])
        return ShapeSpec(channels=self._output_size[0], height=self._output_size[1], width=self._output_size[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x


def build_box_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """The box head named by ``MODEL.ROI_BOX_HEAD.NAME``."""
    return ROI_BOX_HEAD_REGISTRY.get(cfg.MODEL.ROI_BOX_HEAD.NAME)(cfg, input_shape)


__all__ = ["FastRCNNConvFCHead", "build_box_head"]
