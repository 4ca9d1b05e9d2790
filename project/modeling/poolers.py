"""``ROIPooler``: RoIAlign over a feature pyramid, each box read from the level that fits its size."""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn
from torchvision.ops import roi_pool

from ..layers import roi_align
from ..structures import Boxes

POOLER_TYPES = ("ROIAlignV2", "ROIAlign", "ROIPool")


def assign_boxes_to_levels(
    box_lists: List[Boxes], min_level: int, max_level: int, canonical_box_size: int, canonical_level: int
) -> torch.Tensor:
    """Pyramid level index (0-based from ``min_level``) for every box, concatenated over images.

    A box of side ``sqrt(area)`` goes to ``floor(canonical_level + log2(side / canonical_box_size))``
    clamped to ``[min_level, max_level]`` (FPN paper, eq. 1); the small epsilon keeps a box of
    exactly twice the canonical size from landing one level lower through rounding.
    """
    side = torch.cat([boxes.area() for boxes in box_lists]).sqrt()
    octaves = torch.log2(side / canonical_box_size + 1e-8)
    level = (canonical_level + octaves).floor().clamp(min_level, max_level)
    return level.long() - min_level


def convert_boxes_to_pooler_format(box_lists: List[Boxes]) -> torch.Tensor:
    """(M, 5) RoIs ``(batch_index, x0, y0, x1, y1)`` for torchvision's RoI ops, images in order."""
    return torch.cat(
        [torch.cat([torch.full_like(b.tensor[:, :1], i), b.tensor], dim=1) for i, b in enumerate(box_lists)]
    )


def _square(output_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``output_size`` as a ``(height, width)`` pair of ints."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(side, int) and side > 0 for side in size):
        raise ValueError(f"ROIPooler output_size must be a positive int or a (height, width) pair, got {output_size!r}")
    return size


class ROIPooler(nn.Module):
    """Pool a fixed-size feature for each box from a list of feature maps of strides ``1/scales``.

    ``pooler_type`` is ``"ROIAlignV2"`` (half-pixel aligned, Detectron2's default), ``"ROIAlign"``
    (the original, unaligned) or ``"ROIPool"`` (max pooling over quantised bins, Fast R-CNN's).
    ``sampling_ratio`` 0 means adaptive. ``output_size`` is an int or ``(height, width)``. With
    several maps, a box is pooled from the level given by ``assign_boxes_to_levels``.
    """

    def __init__(
        self,
        output_size: Union[int, Sequence[int]],
        scales: Sequence[float],
        sampling_ratio: int,
        pooler_type: str,
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        if pooler_type not in POOLER_TYPES:
            raise ValueError(f"unknown pooler type {pooler_type!r}; expected one of {POOLER_TYPES}")
        self.output_size = _square(output_size)
        self.scales = [float(s) for s in scales]
        self.sampling_ratio = int(sampling_ratio)
        self.pooler_type = pooler_type
        self.aligned = pooler_type == "ROIAlignV2"
        min_level = -math.log2(self.scales[0])
        max_level = -math.log2(self.scales[-1])
        if not (min_level.is_integer() and max_level.is_integer()):
            raise ValueError(f"feature strides must be powers of two, got scales {self.scales}")
        self.min_level, self.max_level = int(min_level), int(max_level)
        if len(self.scales) != self.max_level - self.min_level + 1:
            raise ValueError(f"scales {self.scales} must cover consecutive pyramid levels")
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def _pool(self, feature: torch.Tensor, rois: torch.Tensor, scale: float) -> torch.Tensor:
        # RoIAlign's CPU kernel is far slower on channels-last maps, and would convert the map
        # itself; converting here, once per call and level, is cheaper.
        feature = feature.contiguous()
        if self.pooler_type == "ROIPool":
            return roi_pool(feature, rois, self.output_size, scale)
        return roi_align(feature, rois, self.output_size, scale, self.sampling_ratio, self.aligned)

    def forward(self, features: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        """Pool boxes (one ``Boxes`` per image) from ``features`` (one (N, C, H, W) per level).

        Returns (M, C, *output_size), rows in the order of the concatenated boxes. Traceable
        with ``torch.jit.trace``: the trace holds for any number of boxes.
        """
        if len(features) != len(self.scales):
            raise ValueError(f"ROIPooler expects {len(self.scales)} feature maps, got {len(features)}")
        channels = features[0].shape[1]
        if sum(len(b) for b in box_lists) == 0:
            return features[0].new_zeros((0, channels) + self.output_size)
        # Boxes are float32; a model run in another precision pools with RoIs of its own dtype.
        rois = convert_boxes_to_pooler_format(box_lists).to(features[0].dtype)
        if len(features) == 1:
            return self._pool(features[0], rois, self.scales[0])
        levels = assign_boxes_to_levels(
            box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        output = features[0].new_zeros((rois.shape[0], channels) + self.output_size)
        # Every level is pooled, even one without boxes, so that a trace covers all of them;
        # index_put_ rather than ``output[index] =``, whose trace breaks when a level has one box.
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            index = torch.nonzero(levels == level, as_tuple=True)[0]
            output.index_put_((index,), self._pool(feature, rois[index], scale).to(output.dtype))
        return output
