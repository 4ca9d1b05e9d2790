"""Instance masks kept as small crops around each object instead of full-image arrays.

A dense image (hundreds of nuclei) mapped to 1024 px would need gigabytes as an (N, H, W)
array; its crops need a few megabytes. ``CroppedBitMasks`` stores crops and gives the same
answers as ``BitMasks`` (``crop_and_resize``, boxes, areas); ``.tensor`` builds the dense
array only when something asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import roi_align

from .boxes import Boxes
from .masks import paste_mask_windows, polygons_to_bitmask

# pycocotools rasterises a polygon on a grid 5 times finer than the pixels, snapping each
# coordinate v to int(5 * v + 0.5) (C truncation).
_POLYGON_SUPERSAMPLING = 5


def _shift_polygon(polygon: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Flat ``[x, y, ...]`` coordinates moved by ``(-x0, -y0)`` such that pycocotools snaps each
    moved point to exactly its full-image grid point moved by whole pixels. Subtracting first
    would not: 307.9 - 304 is 3.8999999999999773 in float64, which snaps to 19, not 20."""
    shifted = polygon.copy()
    for axis, offset in ((0, x0), (1, y0)):
        if offset:
            snapped = np.trunc(polygon[axis::2] * _POLYGON_SUPERSAMPLING + 0.5)
            shifted[axis::2] = (snapped - offset * _POLYGON_SUPERSAMPLING) / _POLYGON_SUPERSAMPLING
    return shifted


@dataclass(frozen=True)
class MaskCrop:
    """One instance mask of an image of ``image_size = (H, W)``.

    ``mask`` is a bool (h, w) array covering rows ``y0 .. y0+h-1`` and columns ``x0 .. x0+w-1``
    of the image, entirely inside it; every pixel outside the crop is background. The crop need
    not be tight.
    """

    mask: np.ndarray
    x0: int
    y0: int
    image_size: Tuple[int, int]

    @staticmethod
    def empty(image_size: Tuple[int, int]) -> MaskCrop:
        return MaskCrop(np.zeros((0, 0), dtype=bool), 0, 0, (int(image_size[0]), int(image_size[1])))

    @staticmethod
    def from_array(mask: np.ndarray) -> MaskCrop:
        """The tight crop of a full (H, W) mask (nonzero = inside)."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a full-image mask must be 2-D (H, W), got shape {mask.shape}")
        rows = np.flatnonzero(mask.any(axis=1))
        if len(rows) == 0:
            return MaskCrop.empty(mask.shape)
        cols = np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return MaskCrop(mask[y0:y1, x0:x1] != 0, int(x0), int(y0), mask.shape)

    @staticmethod
    def from_polygons(polygons: Sequence[np.ndarray], image_size: Tuple[int, int]) -> MaskCrop:
        """Rasterise one instance's polygons (flat ``[x0, y0, x1, y1, ...]``, absolute pixels)
        with COCO's rule, into a crop around their bounding box clipped to the image."""
        height, width = image_size
        if len(polygons) == 0:
            return MaskCrop.empty(image_size)
        points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
        x0 = int(np.clip(np.floor(points[:, 0].min()), 0, width))
        y0 = int(np.clip(np.floor(points[:, 1].min()), 0, height))
        x1 = int(np.clip(np.ceil(points[:, 0].max()) + 1, 0, width))
        y1 = int(np.clip(np.ceil(points[:, 1].max()) + 1, 0, height))
        if x1 <= x0 or y1 <= y0:
            return MaskCrop.empty(image_size)
        shifted = [_shift_polygon(np.array(p, dtype=np.float64).reshape(-1), x0, y0) for p in polygons]
        return MaskCrop(polygons_to_bitmask(shifted, y1 - y0, x1 - x0), x0, y0, (height, width))

    def to_array(self) -> np.ndarray:
        """The full (H, W) bool mask."""
        full = np.zeros(self.image_size, dtype=bool)
        h, w = self.mask.shape
        full[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.mask
        return full

    @property
    def window(self) -> Tuple[int, int, int, int]:
        """The crop's pixel range in the image, ``(x0, y0, x1, y1)``, end exclusive."""
        h, w = self.mask.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.mask))

    def part_in(self, window: Tuple[int, int, int, int]) -> np.ndarray:
        """The mask's pixels inside ``window`` (x0, y0, x1, y1, end exclusive), as a bool array
        of the window's part inside the crop (empty when they do not meet). A view, not a copy."""
        cx0, cy0, cx1, cy1 = self.window
        x0, y0 = max(window[0], cx0), max(window[1], cy0)
        x1, y1 = max(min(window[2], cx1), x0), max(min(window[3], cy1), y0)
        return self.mask[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]

    def moved(self, dx: int, dy: int, image_size: Tuple[int, int]) -> MaskCrop:
        """The same pixels moved by ``(dx, dy)`` into an image of ``image_size`` (the crop must
        fit inside it), e.g. from a tile into the whole image. Shares the mask array."""
        h, w = self.mask.shape
        x0, y0 = self.x0 + int(dx), self.y0 + int(dy)
        if x0 < 0 or y0 < 0 or x0 + w > image_size[1] or y0 + h > image_size[0]:
            raise ValueError(f"a {w}x{h} crop at ({x0}, {y0}) does not fit a {image_size} image")
        return MaskCrop(self.mask, x0, y0, (int(image_size[0]), int(image_size[1])))

    def bounding_box(self) -> Tuple[float, float, float, float]:
        """Tight XYXY box around the mask's pixels (pixel edges); zeros when empty."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        if len(rows) == 0:
            return (0.0, 0.0, 0.0, 0.0)
        cols = np.flatnonzero(self.mask.any(axis=0))
        return (
            float(self.x0 + cols[0]),
            float(self.y0 + rows[0]),
            float(self.x0 + cols[-1] + 1),
            float(self.y0 + rows[-1] + 1),
        )


def _common_window(a: MaskCrop, b: MaskCrop) -> Tuple[int, int, int, int]:
    ax0, ay0, ax1, ay1 = a.window
    bx0, by0, bx1, by1 = b.window
    return max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)


def intersection_area(a: MaskCrop, b: MaskCrop, window: Tuple[int, int, int, int] | None = None) -> int:
    """Pixels in both masks (of the same image), inside ``window`` (x0, y0, x1, y1, end
    exclusive) when given."""
    x0, y0, x1, y1 = _common_window(a, b)
    if window is not None:
        x0, y0, x1, y1 = max(x0, window[0]), max(y0, window[1]), min(x1, window[2]), min(y1, window[3])
    if x1 <= x0 or y1 <= y0:
        return 0
    common = (x0, y0, x1, y1)
    return int(np.count_nonzero(a.part_in(common) & b.part_in(common)))


def mask_iou(a: MaskCrop, b: MaskCrop) -> float:
    """Intersection over union of two masks of the same image, from their crops' overlap; 0
    for two empty masks."""
    area_a, area_b = a.area(), b.area()
    if area_a + area_b == 0:
        return 0.0
    inter = intersection_area(a, b)
    return inter / (area_a + area_b - inter)


def union_of_crops(crops: Sequence[MaskCrop]) -> MaskCrop:
    """One crop holding every pixel of ``crops`` (masks of the same image), sized to their
    windows' union."""
    if not crops:
        raise ValueError("union_of_crops needs at least one crop")
    windows = np.array([c.window for c in crops])
    x0, y0 = windows[:, :2].min(axis=0)
    x1, y1 = windows[:, 2:].max(axis=0)
    union = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for c in crops:
        cx0, cy0, cx1, cy1 = c.window
        union[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] |= c.mask
    return MaskCrop(union, int(x0), int(y0), crops[0].image_size)


