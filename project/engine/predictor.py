"""``DefaultPredictor``: run a trained model on images from user code, as in Detectron2."""

from __future__ import annotations

import copy
import os
from typing import Dict, List, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from ..checkpoint import DetectionCheckpointer
from ..data.detection_utils import build_augmentation, convert_image_to_model_format
from ..data.transforms import apply_augmentations
from ..modeling import build_model
from ..structures import Instances

Prediction = Dict[str, Instances]


def _check_is_array(image: object, source: str) -> None:
    """Raise a ``TypeError`` that names ``source`` and the likely cause unless ``image`` is a numpy array."""
    if image is None:
        raise TypeError(
            f"{source}: got None instead of an image; cv2.imread returns None when it cannot read a file "
            "(missing, unreadable or not an image): check the path, or read files with "
            "project.data.detection_utils.read_image, which says what is wrong"
        )
    if not isinstance(image, np.ndarray):
        hint = "; read the file first (cv2.imread)" if isinstance(image, (str, os.PathLike)) else ""
        raise TypeError(f"{source}: expected an (H, W, C) numpy array, got {type(image).__name__}{hint}")


class DefaultPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` and runs single images or
    batches in eval mode without gradients.

    Call it with one (H, W, C) numpy image in ``cfg.INPUT.FORMAT`` channel order (BGR by
    default, as ``cv2.imread`` returns), or with a list (or tuple) of such images, which run as
    one batch. Channels and pixel values follow the contract of
    ``project.data.detection_utils.convert_image_to_model_format``, as the data pipeline does:
    grey (H, W) or (H, W, 1) and RGBA images are accepted; uint8 is taken as is, a float or
    wider-integer copy of an 8-bit image (floats on the 0-255 or the 0-1 scale) gives exactly the
    same detections, and 16-bit images (or other ranges) are stretched between percentiles. Each
    image is resized as the config says for testing (shortest edge ``INPUT.MIN_SIZE_TEST``,
    longest at most ``INPUT.MAX_SIZE_TEST``), and results come back in the original image's
    coordinates: ``{"instances": Instances}`` with ``pred_boxes``, ``scores``, ``pred_classes``
    and ``pred_masks`` (N, H, W) booleans.

    Raises, naming the image of the call ("image 1"): ``TypeError`` for something that is not a
    numpy array (``None``, which ``cv2.imread`` returns for a file it cannot read, included);
    ``ValueError`` (``UnusableImageError``) for a wrong shape, an image without pixels, or NaN or
    infinite values.
    """

    def __init__(self, cfg: DictConfig):
        self.cfg = copy.deepcopy(cfg)
        self.model = build_model(self.cfg)
        self.model.eval()
        if self.cfg.MODEL.WEIGHTS:
            DetectionCheckpointer(self.model).load(self.cfg.MODEL.WEIGHTS)
        self.augmentations = build_augmentation(self.cfg, is_train=False)
        self.input_format = self.cfg.INPUT.FORMAT

    def _to_input(self, image: np.ndarray, index: int) -> Dict[str, object]:
        _check_is_array(image, f"image {index}")
        image = convert_image_to_model_format(image, self.input_format, source=f"image {index}")
        height, width = image.shape[:2]
        resized, _ = apply_augmentations(self.augmentations, image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    @torch.inference_mode()
    def __call__(self, images: Union[np.ndarray, Sequence[np.ndarray]]) -> Union[Prediction, List[Prediction]]:
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        if not batch:
            return []
        outputs = self.model([self._to_input(image, i) for i, image in enumerate(batch)])
        return outputs[0] if single else outputs
