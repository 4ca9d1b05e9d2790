"""The RPN's anchors on one image: how its matcher labels them against the ground truth, and
which ones it finds most object-like, with the boxes its deltas refine them into.

All boxes are XYXY in input-frame pixels (the resized image the model sees). Anchors are
numbered as the RPN numbers them: level by level, then row-major by location, then by cell
anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..modeling.proposal_generator.rpn import flatten_anchor_deltas, flatten_anchor_logits
from ..structures import Boxes, pairwise_iou

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


@dataclass
class AnchorLabels:
    """The matcher's label of every anchor (R,) int8: 1 positive, 0 negative, -1 ignored
    (between the IoU thresholds, or, with ``boundary_thresh`` >= 0, reaching further than that
    outside the image), as the RPN labels anchors for training before it samples them.
    ``matched_gt`` (R,) is each anchor's best ground-truth box; ``positives_per_gt`` (G,) counts
    the positive anchors each ground-truth box got."""

    labels: torch.Tensor
    matched_gt: torch.Tensor
    positives_per_gt: torch.Tensor
    level_sizes: List[int]
    thresholds: List[float]
    label_values: List[int]
    allow_low_quality_matches: bool
    boundary_thresh: float

    def count(self, label: int) -> int:
        return int((self.labels == label).sum())

    @property
    def gt_with_positive(self) -> int:
        """How many ground-truth boxes have at least one positive anchor."""
        return int((self.positives_per_gt > 0).sum())

    def summary(self) -> Dict[str, Any]:
        per_level = []
        for level, labels in enumerate(self.labels.split(self.level_sizes)):
            per_level.append(
                {
                    "level": level,
                    "anchors": int(labels.numel()),
                    "positive": int((labels == POSITIVE).sum()),
                    "negative": int((labels == NEGATIVE).sum()),
                    "ignored": int((labels == IGNORED).sum()),
                }
            )
        return {
            "num_positive": self.count(POSITIVE),
            "num_negative": self.count(NEGATIVE),
            "num_ignored": self.count(IGNORED),
            "num_gt": int(self.positives_per_gt.numel()),
            "gt_with_positive_anchor": self.gt_with_positive,
            "positives_per_gt": [int(n) for n in self.positives_per_gt],
            "per_level": per_level,
            "matcher": {
                "iou_thresholds": self.thresholds,
                "labels": self.label_values,
                "allow_low_quality_matches": self.allow_low_quality_matches,
            },
            "boundary_thresh": self.boundary_thresh,
        }


def label_anchors(
    anchors: Sequence[Boxes],
    gt_boxes: Boxes,
    image_size: Tuple[int, int],
    matcher: Any,
    boundary_thresh: float = -1.0,
) -> AnchorLabels:
    """Label the anchors of every level against ``gt_boxes`` (G, input frame) with
    ``matcher`` (the RPN's ``anchor_matcher``) on their IoU; with ``boundary_thresh`` >= 0,
    anchors not inside the (height, width) ``image_size`` grown by it are ignored."""
    all_anchors = Boxes.cat(list(anchors))
    gt_boxes = gt_boxes.to(all_anchors.device)
    matched, labels = matcher(pairwise_iou(gt_boxes, all_anchors))
    labels = labels.to(all_anchors.device).clone()
    if boundary_thresh >= 0:
        labels[~all_anchors.inside_box(image_size, boundary_thresh)] = IGNORED
    positives = torch.bincount(matched[labels == POSITIVE].cpu(), minlength=len(gt_boxes))[: len(gt_boxes)]
    thresholds = [float(t) for t in getattr(matcher, "thresholds", [])[1:-1]]
    return AnchorLabels(
        labels=labels.cpu(),
        matched_gt=matched.cpu(),
        positives_per_gt=positives,
        level_sizes=[len(a) for a in anchors],
        thresholds=thresholds,
        label_values=[int(v) for v in getattr(matcher, "labels", [])],
        allow_low_quality_matches=bool(getattr(matcher, "allow_low_quality_matches", False)),
        boundary_thresh=float(boundary_thresh),
    )


def flat_rpn_predictions(
    objectness_logits: Sequence[torch.Tensor], anchor_deltas: Sequence[torch.Tensor]
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """The first image's per-level RPN head outputs in anchor order, as the RPN flattens them:
    logits (R_l,) and deltas (R_l, 4)."""
    logits = [flatten_anchor_logits(x)[0] for x in objectness_logits]
    deltas = [flatten_anchor_deltas(x)[0] for x in anchor_deltas]
    return logits, deltas


@dataclass
class TopAnchors:
    """The ``n`` anchors of highest objectness logit over all levels, best first: their position
    among all anchors ``index`` (N,), ``level`` (N,), ``anchors`` (N, 4), ``refined`` (N, 4) (the
    box the RPN's deltas make of each, not clipped), ``logits`` (N,) and, with ground truth, the
    matcher's ``labels`` (N,)."""

    index: torch.Tensor
    level: torch.Tensor
    anchors: torch.Tensor
    refined: torch.Tensor
    logits: torch.Tensor
    labels: Optional[torch.Tensor] = None

    def summary(self) -> List[Dict[str, Any]]:
        rows = []
        for i in range(len(self.index)):
            row = {
                "rank": i,
                "anchor_index": int(self.index[i]),
                "level": int(self.level[i]),
                "objectness_logit": float(self.logits[i]),
                "anchor": [float(v) for v in self.anchors[i]],
                "refined": [float(v) for v in self.refined[i]],
            }
            if self.labels is not None:
                row["label"] = int(self.labels[i])
            rows.append(row)
        return rows


def top_anchors(
    anchors: Sequence[Boxes],
    logits: Sequence[torch.Tensor],
    deltas: Sequence[torch.Tensor],
    box2box_transform: Any,
    n: int,
    labels: Optional[AnchorLabels] = None,
) -> TopAnchors:
    """The ``n`` (at most all) anchors of highest logit, from per-level anchors, flat logits
    (R_l,) and deltas (R_l, 4) (``flat_rpn_predictions``), decoded by ``box2box_transform``."""
    all_anchors = Boxes.cat(list(anchors)).tensor
    all_logits = torch.cat(list(logits))
    all_deltas = torch.cat(list(deltas))
    levels = torch.cat([torch.full((len(a),), i, dtype=torch.int64) for i, a in enumerate(anchors)])
    finite = torch.nan_to_num(all_logits.float(), nan=-float("inf"))
    order = torch.argsort(-finite, stable=True)[: min(n, len(all_logits))]
    chosen = all_anchors[order]
    refined = box2box_transform.apply_deltas(all_deltas[order], chosen)
    return TopAnchors(
        index=order.cpu(),
        level=levels[order.cpu()],
        anchors=chosen.cpu(),
        refined=refined.cpu(),
        logits=all_logits[order].cpu(),
        labels=labels.labels[order.cpu()] if labels is not None else None,
    )


@dataclass
class AnchorStep:
    """Step 1: all anchors (R, 4) with their per-level counts, their labels when the image has
    ground truth, and the top anchors by objectness."""

    anchors: torch.Tensor
    level_sizes: List[int]
    top: TopAnchors
    labels: Optional[AnchorLabels]

    def summary(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"num_anchors": int(len(self.anchors)), "anchors_per_level": list(self.level_sizes)}
        if self.labels is not None:
            out.update(self.labels.summary())
        out["top_by_objectness"] = self.top.summary()
        return out


def anchor_step(
    rpn: Any,
    anchors: Sequence[Boxes],
    logits: Sequence[torch.Tensor],
    deltas: Sequence[torch.Tensor],
    gt_boxes: Optional[Boxes],
    image_size: Tuple[int, int],
    top_n: int,
) -> AnchorStep:
    """Step 1 for a proposal generator ``rpn`` with ``box2box_transform`` (and, for the
    labels, ``anchor_matcher`` and optionally ``anchor_boundary_thresh``), from its captured
    anchors and flat head outputs (``flat_rpn_predictions``); labels only when ``gt_boxes``
    (input frame) is given."""
    labels = None
    matcher = getattr(rpn, "anchor_matcher", None)
    if gt_boxes is not None and matcher is not None:
        boundary = float(getattr(rpn, "anchor_boundary_thresh", -1.0))
        labels = label_anchors(anchors, gt_boxes, image_size, matcher, boundary)
    top = top_anchors(anchors, logits, deltas, rpn.box2box_transform, top_n, labels)
    return AnchorStep(
        anchors=Boxes.cat(list(anchors)).tensor.cpu(),
        level_sizes=[len(a) for a in anchors],
        top=top,
        labels=labels,
    )


__all__ = [
    "IGNORED",
    "NEGATIVE",
    "POSITIVE",
    "AnchorLabels",
    "AnchorStep",
    "TopAnchors",
    "anchor_step",
    "flat_rpn_predictions",
    "label_anchors",
    "top_anchors",
]
