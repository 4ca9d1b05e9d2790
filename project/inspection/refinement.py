"""The box head on one image: which proposals became detections, the class-specific box each
was refined into, and the detections left after the score threshold and per-class NMS.

The ROI heads' detections and the model's final output are the captured ones; the link from a
detection to its proposal comes from the box predictor's own ``inference``, run again on the
captured predictions (a pure function of them), and the link from the model's output back to
the ROI heads' detections from ``detector_postprocess`` applied to the detections' boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

from ..modeling.postprocessing import detector_postprocess
from ..structures import Boxes, Instances


@dataclass
class RefinementStep:
    """Step 3.

    In the input frame: ``roi_boxes`` (R, 4) the proposals the box head received;
    ``detections`` the ROI heads' output (D instances), and for each of them ``roi_index``
    (D,), the proposal it was refined from (None when the predictor cannot say), and
    ``refined_boxes`` (D, 4), its class-specific box clipped to the image (the detection's box).
    ``num_candidates``: (proposal, class) pairs scoring above the threshold, before NMS.
    In the original frame: ``output`` the model's result (O <= D instances, those whose box
    stays non-empty after rescaling) and ``output_index`` (O,), each one's detection (None when
    the model's output cannot be traced back, e.g. a custom post-processing).
    """

    roi_boxes: torch.Tensor
    detections: Instances
    roi_index: Optional[torch.Tensor]
    refined_boxes: torch.Tensor
    num_candidates: Optional[int]
    settings: Dict[str, Any]
    output: Instances
    output_index: Optional[torch.Tensor]

    def summary(self, top_n: int) -> Dict[str, Any]:
        """JSON-ready: the settings and counts, the top ``top_n`` detections with their proposal
        and refined box (input frame), and every final detection of the model (original frame,
        exact float32 values)."""
        kept = []
        for i in range(min(top_n, len(self.detections))):
            row: Dict[str, Any] = {
                "detection": i,
                "class": int(self.detections.pred_classes[i]),
                "score": float(self.detections.scores[i]),
                "refined_box": [float(v) for v in self.refined_boxes[i]],
            }
            if self.roi_index is not None:
                row["proposal_index"] = int(self.roi_index[i])
                row["proposal_box"] = [float(v) for v in self.roi_boxes[self.roi_index[i]]]
            kept.append(row)
        final = []
        boxes = self.output.pred_boxes.tensor if self.output.has("pred_boxes") else torch.zeros(0, 4)
        for i in range(len(self.output)):
            row = {"box": [float(v) for v in boxes[i]]}
            if self.output.has("scores"):
                row["score"] = float(self.output.scores[i])
            if self.output.has("pred_classes"):
                row["class"] = int(self.output.pred_classes[i])
            if self.output_index is not None:
                row["detection"] = int(self.output_index[i])
            final.append(row)
        return {
            "settings": self.settings,
            "num_proposals": int(len(self.roi_boxes)),
            "num_candidates_above_score_thresh": self.num_candidates,
            "num_detections": len(self.detections),
            "kept_proposals": kept,
            "final_detections": final,
        }


def _roi_index(
    box_predictor: Any, predictions: Tuple[torch.Tensor, ...], proposals: Instances
) -> Optional[torch.Tensor]:
    """Each detection's proposal, from ``box_predictor.inference`` (which numbers the proposals
    left after dropping non-finite ones: mapped back here to all proposals)."""
    inference = getattr(box_predictor, "inference", None)
    if inference is None:
        return None
    result = inference(predictions, [proposals])
    if not (isinstance(result, tuple) and len(result) == 2):
        return None
    index = result[1][0]
    if hasattr(box_predictor, "predict_boxes") and hasattr(box_predictor, "predict_probs"):
        boxes = box_predictor.predict_boxes(predictions, [proposals])[0]
        probs = box_predictor.predict_probs(predictions, [proposals])[0]
        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(probs).all(dim=1)
        if not finite.all():
            index = finite.nonzero().flatten()[index]
    return index.cpu()


def _num_candidates(box_predictor: Any, predictions: Tuple[torch.Tensor, ...], proposals: Instances) -> Optional[int]:
    threshold = getattr(box_predictor, "test_score_thresh", None)
    if threshold is None or not hasattr(box_predictor, "predict_probs"):
        return None
    probs = box_predictor.predict_probs(predictions, [proposals])[0]
    return int((torch.nan_to_num(probs[:, :-1], nan=0.0) > threshold).sum())


def trace_output(detections: Instances, output: Instances) -> Optional[torch.Tensor]:
    """For each instance of the model's ``output`` (original frame), the index of the ROI-heads
    detection (input frame) it comes from, found by rescaling the detections' boxes with
    ``detector_postprocess`` as ``GeneralizedRCNN`` does; None when that does not reproduce the
    output's boxes exactly."""
    if not (detections.has("pred_boxes") and output.has("pred_boxes")):
        return None
    probe = Instances(
        detections.image_size,
        pred_boxes=Boxes(detections.pred_boxes.tensor.clone()),
        inspect_index=torch.arange(len(detections), device=detections.pred_boxes.tensor.device),
    )
    traced = detector_postprocess(probe, output.image_size[0], output.image_size[1])
    if not torch.equal(traced.pred_boxes.tensor, output.pred_boxes.tensor):
        return None
    return traced.inspect_index.cpu()


def refinement_step(
    box_predictor: Any,
    predictions: Optional[Tuple[torch.Tensor, ...]],
    roi_proposals: Instances,
    detections: Instances,
    output: Instances,
) -> RefinementStep:
    """Step 3 from the captured box-predictor outputs, the proposals the ROI heads received,
    their detections and the model's output."""
    roi_index = num_candidates = None
    if predictions is not None and box_predictor is not None:
        roi_index = _roi_index(box_predictor, predictions, roi_proposals)
        num_candidates = _num_candidates(box_predictor, predictions, roi_proposals)
        if roi_index is not None and len(roi_index) != len(detections):
            roi_index = None
    settings = {
        name: getattr(box_predictor, attribute, None)
        for name, attribute in (
            ("score_thresh", "test_score_thresh"),
            ("nms_thresh", "test_nms_thresh"),
            ("detections_per_image", "test_topk_per_image"),
        )
    }
    return RefinementStep(
        roi_boxes=roi_proposals.proposal_boxes.tensor.detach().cpu(),
        detections=detections.to("cpu"),
        roi_index=roi_index,
        refined_boxes=detections.pred_boxes.tensor.detach().cpu(),
        num_candidates=num_candidates,
        settings=settings,
        output=output.to("cpu"),
        output_index=trace_output(detections, output),
    )


__all__ = ["RefinementStep", "refinement_step", "trace_output"]
