"""``Visualizer``: predictions and ground truth drawn on an image, with Detectron2's interface
(``draw_instance_predictions``, ``draw_dataset_dict``, ``overlay_instances``, ``get_image``)
but drawn with OpenCV and numpy on each instance's crop, fast enough for video.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import cv2
import numpy as np
import torch

from ..data.detection_utils import boxes_xyxy, convert_image_to_model_format
from ..structures import Boxes, Instances
from .colors import ColorMode, class_colors, darker, palette_colors
from .drawing import draw_boxes, draw_contours, fill_masks, grey_background, line_thickness
from .labels import draw_labels, label_texts
from .masks import as_mask_crops, label_map, paint_order


class VisImage:
    """A drawn picture. ``get_image()`` is the (H, W, 3) uint8 RGB array, resized by the
    visualizer's ``scale``; ``hidden_labels`` counts labels left out for lack of room."""

    def __init__(self, image: np.ndarray, scale: float = 1.0, hidden_labels: int = 0):
        self._image = image
        self.scale = scale
        self.hidden_labels = hidden_labels

    def get_image(self) -> np.ndarray:
        if self.scale == 1.0:
            return self._image
        height, width = self._image.shape[:2]
        size = (max(1, int(round(width * self.scale))), max(1, int(round(height * self.scale))))
        interpolation = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        return cv2.resize(self._image, size, interpolation=interpolation)

    def save(self, path: str) -> None:
        """Write the picture to ``path`` (format from its extension); raises ``OSError`` naming
        the file when it cannot be written."""
        try:
            written = cv2.imwrite(os.fspath(path), np.ascontiguousarray(self.get_image()[:, :, ::-1]))
        except cv2.error:  # OpenCV raises, rather than returning False, for an unknown extension
            written = False
        if not written:
            raise OSError(f"{path}: could not write the picture (unknown extension or unwritable folder)")


def _rgb_colors(colors: Any, count: int) -> np.ndarray:
    """(N, 3) uint8 from colours given as 0-255 numbers or as 0-1 floats (Detectron2's way)."""
    colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    if len(colors) != count:
        raise ValueError(f"{len(colors)} colours given for {count} instances")
    if len(colors) and colors.max() <= 1.0:
        colors = colors * 255
    return np.rint(colors.clip(0, 255)).astype(np.uint8)


