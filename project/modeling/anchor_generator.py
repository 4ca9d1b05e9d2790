"""Anchors: the reference boxes that the RPN scores and regresses at every feature-map location."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from typing import List

import torch
from torch import nn

from ..layers import ShapeSpec
from ..structures import Boxes
from .registry import ANCHOR_GENERATOR_REGISTRY

_CFG_PREFIX = "cfg.MODEL.ANCHOR_GENERATOR"


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def per_level_values(values: Sequence, num_levels: int, key: str) -> List[List[float]]:
    """Expand an anchor option to one list of positive floats per feature map.

    ``values`` is a flat list of numbers (shared by all levels), a list holding one list
    (shared), or a list of ``num_levels`` lists. ``key`` names the option in error messages.
    """
    name = f"{_CFG_PREFIX}.{key}"
    if not _is_list(values) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    if all(_is_number(v) for v in values):
        per_level = [list(values)] * num_levels
    elif all(_is_list(v) for v in values):
        if len(values) == 1:
            per_level = [list(values[0])] * num_levels
        elif len(values) == num_levels:
            per_level = [list(v) for v in values]
        else:
            raise ValueError(
                f"{name} has {len(values)} lists, but the anchor generator gets {num_levels} "
                f"feature maps; give one list per feature map or a single shared list: {values!r}"
            )
    else:
        raise ValueError(f"{name} must be a list of numbers or a list of lists of numbers, got {values!r}")
    for level, level_values in enumerate(per_level):
        if not level_values:
            raise ValueError(f"{name} for feature map {level} is empty: {values!r}")
        for v in level_values:
            if not _is_number(v) or not math.isfinite(v) or v <= 0:
                raise ValueError(
                    f"{name} for feature map {level} must hold positive finite numbers, got {v!r} in {values!r}"
                )
    return [[float(v) for v in level_values] for level_values in per_level]


def _centred_box(size: float, aspect_ratio: float) -> List[float]:
    """XYXY corners of the box centred at (0, 0) with area ``size**2`` and height / width ``aspect_ratio``."""
    width = math.sqrt(size**2.0 / aspect_ratio)
    half_w, half_h = width / 2.0, aspect_ratio * width / 2.0
    return [-half_w, -half_h, half_w, half_h]


def generate_cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> torch.Tensor:
    """Anchors centred at (0, 0), XYXY float32 of shape (len(sizes) * len(aspect_ratios), 4), one per
    (size, aspect ratio) pair, size-major. An anchor's area is ``size**2`` and its aspect ratio is
    height / width. Computed in Python floats (double), rounded to float32 once at the end."""
    return torch.tensor([_centred_box(s, r) for s, r in itertools.product(sizes, aspect_ratios)], dtype=torch.float32)


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """The Faster R-CNN anchors: every cell anchor of a level, at every location of its grid.

    The anchors of location ``(x, y)`` on a level of stride ``s`` are that level's cell anchors
    shifted by ``((x + offset) * s, (y + offset) * s)`` input pixels.
    """

    box_dim: int = 4

    def __init__(self, cfg, input_shape: List[ShapeSpec]):
        super().__init__()
        if len(input_shape) == 0:
            raise ValueError("DefaultAnchorGenerator needs at least one input feature map")
        strides = [shape.stride for shape in input_shape]
        if any(not isinstance(s, int) or s <= 0 for s in strides):
            raise ValueError(
                f"DefaultAnchorGenerator needs a positive integer stride for every input feature "
                f"map, got strides {strides}"
            )
        anchor_cfg = cfg.MODEL.ANCHOR_GENERATOR
        offset = float(anchor_cfg.OFFSET)
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"{_CFG_PREFIX}.OFFSET must be in [0, 1), got {offset}")
        sizes = per_level_values(anchor_cfg.SIZES, len(strides), "SIZES")
        aspect_ratios = per_level_values(anchor_cfg.ASPECT_RATIOS, len(strides), "ASPECT_RATIOS")

        self.strides: List[int] = strides
        self.offset = offset
        # Derived from the config, so kept out of checkpoints; as buffers they follow .to(device).
        for level, (level_sizes, level_ratios) in enumerate(zip(sizes, aspect_ratios)):
            self.register_buffer(
                self._buffer_name(level), generate_cell_anchors(level_sizes, level_ratios), persistent=False
            )

    @staticmethod
    def _buffer_name(level: int) -> str:
        return f"cell_anchors_{level}"

    @property
    def cell_anchors(self) -> List[torch.Tensor]:
        """Per level, its cell anchors (A_i, 4) XYXY centred at (0, 0)."""
        return [getattr(self, self._buffer_name(level)) for level in range(len(self.strides))]

    @property
    def num_anchors(self) -> List[int]:
        """Per level, the number of anchors at each location."""
        return [len(cell) for cell in self.cell_anchors]

    @property
    def num_cell_anchors(self) -> List[int]:
        """Alias of ``num_anchors``."""
        return self.num_anchors

    def forward(self, features: List[torch.Tensor]) -> List[Boxes]:
        """Anchors of each feature map (N, C, H_i, W_i): Boxes of H_i * W_i * A_i rows, ordered
        row-major by location, then by cell anchor; XYXY in input-image pixels."""
        if len(features) != len(self.strides):
            raise ValueError(
                f"DefaultAnchorGenerator was built for {len(self.strides)} feature maps, got {len(features)}"
            )
        anchors = []
        for feature, stride, cell in zip(features, self.strides, self.cell_anchors):
            height, width = feature.shape[-2:]
            shift_x = (torch.arange(width, dtype=torch.float32, device=cell.device) + self.offset) * stride
            shift_y = (torch.arange(height, dtype=torch.float32, device=cell.device) + self.offset) * stride
            grid_y, grid_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
            grid_x, grid_y = grid_x.reshape(-1), grid_y.reshape(-1)
            shifts = torch.stack((grid_x, grid_y, grid_x, grid_y), dim=1)
            anchors.append(Boxes((shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)))
        return anchors


def build_anchor_generator(cfg, input_shape: List[ShapeSpec]) -> nn.Module:
    """The anchor generator named by ``cfg.MODEL.ANCHOR_GENERATOR.NAME``, for these feature maps."""
    return ANCHOR_GENERATOR_REGISTRY.get(cfg.MODEL.ANCHOR_GENERATOR.NAME)(cfg, input_shape)
