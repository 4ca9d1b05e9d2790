"""Mapping detections from the resized network input back to the original image."""

from __future__ import annotations

from ..structures import Instances, paste_masks_in_image


def detector_postprocess(
    results: Instances, output_height: int, output_width: int, mask_threshold: float = 0.5
) -> Instances:
    """Rescale ``results`` (in the frame of ``results.image_size``) to an output image of
    ``(output_height, output_width)``: boxes are scaled and clipped, empty boxes dropped, and
    ``pred_masks`` (N, 1, M, M) probabilities are pasted into (N, H, W) boolean masks."""
    scale_x = output_width / results.image_size[1]
    scale_y = output_height / results.image_size[0]
    results = Instances((output_height, output_width), **results.get_fields())
    boxes = results.pred_boxes.clone()  # the caller's boxes stay in their own frame
    boxes.scale(scale_x, scale_y)
    boxes.clip(results.image_size)
    results.pred_boxes = boxes
    results = results[boxes.nonempty()]
    if results.has("pred_masks"):
        results.pred_masks = paste_masks_in_image(
            results.pred_masks[:, 0], results.pred_boxes.tensor, results.image_size, threshold=mask_threshold
        )
    return results