def _padded_crop(crop: MaskCrop) -> Tuple[torch.Tensor, int, int]:
    """The crop grown by one pixel on each side, as a float (1, 1, h+2, w+2) tensor, and the
    image coordinates of the padded crop's top-left pixel.

    Sides inside the image get background (0); sides on the image border repeat the border
    pixels, which is what RoIAlign's clamping sees in the full image. So RoIAlign on the padded
    crop equals RoIAlign on the full mask for any box inside the image.
    """
    height, width = crop.image_size
    h, w = crop.mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.float32)
    padded[1:-1, 1:-1] = crop.mask
    if crop.y0 == 0:
        padded[0] = padded[1]
    if crop.y0 + h == height:
        padded[-1] = padded[-2]
    if crop.x0 == 0:
        padded[:, 0] = padded[:, 1]
    if crop.x0 + w == width:
        padded[:, -1] = padded[:, -2]
    return torch.from_numpy(padded)[None, None], crop.x0 - 1, crop.y0 - 1


class CroppedBitMasks:
    """N instance masks of one (H, W) image, each kept as a ``MaskCrop``.

    An ``InstanceMasks`` like ``BitMasks``: indexing, ``nonempty``, ``area``,
    ``get_bounding_boxes`` and ``crop_and_resize`` give the same results as on the dense
    masks. ``.tensor`` materialises the dense (N, H, W) bool tensor on each access; avoid it
    on dense images. Indexing shares the crops, so selecting the matched ground truth of many
    proposals costs no copies. The crops stay on the CPU; ``to`` returns ``self`` and
    ``crop_and_resize`` answers on the boxes' device.
    """

    def __init__(self, crops: Sequence[MaskCrop], image_size: Tuple[int, int]):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.crops: List[MaskCrop] = list(crops)
        for i, crop in enumerate(self.crops):
            if tuple(crop.image_size) != self.image_size:
                raise ValueError(f"mask {i} belongs to a {crop.image_size} image, the others to {self.image_size}")

    @property
    def tensor(self) -> torch.Tensor:
        dense = np.zeros((len(self.crops),) + self.image_size, dtype=bool)
        for i, crop in enumerate(self.crops):
            h, w = crop.mask.shape
            dense[i, crop.y0 : crop.y0 + h, crop.x0 : crop.x0 + w] = crop.mask
        return torch.from_numpy(dense)

    def to(self, *args, **kwargs) -> CroppedBitMasks:
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __getitem__(self, item) -> CroppedBitMasks:
        if isinstance(item, int):
            return CroppedBitMasks([self.crops[item]], self.image_size)
        if isinstance(item, slice):
            return CroppedBitMasks(self.crops[item], self.image_size)
        index = torch.as_tensor(item)
        if index.dtype == torch.bool:
            if len(index) != len(self):
                raise IndexError(f"boolean index of length {len(index)} for {len(self)} masks")
            index = index.nonzero().flatten()
        return CroppedBitMasks([self.crops[i] for i in index.reshape(-1).tolist()], self.image_size)

    def __len__(self) -> int:
        return len(self.crops)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for crop in self.crops:
            yield torch.from_numpy(crop.to_array())

    def __repr__(self) -> str:
        return f"CroppedBitMasks(num_instances={len(self)}, image_size={self.image_size})"

    def nonempty(self) -> torch.Tensor:
        return torch.tensor([bool(c.mask.any()) for c in self.crops], dtype=torch.bool)

    def area(self) -> torch.Tensor:
        return torch.tensor([int(c.mask.sum()) for c in self.crops], dtype=torch.int64)

    def get_bounding_boxes(self) -> Boxes:
        boxes = [c.bounding_box() for c in self.crops]
        return Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))

    def crop_and_resize(self, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
        """Sample each mask inside its box (Nx4, XYXY, inside the image) at mask_size x mask_size
        with aligned RoIAlign, thresholded at 0.5: (N, mask_size, mask_size) bool on ``boxes``'
        device, equal to ``BitMasks.crop_and_resize`` of the dense masks."""
        if len(boxes) != len(self):
            raise ValueError(f"{len(boxes)} boxes for {len(self)} masks")
        out = torch.zeros(len(self), mask_size, mask_size, dtype=torch.bool)
        boxes_cpu = boxes.detach().to("cpu", torch.float32)
        # Many boxes (proposals) usually share one ground-truth crop: sample each crop once.
        rows_of_crop: Dict[int, List[int]] = {}
        for row, crop in enumerate(self.crops):
            rows_of_crop.setdefault(id(crop), []).append(row)
        for rows in rows_of_crop.values():
            crop = self.crops[rows[0]]
            if crop.mask.size == 0:
                continue
            padded, left, top = _padded_crop(crop)
            shifted = boxes_cpu[rows] - torch.tensor([left, top, left, top], dtype=torch.float32)
            rois = torch.cat([torch.zeros(len(rows), 1, dtype=torch.float32), shifted], dim=1)
            sampled = roi_align(padded, rois, (mask_size, mask_size), 1.0, 0, True)
            out[rows] = sampled[:, 0] >= 0.5
        return out.to(boxes.device)

    @classmethod
    def cat(cls, masks_list: List[CroppedBitMasks]) -> CroppedBitMasks:
        if not masks_list:
            raise ValueError("CroppedBitMasks.cat needs at least one CroppedBitMasks")
        return cls([c for m in masks_list for c in m.crops], masks_list[0].image_size)


def _windows_as_arrays(windows: List[torch.Tensor]) -> List[np.ndarray]:
    """The bool tensors ``windows`` as numpy arrays: shared with the tensors on the CPU, brought
    over in one copy from another device."""
    if not windows or windows[0].device.type == "cpu":
        return [window.numpy() for window in windows]
    flat = torch.cat([window.reshape(-1) for window in windows]).cpu().numpy()
    ends = np.cumsum([window.numel() for window in windows])
    return [part.reshape(window.shape) for part, window in zip(np.split(flat, ends[:-1]), windows)]


def paste_masks_as_crops(
    masks: torch.Tensor, boxes: torch.Tensor, image_shape: Tuple[int, int], threshold: float = 0.5
) -> CroppedBitMasks:
    """``paste_masks_in_image`` with each instance kept as the crop around its box.

    Same arguments: ``masks`` (N, M, M) probabilities, ``boxes`` (N, 4) XYXY absolute pixels,
    ``image_shape = (height, width)``. Returns N masks whose ``.tensor`` equals
    ``paste_masks_in_image``'s result bit for bit, holding only about the boxes' area (each crop
    is its box rounded out to whole pixels, grown by one pixel and clipped to the image; a box
    outside the image gives an empty mask). The crops live on the CPU.
    """
    image_size = (int(image_shape[0]), int(image_shape[1]))
    pasted = list(paste_mask_windows(masks, boxes, image_size, threshold))
    arrays = _windows_as_arrays([window for _, _, _, window in pasted])
    crops = [MaskCrop.empty(image_size)] * len(masks)
    for (i, x0, y0, _), array in zip(pasted, arrays):
        crops[i] = MaskCrop(array, x0, y0, image_size)
    return CroppedBitMasks(crops, image_size)
