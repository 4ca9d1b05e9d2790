"""Axis-aligned boxes: ``BoxMode`` conversions, the ``Boxes`` container and pairwise IoU."""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch

RawBox = Union[List[float], Tuple[float, ...], torch.Tensor, np.ndarray]


class BoxMode(IntEnum):
    """How the numbers of a box are laid out, with Detectron2's values (stored in dataset dicts).

    Only absolute (pixel) modes can be converted; the relative ones are names only.
    """

    XYXY_ABS = 0  # (x0, y0, x1, y1) in absolute pixels
    XYWH_ABS = 1  # (x0, y0, width, height) in absolute pixels, as in COCO JSON
    XYXY_REL = 2  # (x0, y0, x1, y1) as fractions of the image size; not convertible
    XYWH_REL = 3  # (x0, y0, width, height) as fractions of the image size; not convertible
    XYWHA_ABS = 4  # (centre x, centre y, width, height, angle in degrees counter-clockwise), pixels

    @staticmethod
    def convert(box: RawBox, from_mode: BoxMode, to_mode: BoxMode) -> RawBox:
        """Convert one box (a list or tuple of 4 numbers, 5 for XYWHA_ABS) or an (N, 4 or 5)
        array or tensor between modes.

        Returns the same kind of object it was given (list, tuple, ndarray or tensor, of the
        input's dtype); the input is never modified. Supported: XYXY_ABS <-> XYWH_ABS,
        XYWHA_ABS -> XYXY_ABS (the axis-aligned box enclosing the rotated one) and
        XYWH_ABS -> XYWHA_ABS (angle 0).

        Raises:
            ValueError: a single box has the wrong number of values.
            NotImplementedError: the pair of modes cannot be converted (relative modes, or
                rotated boxes in any other direction).
        """
        from_mode, to_mode = BoxMode(from_mode), BoxMode(to_mode)
        if from_mode == to_mode:
            return box
        conversion = _CONVERSIONS.get((from_mode, to_mode))
        if conversion is None:
            raise NotImplementedError(
                f"BoxMode.convert cannot convert {from_mode.name} to {to_mode.name}; supported: "
                + ", ".join(f"{a.name} -> {b.name}" for a, b in _CONVERSIONS)
            )
        if isinstance(box, (list, tuple)):
            return type(box)(conversion(_single_box_tensor(box, from_mode))[0].tolist())
        if isinstance(box, np.ndarray):
            return conversion(torch.from_numpy(box)).numpy()
        return conversion(box)


def _single_box_tensor(box: Union[List[float], Tuple[float, ...]], mode: BoxMode) -> torch.Tensor:
    """A (1, k) float64 tensor of one box given as a list or tuple of k numbers."""
    expected = 5 if mode == BoxMode.XYWHA_ABS else 4
    if len(box) != expected:
        raise ValueError(f"a {mode.name} box needs {expected} numbers, got {len(box)}: {box!r}")
    return torch.tensor(box, dtype=torch.float64)[None]


def _xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    corners = boxes.clone()
    corners[..., 2:4] += boxes[..., 0:2]
    return corners


def _xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    sizes = boxes.clone()
    sizes[..., 2:4] -= boxes[..., 0:2]
    return sizes


def _xywha_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 5) rotated boxes -> (N, 4) XYXY boxes enclosing them, computed in float64."""
    cx, cy, w, h, angle = boxes.to(torch.float64).unbind(-1)
    radians = angle * (math.pi / 180.0)
    cos, sin = radians.cos().abs(), radians.sin().abs()
    half_w = (w * cos + h * sin) / 2.0  # half the width of the enclosing box
    half_h = (h * cos + w * sin) / 2.0
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1).to(boxes.dtype)


def _xywh_to_xywha(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYWH boxes -> (N, 5) rotated boxes with angle 0, computed in float64."""
    x0, y0, w, h = boxes.to(torch.float64).unbind(-1)
    rotated = [x0 + w / 2.0, y0 + h / 2.0, w, h, torch.zeros_like(w)]
    return torch.stack(rotated, dim=-1).to(boxes.dtype)


