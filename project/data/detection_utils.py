"""Helpers of the dataset mapper, with Detectron2's names: reading images, building the
augmentations from the config, moving annotations through transforms, and turning them into
``Instances``."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from omegaconf import DictConfig

from project.structures import Boxes, BoxMode, Instances, PolygonMasks

from ..structures import CroppedBitMasks, MaskCrop
from ..structures.rle import decode_crop
from . import transforms as T
from .bad_input import KIND_CORRUPT_IMAGE, KIND_MASK_SIZE, KIND_MISSING_IMAGE, BadAnnotationError

IMAGE_FORMATS = ("BGR", "RGB", "L")
MASK_FORMATS = ("polygon", "bitmask")
# 16-bit images are stretched to 8 bits between these percentiles of the image's own values.
UINT16_PERCENTILES = (0.1, 99.9)


def scale_to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit version of an image of another depth.

    Rule for 16-bit (and other integer or float) images: the values between the image's
    0.1th and 99.9th percentiles (taken over all channels together, so colours keep their
    balance) are stretched linearly onto 0..255 and the rest clipped. Microscopy images, which
    often use a few thousand of the 65536 levels, thereby become visible; the percentiles
    ignore hot pixels. A constant image maps to 0.
    """
    if image.dtype == np.uint8:
        return image
    values = image.astype(np.float32)
    low, high = np.percentile(values, UINT16_PERCENTILES)
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.clip((values - low) * (255.0 / (high - low)) + 0.5, 0, 255).astype(np.uint8)


