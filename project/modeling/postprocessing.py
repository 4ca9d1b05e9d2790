"""Mapping detections from the resized network input back to the original image."""

from __future__ import annotations

from ..structures import Instances, paste_masks_in_image
from ..structures.cropped_masks import paste_masks_as_crops

# How ``pred_masks`` are returned (``TEST.PRED_MASK_FORMAT``): "bitmask", an (N, H, W) bool
# tensor (Detectron2's contract); "crop", a ``CroppedBitMasks`` holding each mask around its box.
PRED_MASK_FORMATS = ("bitmask", "crop")


def check_pred_mask_format(mask_format: str) -> str:
    """``mask_format`` itself when it is one of ``PRED_MASK_FORMATS``; raises ValueError otherwise."""
    if mask_format not in PRED_MASK_FORMATS:
        raise ValueError(
            f"TEST.PRED_MASK_FORMAT (the form of predicted masks) must be one of {PRED_MASK_FORMATS}, "
            f"got {mask_format!r}; use 'crop' to keep large images' masks small"
        )
    return mask_format


def _box_field(results: Instances) -> str:
    """The name of the boxes ``results`` holds: ``pred_boxes`` (detections) or ``proposal_boxes``."""
    for field in ("pred_boxes", "proposal_boxes"):
        if results.has(field):
            return field
    fields = sorted(results.get_fields())
    raise ValueError(f"detector_postprocess needs pred_boxes or proposal_boxes; the results hold {fields}")


def detector_postprocess(
    results: Instances,
    output_height: int,
    output_width: int,
    mask_threshold: float = 0.5,
    mask_format: str = "bitmask",
) -> Instances:
    """Rescale ``results`` (in the frame of ``results.image_size``) to an output image of
    ``(output_height, output_width)``: boxes (``pred_boxes``, or for proposals
    ``proposal_boxes``) are scaled and clipped, empty boxes dropped, and ``pred_masks``
    (N, 1, M, M) probabilities are pasted into the output image and thresholded.

    With ``mask_format`` "bitmask" the masks become an (N, H, W) bool tensor; with "crop" a
    ``CroppedBitMasks`` whose ``.tensor`` is that same tensor but which holds only the pixels
    around each box, so nothing of the image's size is allocated. Raises ValueError for
    another ``mask_format``."""
    paste = paste_masks_as_crops if check_pred_mask_format(mask_format) == "crop" else paste_masks_in_image
    scale_x = output_width / results.image_size[1]
    scale_y = output_height / results.image_size[0]
    results = Instances((output_height, output_width), **results.get_fields())
    field = _box_field(results)
    boxes = results.get(field).clone()  # the caller's boxes stay in their own frame
    boxes.scale(scale_x, scale_y)
    boxes.clip(results.image_size)
    results.set(field, boxes)
    results = results[boxes.nonempty()]
    if results.has("pred_masks"):
        results.pred_masks = paste(
            results.pred_masks[:, 0], results.get(field).tensor, results.image_size, threshold=mask_threshold
        )
    return results
