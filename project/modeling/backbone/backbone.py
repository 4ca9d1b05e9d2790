"""``Backbone``: the interface every feature extractor of the model implements."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Dict, List

import torch
from torch import nn

from project.layers import ShapeSpec


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network mapping an image batch to named feature maps.

    Subclasses fill three attributes in ``__init__``, from which ``output_shape`` is derived:

    - ``_out_features``: the names of the returned feature maps, in output order;
    - ``_out_feature_channels``: name -> channel count;
    - ``_out_feature_strides``: name -> stride (input pixels per feature-map pixel); an output
      that is not a feature map (a classifier's logits) has none.
    """

    _out_features: List[str]
    _out_feature_channels: Dict[str, int]
    _out_feature_strides: Dict[str, int]

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Map an ``(N, C, H, W)`` batch to ``{name: (N, C_name, H / stride, W / stride)}``."""

    @property
    def size_divisibility(self) -> int:
        """The integer the input height and width must be multiples of; 0 when unconstrained."""
        return 0

    @property
    def padding_constraints(self) -> Dict[str, int]:
        """How inputs must be padded, as Detectron2 spells it: ``{"size_divisibility": d}``
        when ``size_divisibility`` is positive, else ``{}``."""
        divisibility = self.size_divisibility
        return {"size_divisibility": divisibility} if divisibility > 0 else {}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Channels and stride (``None`` for an output that is not a map) of each returned
        output, by name, in output order."""
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides.get(name))
            for name in self._out_features
        }
