"""``DefaultPredictor``: run a trained model on images from user code, as in Detectron2."""

from __future__ import annotations

import copy
from typing import Dict, List, Union

import numpy as np
import torch
from omegaconf import DictConfig

from ..checkpoint import DetectionCheckpointer
from ..data.detection_utils import build_augmentation, convert_image_to_model_format
from ..data.transforms import apply_augmentations
from ..modeling import build_model
from ..structures import Instances

Prediction = Dict[str, Instances]


class DefaultPredictor:
    """Builds the model of ``cfg``, loads ``cfg.MODEL.WEIGHTS`` and runs single images or
    batches in eval mode without gradients.

    Call it with an (H, W, C) uint8 numpy image in ``cfg.INPUT.FORMAT`` channel order (BGR by
    default, as ``cv2.imread`` returns), or with a list of such images, which run as one batch.
    Grayscale (H, W) or (H, W, 1), RGBA and 16-bit images are converted as the data pipeline
    does (see ``convert_image_to_model_format``). Each image is resized as the config says for
    testing (shortest edge ``INPUT.MIN_SIZE_TEST``, longest at most ``INPUT.MAX_SIZE_TEST``), and
    results come back in the original image's coordinates: ``{"instances": Instances}`` with
    ``pred_boxes``, ``scores``, ``pred_classes`` and ``pred_masks`` (N, H, W) booleans.
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
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image {index}: expected an (H, W, C) numpy array, got {type(image).__name__}")
        image = convert_image_to_model_format(image, self.input_format, source=f"image {index}")
        height, width = image.shape[:2]
        resized, _ = apply_augmentations(self.augmentations, image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    @torch.inference_mode()
    def __call__(self, images: Union[np.ndarray, List[np.ndarray]]) -> Union[Prediction, List[Prediction]]:
        single = isinstance(images, np.ndarray)
        batch = [images] if single else list(images)
        if not batch:
            return []
        outputs = self.model([self._to_input(image, i) for i, image in enumerate(batch)])
        return outputs[0] if single else outputs