_CONVERSIONS = {
    (BoxMode.XYWH_ABS, BoxMode.XYXY_ABS): _xywh_to_xyxy,
    (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS): _xyxy_to_xywh,
    (BoxMode.XYWHA_ABS, BoxMode.XYXY_ABS): _xywha_to_xyxy,
    (BoxMode.XYWH_ABS, BoxMode.XYWHA_ABS): _xywh_to_xywha,
}


class Boxes:
    """N boxes as an Nx4 float tensor ``(x0, y0, x1, y1)`` in absolute pixels (``.tensor``)."""

    def __init__(self, tensor: torch.Tensor | np.ndarray | Sequence):
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(np.asarray(tensor), dtype=torch.float32)
        if tensor.numel() == 0:
            tensor = tensor.reshape(0, 4).to(dtype=torch.float32)
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes needs an Nx4 tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    def clone(self) -> Boxes:
        return Boxes(self.tensor.clone())

    def to(self, device: torch.device | str) -> Boxes:
        return Boxes(self.tensor.to(device))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """Area of each box, shape (N,)."""
        b = self.tensor
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def clip(self, box_size: Tuple[int, int]) -> None:
        """Clip in place to an image of ``box_size = (height, width)``: x to [0, width], y to [0, height].

        NaN coordinates stay NaN.
        """
        height, width = box_size
        upper = self.tensor.new_tensor([width, height, width, height])
        self.tensor = self.tensor.clamp(min=0).minimum(upper)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """Boolean (N,): True where both sides are longer than ``threshold``."""
        b = self.tensor
        return ((b[:, 2] - b[:, 0]) > threshold) & ((b[:, 3] - b[:, 1]) > threshold)

    def get_centers(self) -> torch.Tensor:
        """Box centres, shape (N, 2) as (x, y)."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale coordinates in place."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    def inside_box(self, box_size: Tuple[int, int], boundary_threshold: int = 0) -> torch.Tensor:
        """Boolean (N,): boxes within an image of ``(height, width)`` grown by the threshold."""
        h, w = box_size
        t = boundary_threshold
        b = self.tensor
        return (b[:, 0] >= -t) & (b[:, 1] >= -t) & (b[:, 2] < w + t) & (b[:, 3] < h + t)

    def __getitem__(self, item) -> Boxes:
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        return Boxes(self.tensor[item])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    @classmethod
    def cat(cls, boxes_list: List[Boxes]) -> Boxes:
        if not boxes_list:
            return cls(torch.empty(0, 4))
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))


def _overlap_lengths(spans1: torch.Tensor, spans2: torch.Tensor) -> torch.Tensor:
    """Intervals as rows ``[start, end]``, (N, 2) and (M, 2) -> (N, M) length they share; 0 if disjoint."""
    start = torch.max(spans1[:, None, 0], spans2[:, 0])
    end = torch.min(spans1[:, None, 1], spans2[:, 1])
    return (end - start).clamp(min=0)


def pairwise_intersection(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Overlap area of box i of ``boxes1`` with box j of ``boxes2`` (XYXY, absolute), shape (N, M)."""
    a, b = boxes1.tensor, boxes2.tensor
    # Columns 0 and 2 are a box's x extent, columns 1 and 3 its y extent.
    return _overlap_lengths(a[:, 0::2], b[:, 0::2]) * _overlap_lengths(a[:, 1::2], b[:, 1::2])


def _ratio_if_overlapping(inter: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``inter / denominator`` where ``inter > 0``, exactly 0 elsewhere (degenerate boxes give 0, not NaN)."""
    return torch.where(inter > 0, inter / denominator, 0.0)


def pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Intersection over union of every pair, shape (N, M); 0 for pairs that do not overlap."""
    inter = pairwise_intersection(boxes1, boxes2)
    return _ratio_if_overlapping(inter, boxes1.area()[:, None] + boxes2.area() - inter)


def pairwise_ioa(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Intersection over the area of box j of ``boxes2``, shape (N, M); 0 for pairs that do not overlap."""
    return _ratio_if_overlapping(pairwise_intersection(boxes1, boxes2), boxes2.area())
