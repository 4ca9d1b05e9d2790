"""``DatasetMapper``: one dataset dict in, one model input dict out, and the registry that
lets the config pick a mapper (``cfg.INPUT.MAPPER_NAME``)."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
from fvcore.common.registry import Registry
from omegaconf import DictConfig

from project.config.configurable import configurable

from . import detection_utils as utils
from . import transforms as T
from .bad_input import KIND_INVALID, BadAnnotationError, BadInputLog, current_policy

logger = logging.getLogger(__name__)

MAPPER_REGISTRY = Registry("MAPPER")
MAPPER_REGISTRY.__doc__ = """Mappers from dataset dicts to model inputs. A mapper is called as
``mapper(cfg, is_train)`` and the result as ``mapper(dataset_dict)``."""

_SUMMARY_EVERY = 1000


def build_mapper(cfg: DictConfig, is_train: bool):
    """The mapper named by ``cfg.INPUT.MAPPER_NAME``, built from ``cfg``."""
    return MAPPER_REGISTRY.get(cfg.INPUT.MAPPER_NAME)(cfg, is_train)


@MAPPER_REGISTRY.register()
class DatasetMapper:
    """Maps a dataset dict to the model's input dict, as Detectron2's ``DatasetMapper`` does:

    1. reads the image (8/16-bit, grey, colour or RGBA) into ``image_format``;
    2. applies the augmentations;
    3. in training, moves the non-crowd annotations with the chosen transforms and builds
       ``instances`` (``gt_boxes``, ``gt_classes``, ``gt_masks``), dropping instances left empty;
       in inference, drops the annotations.

    The output keeps the input's keys (``file_name``, ``image_id``, ``height`` and ``width`` of
    the original image) and adds ``image``: a (C, H, W) uint8 tensor of the transformed image.
    Masks stay small on dense images: RLE is decoded only inside each object's box and
    transformed as a crop (see ``CroppedBitMasks``). Keypoints in the annotations are ignored.

    Build it from plain arguments, ``DatasetMapper(is_train=True, augmentations=[...],
    image_format="BGR", ...)``, or from a config, ``DatasetMapper(cfg, is_train)`` (keywords
    given with the config replace the config's values).

    A missing, unreadable or wrongly sized image is bad input: in training with the "skip"
    policy the mapper logs it, counts it in ``bad_input`` (its copies in data loader workers
    count into the same table) and returns None (the data loader then takes another image);
    otherwise it raises, naming the file. Inference never skips an image: an AP without it
    would not be the test set's, so the error says to restore the file and evaluate again.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: Sequence[Union[T.Augmentation, T.Transform]],
        image_format: str = "BGR",
        use_instance_mask: bool = False,
        instance_mask_format: str = "polygon",
        recompute_boxes: bool = False,
        on_bad_annotation: Optional[str] = None,
    ):
        """``augmentations`` (or fixed transforms) apply in order; ``image_format`` is "BGR",
        "RGB" or "L"; ``use_instance_mask`` keeps the segmentations as ``gt_masks`` in
        ``instance_mask_format`` ("polygon" or "bitmask"); ``recompute_boxes`` replaces the
        boxes by the masks' bounding boxes (after a crop, say); ``on_bad_annotation`` is the
        bad-input policy ("skip" or "error"; None: the current one, see ``bad_input``)."""
        if recompute_boxes and not use_instance_mask:
            raise ValueError("recompute_boxes needs instance masks (use_instance_mask=True)")
        if instance_mask_format not in utils.MASK_FORMATS:
            raise ValueError(f"instance_mask_format must be one of {utils.MASK_FORMATS}, got {instance_mask_format!r}")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.use_instance_mask = use_instance_mask
        self.instance_mask_format = instance_mask_format
        self.recompute_boxes = recompute_boxes
        mode = "training" if is_train else "inference"
        self._bad_input = BadInputLog(f"DatasetMapper ({mode})", current_policy(on_bad_annotation), logger, shared=True)
        self.num_images = 0
        self.num_empty_instances_dropped = 0
        logger.info("DatasetMapper for %s, augmentations: %s", mode, self.augmentations)

    @classmethod
    def from_config(cls, cfg: DictConfig, is_train: bool = True) -> Dict[str, Any]:
        """The constructor arguments that ``cfg`` implies: ``build_augmentation``'s
        augmentations, preceded by ``RandomCrop`` with ``INPUT.CROP.ENABLED`` in training; boxes
        recomputed from the masks whenever training crops and masks are on."""
        augmentations = utils.build_augmentation(cfg, is_train)
        cropping = is_train and (cfg.INPUT.CROP.ENABLED or cfg.INPUT.LARGE_SCALE_JITTER.ENABLED)
        if is_train and cfg.INPUT.CROP.ENABLED:
            augmentations.insert(0, T.RandomCrop(cfg.INPUT.CROP.TYPE, list(cfg.INPUT.CROP.SIZE)))
        return {
            "is_train": is_train,
            "augmentations": augmentations,
            "image_format": cfg.INPUT.FORMAT,
            "use_instance_mask": cfg.MODEL.MASK_ON,
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
            "recompute_boxes": bool(cropping and cfg.MODEL.MASK_ON),
            "on_bad_annotation": cfg.DATALOADER.ON_BAD_ANNOTATION,
        }

    @property
    def bad_input(self) -> BadInputLog:
        """The skipped items, counted over every process that runs a copy of this mapper."""
        return self._bad_input

    def _skip(self, error: BadAnnotationError) -> None:
        """Report bad input: raises in inference and with the "error" policy."""
        if not self.is_train:
            raise BadAnnotationError(
                error.file,
                error.item,
                f"{error.reason}. Evaluation stops, as an AP without this image would not be the test "
                "set's: restore the file (or remove the image from the dataset) and evaluate again "
                "(eval_only=true MODEL.WEIGHTS=<checkpoint>)",
                error.kind,
            )
        self._bad_input.report(error)

    def _instances(self, dataset_dict: Dict[str, Any], transforms: T.TransformList, input_size, image_size):
        unused = ("keypoints",) if self.use_instance_mask else ("keypoints", "segmentation")
        annos = [
            {k: v for k, v in a.items() if k not in unused}
            for a in dataset_dict.pop("annotations")
            if a.get("iscrowd", 0) == 0
        ]
        annos = utils.transform_annotations(annos, transforms, image_size, input_size=input_size)
        instances = utils.annotations_to_instances(annos, image_size, self.instance_mask_format)
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        kept = utils.filter_empty_instances(instances)
        self._count_dropped(len(instances) - len(kept))
        return kept

    def _count_dropped(self, dropped: int) -> None:
        self.num_images += 1
        self.num_empty_instances_dropped += dropped
        if self.num_images % _SUMMARY_EVERY == 0 and self.num_empty_instances_dropped:
            logger.info(
                "DatasetMapper: %d instance(s) left empty by augmentation (cropped out or collapsed) "
                "and dropped in %d images so far",
                self.num_empty_instances_dropped,
                self.num_images,
            )

    def __call__(self, dataset_dict: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        dataset_dict = dict(dataset_dict)  # the annotations are read, never modified
        try:
            image = utils.read_image(dataset_dict["file_name"], self.image_format)
            utils.check_image_size(dataset_dict, image)
        except BadAnnotationError as e:
            self._skip(e)
            return None
        input_size = image.shape[:2]
        dataset_dict.setdefault("height", input_size[0])
        dataset_dict.setdefault("width", input_size[1])
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_size = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            try:
                dataset_dict["instances"] = self._instances(dataset_dict, transforms, input_size, image_size)
            except (ValueError, TypeError) as e:
                self._skip(
                    BadAnnotationError(
                        dataset_dict["file_name"],
                        f"annotations of image id {dataset_dict.get('image_id')}",
                        str(e),
                        KIND_INVALID,
                    )
                )
                return None
        return dataset_dict