class Visualizer:
    """Draws instances on a copy of ``img_rgb``.

    ``img_rgb``: (H, W, 3) RGB, or grey (H, W) / (H, W, 1), of any dtype the data pipeline
    reads (16-bit and float images are brought to uint8 by the same rules as
    ``convert_image_to_model_format``). ``metadata`` gives ``thing_classes`` (label names) and
    ``thing_colors`` (class colours, RGB 0-255). ``instance_mode`` picks the colouring
    (``ColorMode``). ``alpha`` is the mask colour's weight: a mask pixel becomes
    ``round((1 - alpha) * pixel + alpha * colour)``. With ``mask_only`` the masks are drawn in
    full colour on black, without the image, boxes, contours or labels. ``boxes``, ``contours``
    and ``labels`` switch those parts off. Every ``draw_*`` call draws onto the same picture and
    returns it as a ``VisImage``; ``scale`` resizes what ``get_image`` returns.
    """

    def __init__(
        self,
        img_rgb: np.ndarray,
        metadata: Optional[Any] = None,
        scale: float = 1.0,
        instance_mode: ColorMode = ColorMode.IMAGE,
        *,
        alpha: float = 0.5,
        mask_only: bool = False,
        boxes: bool = True,
        contours: bool = True,
        labels: bool = True,
    ):
        image = convert_image_to_model_format(np.asarray(img_rgb), "RGB", source="image to draw on")
        self.img = np.ascontiguousarray(image)
        self.metadata = metadata
        self.scale = float(scale)
        self.instance_mode = instance_mode
        self.mask_only = mask_only
        self.alpha = 1.0 if mask_only else float(alpha)
        self.show_boxes = boxes and not mask_only
        self.show_contours = contours and not mask_only
        self.show_labels = labels and not mask_only
        self.output = np.zeros_like(self.img) if mask_only else self.img.copy()
        self.hidden_labels = 0

    def _meta(self, key: str) -> Any:
        return self.metadata.get(key) if self.metadata is not None else None

    def _colors(self, count: int, classes: Optional[Sequence[int]]) -> np.ndarray:
        if self.instance_mode == ColorMode.SEGMENTATION and classes is not None:
            return class_colors(classes, self._meta("thing_colors"))
        return palette_colors(range(count))

    def overlay_instances(
        self,
        *,
        boxes: Optional[Any] = None,
        labels: Optional[Sequence[str]] = None,
        masks: Optional[Any] = None,
        assigned_colors: Optional[Any] = None,
        label_order: Optional[Sequence[int]] = None,
    ) -> VisImage:
        """Draw N instances: ``boxes`` (``Boxes``, tensor or array, (N, 4) XYXY absolute
        pixels), ``labels`` (N strings), ``masks`` (any form ``as_mask_crops`` reads) and
        ``assigned_colors`` (N RGB colours, 0-255 or 0-1; the palette when None). Masks are
        filled from the largest to the smallest; labels are placed in ``label_order`` (default:
        as given) and left out where they would cover another."""
        image_size = self.img.shape[:2]
        crops = as_mask_crops(masks, image_size) if masks is not None else None
        if boxes is not None:
            boxes = boxes.tensor if isinstance(boxes, Boxes) else boxes
            boxes = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
            boxes = boxes.astype(np.float64).reshape(-1, 4)
        elif crops is not None:
            boxes = np.array([c.bounding_box() for c in crops], dtype=np.float64).reshape(-1, 4)
        count = len(boxes) if boxes is not None else 0
        for name, values in (("masks", crops), ("labels", labels)):
            if values is not None and len(values) != count:
                raise ValueError(f"{len(values)} {name} for {count} instances")
        if count == 0:
            return VisImage(self.output, self.scale, self.hidden_labels)
        colors = _rgb_colors(assigned_colors, count) if assigned_colors is not None else palette_colors(range(count))
        thickness = line_thickness(image_size)
        if crops is not None:
            order = paint_order(crops)
            owners = label_map(crops, image_size, order)
            if self.instance_mode == ColorMode.IMAGE_BW and not self.mask_only:
                grey_background(self.output, owners)
            fill_masks(self.output, crops, owners, colors, self.alpha)
            if self.show_contours:
                draw_contours(self.output, [crops[i] for i in order], colors[order], thickness)
        if self.show_boxes:
            draw_boxes(self.output, boxes, colors, thickness)
        if self.show_labels and labels is not None:
            order = range(count) if label_order is None else label_order
            self.hidden_labels += draw_labels(self.output, boxes, labels, darker(colors), order)
        return VisImage(self.output, self.scale, self.hidden_labels)

    def draw_instance_predictions(self, predictions: Instances, colors: Optional[Any] = None) -> VisImage:
        """Draw a model's output ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``,
        ``pred_masks`` as far as present, on any device). Labels read "class score%", the best
        scores placed first. ``colors`` overrides the colouring (``VideoVisualizer`` uses it)."""
        predictions = predictions.to("cpu")
        boxes = predictions.pred_boxes if predictions.has("pred_boxes") else None
        scores = predictions.scores.numpy() if predictions.has("scores") else None
        classes = predictions.pred_classes.numpy() if predictions.has("pred_classes") else None
        masks = predictions.pred_masks if predictions.has("pred_masks") else None
        texts = label_texts(classes, scores, self._meta("thing_classes"))
        order = np.argsort(-scores, kind="stable") if scores is not None else None
        if colors is None:
            colors = self._colors(len(predictions), classes)
        return self.overlay_instances(boxes=boxes, labels=texts, masks=masks, assigned_colors=colors, label_order=order)

    def draw_dataset_dict(self, dic: Mapping[str, Any]) -> VisImage:
        """Draw a dataset dict's ``annotations`` (boxes in any ``bbox_mode``; polygons, RLE or
        bitmask ``segmentation``; ``category_id`` as the model's class index, named by
        ``thing_classes``). Raises ``ValueError`` naming the file when the dict's ``height`` /
        ``width`` differ from the image's."""
        name = dic.get("file_name", "dataset dict")
        height, width = self.img.shape[:2]
        if (dic.get("height", height), dic.get("width", width)) != (height, width):
            raise ValueError(
                f"{name}: annotations are for a {dic['height']}x{dic['width']} image, "
                f"the image drawn on is {height}x{width}"
            )
        annos = [a for a in dic.get("annotations", [])]
        if not annos:
            return VisImage(self.output, self.scale, self.hidden_labels)
        classes = [a["category_id"] for a in annos] if all("category_id" in a for a in annos) else None
        masks = [a["segmentation"] for a in annos] if all("segmentation" in a for a in annos) else None
        try:
            return self.overlay_instances(
                boxes=boxes_xyxy(annos),
                labels=label_texts(classes, None, self._meta("thing_classes")),
                masks=masks,
                assigned_colors=self._colors(len(annos), classes),
            )
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name}: cannot draw its annotations: {e}") from None
