"""Instance masks: the ``InstanceMasks`` interface, ``BitMasks`` (dense) and ``PolygonMasks``
(COCO polygons) implementing it, and pasting of predicted fixed-size masks into full images.
``CroppedBitMasks`` (``cropped_masks``) implements it for masks kept as crops."""

from __future__ import annotations

from typing import Any, Iterator, List, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
import pycocotools.mask as mask_util
import torch
from torch.nn import functional as F
from torchvision.ops import roi_align

from .boxes import Boxes

Polygons = List[np.ndarray]  # one instance: a list of flat [x0, y0, x1, y1, ...] float64 arrays


@runtime_checkable
class InstanceMasks(Protocol):
    """What the model and the data pipeline ask of the ground-truth masks of one image
    (``Instances.gt_masks``): N masks that can be selected, moved, measured, and sampled inside
    boxes as the mask head's targets."""

    def __len__(self) -> int: ...

    def __getitem__(self, item: Any) -> InstanceMasks: ...

    def to(self, *args: Any, **kwargs: Any) -> InstanceMasks: ...

    @property
    def device(self) -> torch.device: ...

    def nonempty(self) -> torch.Tensor:
        """(N,) bool: which masks have at least one pixel."""
        ...

    def area(self) -> torch.Tensor:
        """(N,) pixel counts (or polygon areas)."""
        ...

    def get_bounding_boxes(self) -> Boxes:
        """The tight XYXY box of each mask."""
        ...

    def crop_and_resize(self, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
        """(N, mask_size, mask_size) bool: each mask sampled inside its (N, 4) XYXY box."""
        ...


def polygons_to_bitmask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise one instance's polygons into a (height, width) bool array (COCO semantics)."""
    if len(polygons) == 0:
        return np.zeros((height, width), dtype=bool)
    rles = mask_util.frPyObjects([np.asarray(p, dtype=np.float64).tolist() for p in polygons], height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def _polygon_bbox(polygons: Polygons) -> Tuple[float, float, float, float]:
    pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polygons], axis=0)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


