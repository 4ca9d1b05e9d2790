"""``Box2BoxTransform``: the (dx, dy, dw, dh) box-delta parameterisation of R-CNN."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from fvcore.nn import giou_loss, smooth_l1_loss

# Deltas beyond this are clamped before exp(), so a box can grow at most 1000/16 times.
SCALE_CLAMP = math.log(1000.0 / 16)


class Box2BoxTransform:
    """Encodes a target box relative to a source box as weighted (dx, dy, dw, dh), and back.

    ``weights = (wx, wy, ww, wh)`` scale the deltas. Boxes are XYXY in absolute pixels.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """Deltas (N, 4) that turn ``src_boxes`` (N, 4) into ``target_boxes`` (N, 4)."""
        src_w = src_boxes[:, 2] - src_boxes[:, 0]
        src_h = src_boxes[:, 3] - src_boxes[:, 1]
        src_x = src_boxes[:, 0] + 0.5 * src_w
        src_y = src_boxes[:, 1] + 0.5 * src_h
        tgt_w = target_boxes[:, 2] - target_boxes[:, 0]
        tgt_h = target_boxes[:, 3] - target_boxes[:, 1]
        tgt_x = target_boxes[:, 0] + 0.5 * tgt_w
        tgt_y = target_boxes[:, 1] + 0.5 * tgt_h
        wx, wy, ww, wh = self.weights
        return torch.stack(
            (
                wx * (tgt_x - src_x) / src_w,
                wy * (tgt_y - src_y) / src_h,
                ww * torch.log(tgt_w / src_w),
                wh * torch.log(tgt_h / src_h),
            ),
            dim=1,
        )

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Apply deltas (N, 4k) to boxes (N, 4); returns (N, 4k) boxes, one per class group."""
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        x0 = pred_ctr_x - 0.5 * pred_w
        y0 = pred_ctr_y - 0.5 * pred_h
        x1 = pred_ctr_x + 0.5 * pred_w
        y1 = pred_ctr_y + 0.5 * pred_h
        return torch.stack((x0, y0, x1, y1), dim=-1).reshape(deltas.shape)


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
