"""Anchors: the reference boxes that the RPN scores and regresses at every feature-map location."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from typing import Any, Dict, List

import torch
from torch import nn

from ..config import configurable
from ..layers import ShapeSpec
from ..structures import Boxes
from ..utils.unsupported import unsupported_component
from .registry import ANCHOR_GENERATOR_REGISTRY

_CONFIG_NODE = "MODEL.ANCHOR_GENERATOR"


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _argument_name(argument: str) -> str:
    """How errors name an anchor argument: itself and the config key it comes from."""
    return f"{argument} ({_CONFIG_NODE}.{argument.upper()} in a config)"


def per_level_values(values: Sequence, num_levels: int, argument: str) -> List[List[float]]:
    """Expand an anchor argument to one list of positive floats per feature map.

    ``values`` is a flat list of numbers (shared by all levels), a list holding one list
    (shared), or a list of ``num_levels`` lists. ``argument`` (``"sizes"``, ``"aspect_ratios"``)
    names it in error messages.
    """
    name = _argument_name(argument)
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


def _checked_strides(strides: Sequence[int]) -> List[int]:
    if len(strides) == 0:
        raise ValueError("DefaultAnchorGenerator needs at least one feature map: strides is empty")
    if any(not isinstance(s, int) or s <= 0 for s in strides):
        raise ValueError(f"DefaultAnchorGenerator needs a positive integer stride per feature map, got {list(strides)}")
    return list(strides)


def _checked_offset(offset: float) -> float:
    if not 0.0 <= offset < 1.0:
        raise ValueError(f"{_argument_name('offset')} must be in [0, 1), got {offset}")
    return float(offset)


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

    Level ``i`` has a feature map of stride ``strides[i]`` and one cell anchor per pair of
    ``sizes[i]`` (square root of the area, input pixels) and ``aspect_ratios[i]`` (height /
    width); a flat list of numbers, or a list holding one list, is shared by all levels. The
    anchors of location ``(x, y)`` are the cell anchors shifted by ``((x + offset) * s,
    (y + offset) * s)``. From a config: ``MODEL.ANCHOR_GENERATOR``'s ``SIZES``,
    ``ASPECT_RATIOS`` and ``OFFSET``, and the strides of the ``input_shape`` list.
    """

    box_dim: int = 4

    @configurable
    def __init__(
        self,
        *,
        sizes: Sequence,
        aspect_ratios: Sequence,
        strides: Sequence[int],
        offset: float = 0.5,
    ):
        super().__init__()
        self.strides: List[int] = _checked_strides(strides)
        self.offset = _checked_offset(offset)
        level_sizes = per_level_values(sizes, len(self.strides), "sizes")
        level_ratios = per_level_values(aspect_ratios, len(self.strides), "aspect_ratios")
        cells = [generate_cell_anchors(s, r) for s, r in zip(level_sizes, level_ratios)]
        self._cells_per_level: List[int] = [len(cell) for cell in cells]
        # All levels' cell anchors in one buffer: derived from the arguments, so kept out of
        # checkpoints, yet it follows .to(device).
        self.register_buffer("_cells", torch.cat(cells), persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]) -> Dict[str, Any]:
        node = cfg.MODEL.ANCHOR_GENERATOR
        strides = [shape.stride for shape in input_shape]
        return {"sizes": node.SIZES, "aspect_ratios": node.ASPECT_RATIOS, "strides": strides, "offset": node.OFFSET}

    @property
    def cell_anchors(self) -> List[torch.Tensor]:
        """Per level, its cell anchors (A_i, 4) XYXY centred at (0, 0)."""
        return list(self._cells.split(self._cells_per_level))

    @property
    def num_anchors(self) -> List[int]:
        """Per level, the number of anchors at each location."""
        return list(self._cells_per_level)

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
        return [
            Boxes(_grid_anchors(cell, feature.shape[-2], feature.shape[-1], stride, self.offset))
            for feature, stride, cell in zip(features, self.strides, self.cell_anchors)
        ]


def _grid_anchors(cell: torch.Tensor, height: int, width: int, stride: int, offset: float) -> torch.Tensor:
    """(height * width * A, 4): the A cell anchors placed at every location of a height x width
    grid of the given stride, row-major by location, then by cell anchor."""
    shift_x = (torch.arange(width, dtype=torch.float32, device=cell.device) + offset) * stride
    shift_y = (torch.arange(height, dtype=torch.float32, device=cell.device) + offset) * stride
    grid_y, grid_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
    grid_x, grid_y = grid_x.reshape(-1), grid_y.reshape(-1)
    shifts = torch.stack((grid_x, grid_y, grid_x, grid_y), dim=1)
    return (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)


RotatedAnchorGenerator = unsupported_component(
    "RotatedAnchorGenerator", "rotated boxes are outside this project's scope; use DefaultAnchorGenerator"
)


def build_anchor_generator(cfg, input_shape: List[ShapeSpec]) -> nn.Module:
    """The anchor generator named by ``cfg.MODEL.ANCHOR_GENERATOR.NAME``, for these feature maps."""
    return ANCHOR_GENERATOR_REGISTRY.get(cfg.MODEL.ANCHOR_GENERATOR.NAME)(cfg, input_shape)
