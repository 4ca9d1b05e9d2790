"""``VideoVisualizer``: predictions drawn on consecutive frames, each object keeping its colour.

An object of the current frame takes the colour of the object of a recent frame it overlaps
most (mask IoU when masks are present, box IoU otherwise), greedily from the best overlap down,
when that overlap reaches ``iou_threshold``. Objects unseen for ``memory`` frames are forgotten;
new objects take palette entries no remembered object uses, as long as one is free
(the palette has 64; past that, colours repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
import torch
from torchvision.ops import box_iou

from ..structures import CroppedBitMasks, Instances, MaskCrop, mask_iou
from .colors import PALETTE_SIZE, ColorMode, palette_colors
from .masks import as_mask_crops
from .visualizer import VisImage, Visualizer


@dataclass
class _Track:
    box: torch.Tensor  # (4,) XYXY
    crop: Optional[MaskCrop]
    color_index: int
    last_seen: int


class VideoVisualizer:
    """Draws frame after frame with ``Visualizer`` (``**visualizer_options`` are its keyword
    options, ``mask_only`` and ``alpha`` included) and colours matched across frames."""

    def __init__(
        self,
        metadata: Optional[Any] = None,
        instance_mode: ColorMode = ColorMode.IMAGE,
        *,
        iou_threshold: float = 0.5,
        memory: int = 8,
        **visualizer_options: Any,
    ):
        self.metadata = metadata
        self.instance_mode = instance_mode
        self.iou_threshold = iou_threshold
        self.memory = memory
        self.visualizer_options = visualizer_options
        self._tracks: List[_Track] = []
        self._frame = 0
        self._next_color = 0

    def _overlaps(self, boxes: torch.Tensor, crops: Optional[List[MaskCrop]]) -> np.ndarray:
        """(current, remembered) IoU matrix."""
        if not self._tracks or len(boxes) == 0:
            return np.zeros((len(boxes), len(self._tracks)))
        iou = box_iou(boxes, torch.stack([t.box for t in self._tracks])).numpy()
        if crops is None or any(t.crop is None for t in self._tracks):
            return iou
        masks = np.zeros_like(iou)
        for i, j in zip(*np.nonzero(iou > 0)):
            masks[i, j] = mask_iou(crops[i], self._tracks[j].crop)
        return masks

    def _new_color(self, used: set) -> int:
        for _ in range(PALETTE_SIZE):
            index, self._next_color = self._next_color, (self._next_color + 1) % PALETTE_SIZE
            if index not in used:
                return index
        return self._next_color

    def assign_colors(self, predictions: Instances) -> List[int]:
        """Palette index of each instance of this frame, and remember this frame's objects."""
        boxes = predictions.pred_boxes.tensor.detach().cpu().float() if len(predictions) else torch.zeros(0, 4)
        crops = as_mask_crops(predictions.pred_masks, predictions.image_size) if predictions.has("pred_masks") else None
        iou = self._overlaps(boxes, crops)
        assigned: List[Optional[int]] = [None] * len(boxes)
        taken = set()
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] < self.iou_threshold:
                break
            if assigned[i] is None and j not in taken:
                assigned[i] = j
                taken.add(j)
        used = {t.color_index for t in self._tracks}
        colors = []
        matched = set()
        for j in assigned:
            if j is None:
                index = self._new_color(used)
                used.add(index)
            else:
                index = self._tracks[j].color_index
                matched.add(j)
            colors.append(index)
        kept = [t for j, t in enumerate(self._tracks) if j not in matched and self._frame - t.last_seen < self.memory]
        current = [
            _Track(boxes[i], crops[i] if crops is not None else None, colors[i], self._frame) for i in range(len(boxes))
        ]
        self._tracks = kept + current
        self._frame += 1
        return colors

    def draw_instance_predictions(self, frame_rgb: np.ndarray, predictions: Instances) -> VisImage:
        """Draw ``predictions`` on ``frame_rgb`` (as ``Visualizer``), colours following objects."""
        predictions = predictions.to("cpu")  # a copy: fields can be replaced
        if predictions.has("pred_masks") and not isinstance(predictions.pred_masks, CroppedBitMasks):
            # Cropped once here, for both the colour matching and the drawing.
            crops = as_mask_crops(predictions.pred_masks, predictions.image_size)
            predictions.pred_masks = CroppedBitMasks(crops, predictions.image_size)
        visualizer = Visualizer(frame_rgb, self.metadata, instance_mode=self.instance_mode, **self.visualizer_options)
        colors = None
        if self.instance_mode != ColorMode.SEGMENTATION and predictions.has("pred_boxes"):
            colors = palette_colors(self.assign_colors(predictions))
        return visualizer.draw_instance_predictions(predictions, colors=colors)
