"""Pictures for TensorBoard during training: boxes beside boxes, mask-head outputs beside their
targets, predictions beside ground truth. Each returns an (H, W, 3) uint8 RGB array; ``as_chw``
turns it into the (3, H, W) layout that ``EventStorage.put_image`` takes."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from ..structures import Instances
from .visualizer import Visualizer

# Width in pixels of the grey band between two pictures put side by side.
GAP = 4
GAP_GREY = 128
# Lines between the cells of a mask grid, and between a predicted mask and its target.
SEPARATOR_RGB = (40, 90, 200)


def as_chw(picture: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) uint8 RGB picture as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(picture.transpose(2, 0, 1)))


def side_by_side(*pictures: np.ndarray) -> np.ndarray:
    """(H, W_i, 3) pictures left to right, with a grey band between; shorter ones are padded
    with grey at the bottom."""
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + GAP * (len(pictures) - 1)
    out = np.full((height, width, 3), GAP_GREY, np.uint8)
    x = 0
    for picture in pictures:
        out[: picture.shape[0], x : x + picture.shape[1]] = picture
        x += picture.shape[1] + GAP
    return out


def _fit_scale(image_size: Sequence[int], max_size: Optional[int]) -> float:
    """The factor that brings the longer side of ``image_size`` down to ``max_size`` (never up)."""
    longer = max(image_size[:2])
    return 1.0 if not max_size or longer <= max_size else max_size / longer


def boxes_beside_boxes(image_rgb: np.ndarray, left_boxes: Any, right_boxes: Any) -> np.ndarray:
    """The image twice, side by side: ``left_boxes`` drawn on the left copy, ``right_boxes`` on
    the right (each (N, 4) XYXY in the image's pixels, as ``Boxes``, tensor or array)."""
    left = Visualizer(image_rgb).overlay_instances(boxes=left_boxes).get_image()
    right = Visualizer(image_rgb).overlay_instances(boxes=right_boxes).get_image()
    return side_by_side(left, right)


def mask_pairs_grid(predicted: torch.Tensor, target: torch.Tensor, columns: int = 4, zoom: int = 2) -> np.ndarray:
    """RoI masks in a grid: each cell is a predicted mask (R, M, M probabilities in [0, 1]) beside
    its target (R, M, M, 0 or 1), white on black, enlarged ``zoom`` times; ``columns`` cells per
    row, in the order given, separated by blue lines."""
    count = int(predicted.shape[0])
    if count == 0:
        return np.full((1, 1, 3), GAP_GREY, np.uint8)
    pairs = torch.stack([predicted.float(), target.float()], dim=1).clamp(0, 1)  # (R, 2, M, M)
    pairs = (pairs * 255).round().to(torch.uint8).cpu().numpy()
    if zoom > 1:
        pairs = pairs.repeat(zoom, axis=2).repeat(zoom, axis=3)
    side = pairs.shape[2]
    cell_h, cell_w = side, 2 * side + 1
    rows = (count + columns - 1) // columns
    width = min(count, columns) * (cell_w + GAP) - GAP
    grid = np.empty((rows * (cell_h + GAP) - GAP, width, 3), np.uint8)
    grid[:] = SEPARATOR_RGB
    for i, (mask, goal) in enumerate(pairs):
        y, x = (i // columns) * (cell_h + GAP), (i % columns) * (cell_w + GAP)
        grid[y : y + side, x : x + side] = mask[:, :, None]
        grid[y : y + side, x + side + 1 : x + cell_w] = goal[:, :, None]
    if count % columns and rows > 1:  # the empty end of the last row
        grid[(rows - 1) * (cell_h + GAP) :, (count % columns) * (cell_w + GAP) - GAP :] = GAP_GREY
    return grid


def predictions_beside_ground_truth(
    image_rgb: np.ndarray,
    predictions: Instances,
    dataset_dict: Mapping[str, Any],
    metadata: Optional[Any] = None,
    score_threshold: float = 0.5,
    max_size: Optional[int] = 800,
) -> np.ndarray:
    """``predictions`` (a model's output ``Instances`` at the image's size) with a score of at
    least ``score_threshold`` drawn on the left, the dataset dict's annotations on the right,
    labelled with ``metadata``'s ``thing_classes``; the longer side at most ``max_size``
    pixels (None: the image's size)."""
    scale = _fit_scale(image_rgb.shape, max_size)
    kept = predictions[predictions.scores >= score_threshold] if predictions.has("scores") else predictions
    left = Visualizer(image_rgb, metadata, scale=scale).draw_instance_predictions(kept).get_image()
    right = Visualizer(image_rgb, metadata, scale=scale).draw_dataset_dict(dataset_dict).get_image()
    return side_by_side(left, right)