def convert_image_to_model_format(image: np.ndarray, format: str, source: str = "image") -> np.ndarray:
    """An image whose colour channels are already in ``format``'s order (or grey, or with a
    fourth alpha channel), of any bit depth, as the model takes it: (H, W, 3) uint8 for "BGR"
    and "RGB", (H, W, 1) for "L". Grey becomes three equal channels, alpha is dropped, other
    depths are scaled by ``scale_to_uint8``; a colour image given for "L" is read as BGR.
    ``source`` names the image in errors."""
    if format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {format!r}")
    if (
        not isinstance(image, np.ndarray)
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] not in (1, 3, 4))
    ):
        got = f"shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{source}: expected an (H, W) or (H, W, C) image with C in 1, 3, 4; got {got}")
    image = scale_to_uint8(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if format == "L":
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return grey[:, :, None]
    return image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def read_image(file_name: str, format: Optional[str] = "BGR") -> np.ndarray:
    """Read an image file into an (H, W, C) uint8 array in ``format`` ("BGR", "RGB" or "L").

    8- and 16-bit, grey, colour and RGBA files are accepted (see ``scale_to_uint8`` and
    ``convert_image_to_model_format``); EXIF orientation is applied. A missing or undecodable
    file raises ``BadAnnotationError`` naming it.
    """
    format = format or "BGR"
    try:
        data = np.fromfile(file_name, dtype=np.uint8)
    except FileNotFoundError:
        raise BadAnnotationError(file_name, "image", "image file does not exist", KIND_MISSING_IMAGE) from None
    image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    if image is None:
        raise BadAnnotationError(
            file_name, "image", "cannot decode the image (corrupt or not an image)", KIND_CORRUPT_IMAGE
        )
    if format == "RGB" and image.ndim == 3:
        image = image[:, :, 2::-1]
    return convert_image_to_model_format(image, format, source=file_name)


def check_image_size(dataset_dict: Mapping[str, Any], image: np.ndarray) -> None:
    """Raise unless the image's size matches the dataset dict's ``height`` and ``width``."""
    expected = (dataset_dict.get("height"), dataset_dict.get("width"))
    actual = image.shape[:2]
    if expected[0] is not None and expected[1] is not None and tuple(expected) != tuple(actual):
        raise BadAnnotationError(
            dataset_dict["file_name"],
            f"image id {dataset_dict.get('image_id')}",
            f"the image is {actual[0]}x{actual[1]} (height x width) but its annotations say "
            f"{expected[0]}x{expected[1]}",
            KIND_MASK_SIZE,
        )


def build_augmentation(cfg: DictConfig, is_train: bool) -> List[T.Augmentation]:
    """The augmentations ``cfg.INPUT`` asks for. Training: ResizeShortestEdge (or large-scale
    jitter), flips, brightness and contrast; test: ResizeShortestEdge to MIN_SIZE_TEST.
    (RandomCrop, with CROP.ENABLED, is added in front by ``DatasetMapper.from_config``.)"""
    inp = cfg.INPUT
    if not is_train:
        return [T.ResizeShortestEdge(inp.MIN_SIZE_TEST, inp.MAX_SIZE_TEST, "choice")]
    lsj = inp.LARGE_SCALE_JITTER
    if lsj.ENABLED:
        augs: List[T.Augmentation] = [
            T.ResizeScale(lsj.MIN_SCALE, lsj.MAX_SCALE, lsj.IMAGE_SIZE, lsj.IMAGE_SIZE),
            T.FixedSizeCrop((lsj.IMAGE_SIZE, lsj.IMAGE_SIZE)),
        ]
    else:
        augs = [T.ResizeShortestEdge(list(inp.MIN_SIZE_TRAIN), inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING)]
    flips = {"horizontal": ("horizontal",), "vertical": ("vertical",), "both": ("horizontal", "vertical"), "none": ()}
    if inp.RANDOM_FLIP not in flips:
        raise ValueError(f"INPUT.RANDOM_FLIP must be one of {sorted(flips)}, got {inp.RANDOM_FLIP!r}")
    for direction in flips[inp.RANDOM_FLIP]:
        augs.append(T.RandomFlip(horizontal=direction == "horizontal", vertical=direction == "vertical"))
    if tuple(inp.BRIGHTNESS) != (1.0, 1.0):
        augs.append(T.RandomBrightness(*inp.BRIGHTNESS))
    if tuple(inp.CONTRAST) != (1.0, 1.0):
        augs.append(T.RandomContrast(*inp.CONTRAST))
    return augs


def segmentation_to_mask_crop(segmentation: Any, image_size: Tuple[int, int]) -> MaskCrop:
    """A ``MaskCrop`` from an RLE dict, a full (H, W) mask array or a ``MaskCrop``."""
    if isinstance(segmentation, MaskCrop):
        return segmentation
    if isinstance(segmentation, dict):
        return decode_crop(segmentation)
    if isinstance(segmentation, np.ndarray):
        if segmentation.shape != tuple(image_size):
            raise ValueError(f"mask of shape {segmentation.shape} for a {image_size} image")
        return MaskCrop.from_array(segmentation)
    raise TypeError(f"cannot read a mask from a {type(segmentation).__name__}")


def boxes_xyxy(annos: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The annotations' ``bbox``es as an (N, 4) float64 XYXY array, whatever their ``bbox_mode``."""
    boxes = np.asarray([a["bbox"] for a in annos], dtype=np.float64).reshape(-1, 4)
    modes = np.asarray([int(a["bbox_mode"]) for a in annos], dtype=np.int64)
    unknown = set(modes.tolist()) - {int(BoxMode.XYXY_ABS), int(BoxMode.XYWH_ABS)}
    if unknown:
        raise ValueError(f"bbox_mode {sorted(unknown)} is not supported; use BoxMode.XYXY_ABS or XYWH_ABS")
    xywh = modes == int(BoxMode.XYWH_ABS)
    boxes[xywh, 2:] += boxes[xywh, :2]
    return boxes


def _transform_segmentation(segm: Any, transforms: T.TransformList, resampler: Optional[T.MaskCropResampler]) -> Any:
    if isinstance(segm, list):
        polygons = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segm]
        return [p.reshape(-1) for p in transforms.apply_polygons(polygons)]
    if resampler is None:
        raise ValueError("transforming a mask needs the input image size (input_size) or a resampler")
    return resampler(segmentation_to_mask_crop(segm, resampler.input_size))


def transform_annotations(
    annos: Sequence[Mapping[str, Any]],
    transforms: Union[T.Transform, Sequence[T.Transform]],
    image_size: Tuple[int, int],
    *,
    resampler: Optional[T.MaskCropResampler] = None,
    input_size: Optional[Tuple[int, int]] = None,
) -> List[Dict[str, Any]]:
    """New annotation dicts moved by ``transforms`` onto an image of ``image_size``:
    ``bbox`` transformed, clipped to the image and in XYXY mode; polygons transformed (a list
    of flat arrays); masks (RLE, arrays, ``MaskCrop``) as a transformed ``MaskCrop``.

    Masks need the ``resampler`` of the image, built from ``input_size`` (the image's size
    before the transforms) when not given.
    """
    if not isinstance(transforms, T.TransformList):
        transforms = T.TransformList(list(transforms) if isinstance(transforms, (list, tuple)) else [transforms])
    if resampler is None and input_size is not None:
        resampler = T.MaskCropResampler(transforms, input_size)
    boxes = transforms.apply_box(boxes_xyxy(annos)) if annos else np.zeros((0, 4))
    height, width = image_size
    boxes = np.clip(boxes, 0, [width, height, width, height])
    out = []
    for anno, box in zip(annos, boxes):
        moved = dict(anno, bbox=box, bbox_mode=BoxMode.XYXY_ABS)
        if "segmentation" in anno:
            moved["segmentation"] = _transform_segmentation(anno["segmentation"], transforms, resampler)
        out.append(moved)
    return out


def transform_instance_annotations(
    annotation: Mapping[str, Any],
    transforms: Union[T.Transform, Sequence[T.Transform]],
    image_size: Tuple[int, int],
    *,
    resampler: Optional[T.MaskCropResampler] = None,
    input_size: Optional[Tuple[int, int]] = None,
) -> Dict[str, Any]:
    """``transform_annotations`` of a single annotation."""
    return transform_annotations([annotation], transforms, image_size, resampler=resampler, input_size=input_size)[0]


def annotations_to_instances(
    annos: Sequence[Mapping[str, Any]], image_size: Tuple[int, int], mask_format: str = "polygon"
) -> Instances:
    """``Instances`` with ``gt_boxes``, ``gt_classes`` and (when the annotations have
    segmentations) ``gt_masks`` from transformed annotations (XYXY boxes).

    ``mask_format="polygon"`` gives ``PolygonMasks`` and needs polygon segmentations;
    "bitmask" gives ``CroppedBitMasks`` (a memory-light ``BitMasks``) from polygons or masks.
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    target = Instances(image_size)
    target.gt_boxes = Boxes(torch.as_tensor(boxes_xyxy(annos), dtype=torch.float32))
    target.gt_classes = torch.tensor([int(a["category_id"]) for a in annos], dtype=torch.int64)
    if not annos or "segmentation" not in annos[0]:
        return target
    segms = [a.get("segmentation") for a in annos]
    if any(s is None for s in segms):
        raise ValueError("some annotations of this image have a segmentation and some do not")
    if mask_format == "polygon":
        if not all(isinstance(s, list) for s in segms):
            raise ValueError(
                "INPUT.MASK_FORMAT='polygon' needs polygon segmentations, but this image has masks "
                "(RLE or arrays); set INPUT.MASK_FORMAT=bitmask"
            )
        target.gt_masks = PolygonMasks(segms)
    else:
        crops = [
            MaskCrop.from_polygons(s, image_size) if isinstance(s, list) else segmentation_to_mask_crop(s, image_size)
            for s in segms
        ]
        target.gt_masks = CroppedBitMasks(crops, image_size)
    return target


def filter_empty_instances(
    instances: Instances,
    by_box: bool = True,
    by_mask: bool = True,
    box_threshold: float = 1e-5,
    return_mask: bool = False,
) -> Union[Instances, Tuple[Instances, torch.Tensor]]:
    """Drop instances whose box is (nearly) empty or whose mask has no pixel; with
    ``return_mask`` also return the bool (N,) tensor of the kept ones."""
    keep = torch.ones(len(instances), dtype=torch.bool)
    if by_box and instances.has("gt_boxes"):
        keep &= instances.gt_boxes.nonempty(threshold=box_threshold)
    if by_mask and instances.has("gt_masks"):
        keep &= instances.gt_masks.nonempty()
    kept = instances[keep]
    return (kept, keep) if return_mask else kept


__all__ = [
    "annotations_to_instances",
    "boxes_xyxy",
    "build_augmentation",
    "check_image_size",
    "convert_image_to_model_format",
    "filter_empty_instances",
    "read_image",
    "scale_to_uint8",
    "segmentation_to_mask_crop",
    "transform_annotations",
    "transform_instance_annotations",
]
