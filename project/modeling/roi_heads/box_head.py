"""Box heads: turn pooled RoI features into one feature vector per RoI."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from fvcore.nn import weight_init
from torch import nn

from ...config import configurable
from ...layers import ShapeSpec, conv3x3_norm_relu
from ...layers.batch_norm import NormSpec
from ..registry import ROI_BOX_HEAD_REGISTRY


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHead(nn.Sequential):
    """3x3 convolutions (``conv1``...), then fully connected layers (``fc1``...), each followed by
    ReLU. Input (R, C, P, P); output (R, fc_dims[-1]), or the last conv map if ``fc_dims`` is empty.

    ``conv_dims`` and ``fc_dims`` are the output sizes of the layers (at least one layer in all);
    ``conv_norm`` is the convolutions' norm (a name for ``get_norm``, "" for none and a bias).
    From a config: ``NUM_CONV`` x ``CONV_DIM``, ``NUM_FC`` x ``FC_DIM`` and ``NORM`` of
    ``MODEL.ROI_BOX_HEAD``.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        conv_dims: Sequence[int],
        fc_dims: Sequence[int],
        conv_norm: NormSpec = "",
    ):
        super().__init__()
        if not conv_dims and not fc_dims:
            raise ValueError("FastRCNNConvFCHead needs at least one layer: conv_dims and fc_dims are both empty")
        shape = (input_shape.channels, input_shape.height, input_shape.width)
        for k, dim in enumerate(conv_dims, start=1):
            conv = conv3x3_norm_relu(shape[0], dim, conv_norm)
            weight_init.c2_msra_fill(conv)
            self.add_module(f"conv{k}", conv)
            shape = (dim, shape[1], shape[2])
        if fc_dims:
            self.add_module("flatten", nn.Flatten())
        for k, dim in enumerate(fc_dims, start=1):
            fc = nn.Linear(int(torch.tensor(shape).prod()), dim)
            weight_init.c2_xavier_fill(fc)
            self.add_module(f"fc{k}", fc)
            self.add_module(f"fc_relu{k}", nn.ReLU())
            shape = (dim,)
        self._output_size: List[int] = list(shape)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict[str, Any]:
        head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "input_shape": input_shape,
            "conv_dims": [head.CONV_DIM] * head.NUM_CONV,
            "fc_dims": [head.FC_DIM] * head.NUM_FC,
            "conv_norm": head.NORM,
        }

    @property
    def output_shape(self) -> ShapeSpec:
        """The shape of one RoI's output: ``channels`` only after a fully connected layer."""
        if len(self._output_size) == 1:
            return ShapeSpec(channels=self._output_size[0])
        return ShapeSpec(channels=self._output_size[0], height=self._output_size[1], width=self._output_size[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x


def build_box_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """The box head named by ``MODEL.ROI_BOX_HEAD.NAME``, built as ``cls(cfg, input_shape)``."""
    return ROI_BOX_HEAD_REGISTRY.get(cfg.MODEL.ROI_BOX_HEAD.NAME)(cfg, input_shape)


__all__ = ["ROI_BOX_HEAD_REGISTRY", "FastRCNNConvFCHead", "build_box_head"]
