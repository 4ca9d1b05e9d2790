"""What a model is inspected on: one image as the model sees it, and its ground truth if any.

Two frames appear throughout the inspection. The *original* frame is the image as read (the
frame of ``model([input])``'s results). The *input* frame is the image after the test-time
resize (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), the frame of the anchors, proposals and
ROI-head boxes. Boxes are XYXY in absolute pixels of their frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.detection_utils import (
    annotations_to_instances,
    boxes_xyxy,
    check_image_size,
    convert_image_to_model_format,
    filter_empty_instances,
    model_image_to_rgb,
    read_image,
    transform_annotations,
)
from ..data.transforms import AugInput, Augmentation, Transform
from ..structures import Boxes, Instances, MaskCrop
from ..visualization.masks import as_mask_crops


@dataclass
class GroundTruth:
    """One image's non-crowd annotations in both frames.

    ``input_instances``: ``gt_boxes`` (Boxes, G x 4), ``gt_classes`` (G,) and, when the
    annotations have segmentations, ``gt_masks``, in the input frame, exactly as the training
    mapper would hand them to the model at the test size (instances left empty by the resize
    are dropped). ``boxes`` (G0, 4) float32, ``classes`` (G0,) and ``masks`` (G0 ``MaskCrop``s,
    or None without segmentations) are the same annotations in the original frame, before any
    are dropped (G0 >= G).
    """

    input_instances: Instances
    boxes: torch.Tensor
    classes: torch.Tensor
    masks: Optional[List[MaskCrop]]

    def __len__(self) -> int:
        return len(self.input_instances)


@dataclass
class InspectionInput:
    """One image prepared for the model.

    ``model_input`` is the dict ``model([model_input])`` takes: ``"image"`` a (C, H', W') uint8
    tensor in ``image_format`` at the test size, ``"height"``/``"width"`` the original size.
    ``image_rgb`` is the original image (H, W, 3) uint8 RGB, for the pictures in the original
    frame. ``ground_truth`` is None for an image without annotations. ``source`` names the image.
    """

    model_input: Dict[str, Any]
    image_rgb: np.ndarray
    image_format: str
    source: str
    ground_truth: Optional[GroundTruth] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def original_size(self) -> Tuple[int, int]:
        """(height, width) of the original image."""
        return int(self.model_input["height"]), int(self.model_input["width"])

    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width) of the resized image the model sees (before padding)."""
        return tuple(int(s) for s in self.model_input["image"].shape[-2:])

    def input_image_rgb(self) -> np.ndarray:
        """The resized image the model sees, as (H', W', 3) uint8 RGB, for drawing."""
        return _drawable_rgb(self.model_input["image"], self.image_format)


def _drawable_rgb(image: torch.Tensor, image_format: str) -> np.ndarray:
    """A (C, H, W) uint8 model-input tensor as (H, W, 3) uint8 RGB for drawing (grey repeated)."""
    return np.ascontiguousarray(convert_image_to_model_format(model_image_to_rgb(image, image_format), "RGB"))


def _resized(image: np.ndarray, augmentations: Sequence[Augmentation | Transform]):
    aug_input = AugInput(image)
    transforms = aug_input.apply_augmentations(list(augmentations))
    return aug_input.image, transforms


def input_from_image(
    image: np.ndarray,
    augmentations: Sequence[Augmentation | Transform],
    image_format: str,
    source: str = "image",
) -> InspectionInput:
    """An image without annotations: ``image`` (H, W, C) or (H, W) in ``image_format``, of any
    depth ``convert_image_to_model_format`` reads, resized by ``augmentations`` (the test-time
    ones, ``build_augmentation(cfg, is_train=False)``) as ``DefaultPredictor`` does."""
    converted = convert_image_to_model_format(image, image_format, source=source)
    height, width = converted.shape[:2]
    resized, _ = _resized(converted, augmentations)
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    original = torch.as_tensor(np.ascontiguousarray(converted.transpose(2, 0, 1)))
    return InspectionInput(
        model_input={"image": tensor, "height": height, "width": width},
        image_rgb=_drawable_rgb(original, image_format),
        image_format=image_format,
        source=source,
    )


def input_from_file(path: str, augmentations: Sequence[Augmentation | Transform], image_format: str) -> InspectionInput:
    """An image file without annotations (see ``input_from_image``); a missing or unreadable
    file raises ``BadAnnotationError`` (a ValueError) naming it."""
    return input_from_image(read_image(str(path), image_format), augmentations, image_format, source=str(path))


def input_from_dataset_dict(
    record: Mapping[str, Any],
    augmentations: Sequence[Augmentation | Transform],
    image_format: str,
    source: Optional[str] = None,
) -> InspectionInput:
    """A dataset dict (``file_name``, ``height``, ``width``, ``annotations`` in any
    ``bbox_mode``, segmentations as polygons, RLE or arrays). The image is resized as in
    ``input_from_image``; its non-crowd annotations become the ``GroundTruth`` (see there).
    Raises ``BadAnnotationError`` for an unreadable image or one whose size differs from the dict's."""
    image = read_image(record["file_name"], image_format)
    check_image_size(record, image)
    height, width = image.shape[:2]
    resized, transforms = _resized(image, augmentations)
    input_size = resized.shape[:2]
    annotations = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    original = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    moved = [{k: v for k, v in a.items() if k != "keypoints"} for a in annotations]
    moved = transform_annotations(moved, transforms, input_size, input_size=(height, width))
    instances = filter_empty_instances(annotations_to_instances(moved, input_size, mask_format="bitmask"))
    has_masks = bool(annotations) and all("segmentation" in a for a in annotations)
    ground_truth = GroundTruth(
        input_instances=instances,
        boxes=torch.as_tensor(boxes_xyxy(annotations), dtype=torch.float32).reshape(-1, 4),
        classes=torch.tensor([int(a["category_id"]) for a in annotations], dtype=torch.int64),
        masks=as_mask_crops([a["segmentation"] for a in annotations], (height, width)) if has_masks else None,
    )
    return InspectionInput(
        model_input={"image": tensor, "height": height, "width": width},
        image_rgb=_drawable_rgb(original, image_format),
        image_format=image_format,
        source=source or str(record["file_name"]),
        ground_truth=ground_truth,
    )


def ground_truth_boxes(ground_truth: Optional[GroundTruth]) -> Optional[Boxes]:
    """The input-frame ground-truth boxes, or None without ground truth."""
    if ground_truth is None:
        return None
    return ground_truth.input_instances.gt_boxes


__all__ = [
    "GroundTruth",
    "InspectionInput",
    "ground_truth_boxes",
    "input_from_dataset_dict",
    "input_from_file",
    "input_from_image",
]
