"""``ROIPooler``: RoIAlign over a feature pyramid, each box read from the level that fits its size."""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn

from ..layers import roi_align
from ..structures import Boxes


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


def boxes_to_rois(box_lists: List[Boxes]) -> torch.Tensor:
    """(M, 5) RoIs ``(batch_index, x0, y0, x1, y1)`` for torchvision's RoI ops."""
    device = box_lists[0].device
    indices = torch.cat(
        [torch.full((len(b), 1), i, dtype=b.tensor.dtype, device=device) for i, b in enumerate(box_lists)]
    )
    return torch.cat([indices, torch.cat([b.tensor for b in box_lists])], dim=1)


class ROIPooler(nn.Module):
    """Pool a fixed-size feature for each box from a list of feature maps of strides ``1/scales``.

    ``pooler_type`` is ``"ROIAlignV2"`` (half-pixel aligned, Detectron2's default) or
    ``"ROIAlign"`` (the original, unaligned). ``sampling_ratio`` 0 means adaptive.
    """

    def __init__(
        self,
        output_size: int,
        scales: Sequence[float],
        sampling_ratio: int,
        pooler_type: str,
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ):
        super().__init__()
        if pooler_type not in ("ROIAlignV2", "ROIAlign"):
            raise ValueError(f"unknown pooler type {pooler_type!r}; expected 'ROIAlignV2' or 'ROIAlign'")
        self.output_size = (int(output_size), int(output_size))
        self.scales = [float(s) for s in scales]
        self.sampling_ratio = int(sampling_ratio)
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
        # itself; converting here, once per call and only for levels that have boxes, is cheaper.
        feature = feature.contiguous()
        return roi_align(feature, rois, self.output_size, scale, self.sampling_ratio, self.aligned)

    def forward(self, features: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        """Pool boxes (one ``Boxes`` per image) from ``features`` (one (N, C, H, W) per level).

        Returns (M, C, output_size, output_size), rows in the order of the concatenated boxes.
        """
        if len(features) != len(self.scales):
            raise ValueError(f"ROIPooler expects {len(self.scales)} feature maps, got {len(features)}")
        channels = features[0].shape[1]
        num_boxes = sum(len(b) for b in box_lists)
        if num_boxes == 0:
            return features[0].new_zeros((0, channels) + self.output_size)
        # Boxes are float32; a model run in another precision pools with RoIs of its own dtype.
        rois = boxes_to_rois(box_lists).to(features[0].dtype)
        if len(features) == 1:
            return self._pool(features[0], rois, self.scales[0])
        levels = assign_boxes_to_levels(
            box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        output = features[0].new_zeros((num_boxes, channels) + self.output_size)
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            index = torch.nonzero(levels == level, as_tuple=True)[0]
            if index.numel():
                output[index] = self._pool(feature, rois[index], scale).to(output.dtype)
        return output