class BitMasks:
    """N dense masks as an (N, H, W) bool tensor (``.tensor``)."""

    def __init__(self, tensor: Union[torch.Tensor, np.ndarray]):
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(tensor)
        tensor = tensor.to(torch.bool)
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks needs an (N, H, W) tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor
        self.image_size = tuple(tensor.shape[1:])

    def to(self, *args, **kwargs) -> BitMasks:
        return BitMasks(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def __getitem__(self, item) -> BitMasks:
        if isinstance(item, int):
            return BitMasks(self.tensor[item].unsqueeze(0))
        return BitMasks(self.tensor[item])

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    def nonempty(self) -> torch.Tensor:
        """Boolean (N,): True where the mask has at least one pixel."""
        return self.tensor.flatten(1).any(dim=1)

    def area(self) -> torch.Tensor:
        return self.tensor.flatten(1).sum(dim=1)

    def get_bounding_boxes(self) -> Boxes:
        """Tight XYXY boxes around each mask (pixel edges, so a 1-pixel mask is 1x1)."""
        boxes = torch.zeros(len(self), 4, dtype=torch.float32, device=self.device)
        x_any = self.tensor.any(dim=1)
        y_any = self.tensor.any(dim=2)
        for i in range(len(self)):
            xs = torch.nonzero(x_any[i])
            ys = torch.nonzero(y_any[i])
            if len(xs) and len(ys):
                boxes[i] = torch.tensor([xs[0, 0], ys[0, 0], xs[-1, 0] + 1, ys[-1, 0] + 1], dtype=torch.float32)
        return Boxes(boxes)

    def crop_and_resize(self, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
        """Crop each mask to its box (Nx4, XYXY) and resize to mask_size x mask_size.

        Returns an (N, mask_size, mask_size) bool tensor, sampled with RoIAlign (aligned).
        """
        if len(boxes) != len(self):
            raise ValueError(f"{len(boxes)} boxes for {len(self)} masks")
        device = self.tensor.device
        index = torch.arange(len(boxes), device=device, dtype=boxes.dtype)[:, None]
        rois = torch.cat([index, boxes.to(device)], dim=1)
        out = roi_align(self.tensor.to(torch.float32)[:, None], rois, (mask_size, mask_size), 1.0, 0, True)
        return out.squeeze(1) >= 0.5

    @staticmethod
    def from_polygon_masks(
        polygon_masks: Union[PolygonMasks, Sequence[Sequence[np.ndarray]]], height: int, width: int
    ) -> BitMasks:
        """Rasterise ``PolygonMasks``, or a list with each instance's list of flat polygons, into
        (N, height, width) masks; no instances give a (0, height, width) ``BitMasks``."""
        polygons = polygon_masks.polygons if isinstance(polygon_masks, PolygonMasks) else polygon_masks
        masks = [polygons_to_bitmask(p, height, width) for p in polygons]
        if not masks:
            return BitMasks(torch.zeros(0, height, width, dtype=torch.bool))
        return BitMasks(torch.from_numpy(np.stack(masks)))

    @classmethod
    def cat(cls, masks_list: List[BitMasks]) -> BitMasks:
        return cls(torch.cat([m.tensor for m in masks_list], dim=0))


class PolygonMasks:
    """N instances, each a list of polygons ``[x0, y0, x1, y1, ...]`` in absolute pixels."""

    def __init__(self, polygons: Sequence[Sequence[Union[Sequence[float], np.ndarray]]]):
        self.polygons: List[Polygons] = []
        for i, instance in enumerate(polygons):
            if not isinstance(instance, (list, tuple)):
                raise ValueError(f"instance {i}: expected a list of polygons, got {type(instance).__name__}")
            converted = []
            for p in instance:
                arr = np.asarray(p, dtype=np.float64).reshape(-1)
                if len(arr) < 6 or len(arr) % 2:
                    raise ValueError(f"instance {i}: a polygon needs at least 3 (x, y) points, got {len(arr)} numbers")
                converted.append(arr)
            self.polygons.append(converted)

    def to(self, *args, **kwargs) -> PolygonMasks:
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __getitem__(self, item) -> PolygonMasks:
        if isinstance(item, int):
            return PolygonMasks([self.polygons[item]])
        if isinstance(item, slice):
            return PolygonMasks(self.polygons[item])
        if isinstance(item, torch.Tensor):
            if item.dtype == torch.bool:
                item = item.nonzero().squeeze(1)
            item = item.tolist()
        return PolygonMasks([self.polygons[i] for i in item])

    def __len__(self) -> int:
        return len(self.polygons)

    def __iter__(self) -> Iterator[Polygons]:
        return iter(self.polygons)

    def nonempty(self) -> torch.Tensor:
        return torch.tensor([len(p) > 0 for p in self.polygons], dtype=torch.bool)

    def area(self) -> torch.Tensor:
        """Polygon area by the shoelace formula, summed over each instance's polygons."""
        areas = []
        for instance in self.polygons:
            total = 0.0
            for p in instance:
                x, y = p[0::2], p[1::2]
                total += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
            areas.append(total)
        return torch.tensor(areas, dtype=torch.float32)

    def get_bounding_boxes(self) -> Boxes:
        boxes = [_polygon_bbox(p) if p else (0.0, 0.0, 0.0, 0.0) for p in self.polygons]
        return Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))

    def crop_and_resize(self, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
        """Rasterise each instance inside its box (Nx4, XYXY) at mask_size x mask_size.

        Returns an (N, mask_size, mask_size) bool tensor on ``boxes``' device.
        """
        if len(boxes) != len(self):
            raise ValueError(f"{len(boxes)} boxes for {len(self)} masks")
        out = np.zeros((len(boxes), mask_size, mask_size), dtype=bool)
        for i, (instance, box) in enumerate(zip(self.polygons, boxes.detach().cpu().numpy())):
            w = max(float(box[2] - box[0]), 0.1)
            h = max(float(box[3] - box[1]), 0.1)
            shifted = []
            for p in instance:
                q = p.copy()
                q[0::2] = (q[0::2] - box[0]) * (mask_size / w)
                q[1::2] = (q[1::2] - box[1]) * (mask_size / h)
                shifted.append(q)
            out[i] = polygons_to_bitmask(shifted, mask_size, mask_size)
        return torch.from_numpy(out).to(boxes.device)

    @classmethod
    def cat(cls, masks_list: List[PolygonMasks]) -> PolygonMasks:
        return cls([p for m in masks_list for p in m.polygons])


PastedMask = Tuple[int, int, int, torch.Tensor]  # (instance index, x0, y0, (h, w) bool window)


def _paste_windows(boxes: torch.Tensor, image_shape: Tuple[int, int]) -> List[Tuple[int, int, int, int]]:
    """Per box, the integer pixel range ``(x0, y0, x1, y1)`` (end exclusive) that pasting can
    touch: the box rounded out to whole pixels and grown by one pixel on each side, clipped to
    the image. Empty when the box lies outside the image."""
    height, width = image_shape
    lo = (boxes[:, :2].floor() - 1).clamp(min=0).to(torch.int64).tolist()
    hi_x = (boxes[:, 2].ceil() + 1).clamp(max=width).to(torch.int64).tolist()
    hi_y = (boxes[:, 3].ceil() + 1).clamp(max=height).to(torch.int64).tolist()
    return [(x0, y0, x1, y1) for (x0, y0), x1, y1 in zip(lo, hi_x, hi_y)]


def _paste_one(
    mask: torch.Tensor, box: torch.Tensor, window: Tuple[int, int, int, int], threshold: float
) -> torch.Tensor:
    """The (y1 - y0, x1 - x0) window of the image covered by one (M, M) mask pasted into its
    float32 XYXY ``box``: bilinear samples at the window's pixel centres, the mask's cells
    spanning the box exactly, compared with ``threshold`` (see :func:`_pasted_values`)."""
    x0, y0, x1, y1 = window
    bx0, by0, bx1, by1 = box
    xs = (torch.arange(x0, x1, device=mask.device, dtype=torch.float32) + 0.5 - bx0) / (bx1 - bx0) * 2 - 1
    ys = (torch.arange(y0, y1, device=mask.device, dtype=torch.float32) + 0.5 - by0) / (by1 - by0) * 2 - 1
    grid = torch.stack([xs[None, :].expand(len(ys), len(xs)), ys[:, None].expand(len(ys), len(xs))], dim=-1)
    pasted = F.grid_sample(mask[None, None].to(torch.float32), grid[None], align_corners=False)
    return _pasted_values(pasted[0, 0], threshold)


def _pasted_values(probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
    """``probabilities >= threshold`` (bool); a negative ``threshold`` keeps the probabilities
    instead, as uint8 in 0..255 (for looking at soft masks)."""
    if threshold >= 0:
        return probabilities >= threshold
    return (probabilities * 255).to(torch.uint8)


def paste_mask_windows(
    masks: torch.Tensor, boxes: Union[Boxes, torch.Tensor], image_shape: Tuple[int, int], threshold: float = 0.5
) -> Iterator[PastedMask]:
    """Paste fixed-size mask probabilities into their boxes, one instance at a time, without
    allocating anything of the image's size.

    ``masks`` (N, M, M) floats cover ``boxes`` (``Boxes`` or an (N, 4) tensor, XYXY, absolute pixels) of an image of
    ``image_shape = (height, width)``. Yields ``(i, x0, y0, window)`` for each instance whose box
    touches the image, ``window`` an (h, w) bool tensor on ``masks``' device holding image rows
    ``y0 .. y0+h-1`` and columns ``x0 .. x0+w-1`` (uint8 probabilities in 0..255 for a negative
    ``threshold``); every pixel outside it is background.
    """
    boxes = (boxes.tensor if isinstance(boxes, Boxes) else boxes).to(torch.float32)
    for i, window in enumerate(_paste_windows(boxes, image_shape)):
        x0, y0, x1, y1 = window
        if x1 > x0 and y1 > y0:
            yield i, x0, y0, _paste_one(masks[i], boxes[i], window, threshold)


def paste_masks_in_image(
    masks: torch.Tensor, boxes: Union[Boxes, torch.Tensor], image_shape: Tuple[int, int], threshold: float = 0.5
) -> torch.Tensor:
    """Paste fixed-size mask probabilities into full images.

    ``masks`` (N, M, M) floats cover the boxes ``boxes`` (``Boxes`` or an (N, 4) tensor, XYXY,
    absolute pixels) of an image
    of ``image_shape = (height, width)``. Each mask is resampled bilinearly onto the pixel centres
    inside its box (the mask's cells span the box exactly) and thresholded. Only the pixels
    around each box are computed (``paste_mask_windows``). Returns an (N, height, width) bool tensor,
    or with a negative ``threshold`` the pasted probabilities as uint8 in 0..255.
    """
    height, width = image_shape
    dtype = torch.bool if threshold >= 0 else torch.uint8
    out = torch.zeros(len(masks), height, width, dtype=dtype, device=masks.device)
    for i, x0, y0, window in paste_mask_windows(masks, boxes, image_shape, threshold):
        out[i, y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]] = window
    return out
