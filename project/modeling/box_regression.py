"""Box encodings for regression: ``Box2BoxTransform`` (R-CNN's (dx, dy, dw, dh)) and
``Box2BoxTransformLinear`` (FCOS's distances from a centre to the four sides)."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.nn import giou_loss, smooth_l1_loss

from ..utils.unsupported import unsupported_component

# Deltas beyond this are clamped before exp(), so a box can grow at most 1000/16 times.
SCALE_CLAMP = math.log(1000.0 / 16)


def _centres_and_sizes(boxes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre x, centre y, width and height, each (N,), of XYXY ``boxes`` (N, 4)."""
    left, top, right, bottom = (boxes[:, col] for col in range(4))
    width = right - left
    height = bottom - top
    return left + 0.5 * width, top + 0.5 * height, width, height


def _encode_axis(
    src_centre: torch.Tensor,
    src_size: torch.Tensor,
    tgt_centre: torch.Tensor,
    tgt_size: torch.Tensor,
    shift_weight: float,
    scale_weight: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weighted centre shift (in units of the source size) and weighted log size ratio along one axis."""
    shift = shift_weight * (tgt_centre - src_centre) / src_size
    log_scale = scale_weight * torch.log(tgt_size / src_size)
    return shift, log_scale


def _decode_axis(
    shift: torch.Tensor, log_scale: torch.Tensor, centre: torch.Tensor, size: torch.Tensor, max_log_scale: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Start and end along one axis of a box moved by ``shift * size`` and scaled by ``exp(log_scale)``,
    with ``log_scale`` capped at ``max_log_scale``. Unweighted deltas; the inputs broadcast together."""
    new_centre = shift * size + centre
    half_size = 0.5 * (torch.exp(log_scale.clamp(max=max_log_scale)) * size)
    return new_centre - half_size, new_centre + half_size


class Box2BoxTransform:
    """Encodes a target box relative to a source box as weighted (dx, dy, dw, dh), and back.

    With source centre ``(x, y)`` and size ``(w, h)`` and target centre ``(x', y')`` and size ``(w', h')``:
    ``dx = wx * (x' - x) / w``, ``dy = wy * (y' - y) / h``, ``dw = ww * log(w' / w)``,
    ``dh = wh * log(h' / h)``, for ``weights = (wx, wy, ww, wh)``. Boxes are XYXY in absolute pixels.
    Decoding caps ``dw / ww`` and ``dh / wh`` at ``scale_clamp``.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """Deltas (N, 4) that turn ``src_boxes`` (N, 4) into ``target_boxes`` (N, 4), in their dtype."""
        src_x, src_y, src_w, src_h = _centres_and_sizes(src_boxes)
        tgt_x, tgt_y, tgt_w, tgt_h = _centres_and_sizes(target_boxes)
        wx, wy, ww, wh = self.weights
        dx, dw = _encode_axis(src_x, src_w, tgt_x, tgt_w, wx, ww)
        dy, dh = _encode_axis(src_y, src_h, tgt_y, tgt_h, wy, wh)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Decode deltas (N, 4k), k groups of (dx, dy, dw, dh) such as one per class, against
        ``boxes`` (N, 4): returns (N, 4k) XYXY boxes, group by group, in float32 whatever the
        input dtypes."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        # (N, 1) box geometry against (N, k) deltas: one decoded box per group.
        ctr_x, ctr_y, width, height = (t[:, None] for t in _centres_and_sizes(boxes))
        dx, dy, dw, dh = deltas.unflatten(1, (-1, 4)).unbind(dim=2)
        wx, wy, ww, wh = self.weights
        x0, x1 = _decode_axis(dx / wx, dw / ww, ctr_x, width, self.scale_clamp)
        y0, y1 = _decode_axis(dy / wy, dh / wh, ctr_y, height, self.scale_clamp)
        return torch.stack((x0, y0, x1, y1), dim=2).reshape(deltas.shape)


# Signs that turn (x0 - cx, y0 - cy, x1 - cx, y1 - cy) into the four non-negative side distances.
_SIDE_SIGNS = (-1.0, -1.0, 1.0, 1.0)


def _centres_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) rows ``(cx, cy, cx, cy)``: each XYXY box's centre, repeated to line up with its corners."""
    corners = boxes.unflatten(1, (2, 2))
    return (0.5 * (corners[:, 0] + corners[:, 1])).repeat(1, 2)


def _sizes_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) rows ``(w, h, w, h)`` of XYXY ``boxes``."""
    return (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)


class Box2BoxTransformLinear:
    """Encodes a target box by the distances from a source box's centre to the target's sides.

    For source centre ``(cx, cy)`` and target ``(x0, y0, x1, y1)`` the deltas are
    ``(cx - x0, cy - y0, x1 - cx, y1 - cy)``, divided by the source's ``(w, h, w, h)`` when
    ``normalize_by_size``. Boxes are XYXY; a target that contains the source centre has
    non-negative deltas, and decoding clips negative deltas to 0 so that it always gives a valid box.
    """

    def __init__(self, normalize_by_size: bool = True):
        self.normalize_by_size = normalize_by_size

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """Deltas (N, 4) that turn ``src_boxes`` (N, 4) into ``target_boxes`` (N, 4)."""
        deltas = (target_boxes - _centres_xyxy(src_boxes)) * target_boxes.new_tensor(_SIDE_SIGNS)
        if self.normalize_by_size:
            deltas = deltas / _sizes_xyxy(src_boxes)
        return deltas

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Decode deltas (N, 4k), k groups of side distances, against ``boxes`` (N, 4): returns
        (N, 4k) XYXY boxes in the dtype of ``deltas``."""
        boxes = boxes.to(deltas.dtype)
        distances = F.relu(deltas).unflatten(1, (-1, 4))
        if self.normalize_by_size:
            distances = distances * _sizes_xyxy(boxes)[:, None]
        signed = distances * deltas.new_tensor(_SIDE_SIGNS)
        return (_centres_xyxy(boxes)[:, None] + signed).reshape(deltas.shape)


Box2BoxTransformRotated = unsupported_component(
    "Box2BoxTransformRotated", "rotated boxes are outside this project's scope; it regresses axis-aligned XYXY boxes"
)


def box_regression_loss(
    anchors: List[torch.Tensor] | torch.Tensor,
    box2box_transform: Box2BoxTransform,
    pred_deltas: torch.Tensor,
    gt_boxes: torch.Tensor,
    fg_mask: Optional[torch.Tensor] = None,
    loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """Summed box-regression loss over foreground rows (callers normalise).

    ``anchors`` (R, 4) (or a list to concatenate), ``pred_deltas`` and ``gt_boxes`` (R, 4) or
    batched (B, R, 4) alike; ``fg_mask`` selects the rows that count (all rows if ``None``). ``loss_type`` is
    ``"smooth_l1"`` (on deltas) or ``"giou"`` (on decoded boxes).
    """
    if isinstance(anchors, list):
        anchors = torch.cat(anchors)
    if pred_deltas.dim() == 3:
        anchors = anchors.expand(pred_deltas.shape[0], -1, -1)
    rows = ... if fg_mask is None else fg_mask
    if loss_type == "smooth_l1":
        target = box2box_transform.get_deltas(anchors.reshape(-1, 4), gt_boxes.reshape(-1, 4))
        target = target.reshape(gt_boxes.shape)
        return smooth_l1_loss(pred_deltas[rows], target[rows], beta=smooth_l1_beta, reduction="sum")
    if loss_type == "giou":
        pred_boxes = box2box_transform.apply_deltas(pred_deltas.reshape(-1, 4), anchors.reshape(-1, 4))
        pred_boxes = pred_boxes.reshape(pred_deltas.shape)
        return giou_loss(pred_boxes[rows], gt_boxes[rows], reduction="sum")
    raise ValueError(f"unknown box regression loss type {loss_type!r}; expected 'smooth_l1' or 'giou'")
