"""Helpers of the dataset mapper, with Detectron2's names: reading images, building the
augmentations from the config, moving annotations through transforms, and turning them into
``Instances``."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from omegaconf import DictConfig

from project.structures import BitMasks, Boxes, BoxMode, Instances, PolygonMasks

from ..structures import CroppedBitMasks, MaskCrop
from ..structures.rle import decode_crop
from . import transforms as T
from .bad_input import KIND_CORRUPT_IMAGE, KIND_IMAGE_SIZE, KIND_MISSING_IMAGE, BadAnnotationError
from .transforms.augmentation_impl import ArgumentOutOfRangeError

IMAGE_FORMATS = ("BGR", "RGB", "L")
MASK_FORMATS = ("polygon", "bitmask")
# Images whose values lie outside the 8-bit range (16-bit microscopy, floats of other ranges) are
# stretched to 8 bits between these percentiles of the image's own values.
UINT16_PERCENTILES = (0.1, 99.9)


class UnusableImageError(ValueError):
    """An image array the model cannot take: ``source`` names it (a file, "image 2") and
    ``problem`` says what is wrong and what to do."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def _is_numeric(dtype: np.dtype) -> bool:
    return dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)


def _check_finite(image: np.ndarray, source: str) -> None:
    """Raise ``UnusableImageError`` saying how many pixels hold a NaN or infinity, and where the
    first one is."""
    bad = ~np.isfinite(image)
    if bad.ndim == 3:
        bad = bad.any(axis=2)
    count = int(np.count_nonzero(bad))
    if not count:
        return
    row, column = np.argwhere(bad)[0]
    raise UnusableImageError(
        source,
        f"{count} of {bad.size} pixels have a NaN or infinite value (the first at row {row}, column {column}: "
        f"{image[row, column].tolist()}); the model needs finite values: replace them (for instance with "
        "numpy.nan_to_num) or fix whatever produced the image",
    )


def _check_pixels(image: np.ndarray, source: str) -> None:
    """Raise ``UnusableImageError`` unless ``image`` has pixels, numeric values and no NaN or infinity."""
    if image.size == 0:
        raise UnusableImageError(
            source,
            f"the image has no pixels (shape {image.shape}); an empty crop or slice gives this: "
            "check how the array was made",
        )
    if not _is_numeric(image.dtype):
        raise UnusableImageError(
            source, f"pixel values of type {image.dtype} are not supported; give bool, integer or float values"
        )
    if np.issubdtype(image.dtype, np.floating):
        _check_finite(image, source)


def _working_float(dtype: np.dtype) -> type:
    """float64 for float64 (and wider) images, whose values may lie beyond float32's range; float32 otherwise."""
    return np.float64 if np.issubdtype(dtype, np.floating) and dtype.itemsize >= 8 else np.float32


def _eight_bit_scale(image: np.ndarray) -> Optional[float]:
    """What to multiply ``image`` by to get 8-bit values: 1 for signed integers or floats within
    0..255, 255 for floats within [0, 1]; None when the values need the percentile stretch, as
    unsigned 16-bit (and wider) sensor data always does, whatever its range."""
    if np.issubdtype(image.dtype, np.unsignedinteger) and image.dtype.itemsize >= 2:
        return None
    low, high = image.min(), image.max()
    if low < 0 or high > 255:
        return None
    return 255.0 if high <= 1 and np.issubdtype(image.dtype, np.floating) else 1.0


def uint8_conversion(sample: np.ndarray, source: str = "image") -> Callable[[np.ndarray], np.ndarray]:
    """The mapping to uint8 that the rules of ``convert_image_to_model_format`` choose for
    ``sample``, as a function that applies that same mapping to other arrays: the tiles of an
    image too large to convert at once map alike when ``sample`` represents the whole image (its
    coarsest level, or pixels drawn from all over it). Values outside the sample's range clip.
    Raises ``UnusableImageError`` naming ``source`` for a sample without pixels, with non-numeric
    values, or with a NaN or infinite value."""
    _check_pixels(sample, source)
    if sample.dtype == np.uint8:
        return lambda image: image
    if sample.dtype == np.bool_:
        return lambda image: np.where(image, np.uint8(255), np.uint8(0))
    working = _working_float(sample.dtype)
    scale = _eight_bit_scale(sample)
    if scale is None:
        low, high = np.percentile(sample.astype(working), UINT16_PERCENTILES)
        if high <= low:
            return lambda image: np.zeros(image.shape, dtype=np.uint8)
        gain = 255.0 / (high - low)
        return lambda image: np.clip((image.astype(working) - low) * gain + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(sample.dtype, np.integer):
        return lambda image: np.clip(image, 0, 255).astype(np.uint8)
    return lambda image: np.clip(np.rint(image.astype(working) * scale), 0, 255).astype(np.uint8)


def scale_to_uint8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """``image`` (any shape) as uint8, by the pixel-value rules stated in
    ``convert_image_to_model_format``. Raises ``UnusableImageError`` naming ``source`` for an
    image without pixels, with non-numeric values, or with a NaN or infinite value."""
    return uint8_conversion(image, source)(image)


def _check_layout(image: Any, source: str) -> None:
    if (
        not isinstance(image, np.ndarray)
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] not in (1, 3, 4))
    ):
        got = f"shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise UnusableImageError(source, f"expected an (H, W) or (H, W, C) image with C in 1, 3, 4; got {got}")


def convert_image_to_model_format(image: np.ndarray, format: str, source: str = "image") -> np.ndarray:
    """``image`` as the model takes it: (H, W, 3) uint8 for ``format`` "BGR" or "RGB", (H, W, 1)
    uint8 for "L". This docstring is the one statement of the input-image contract, which
    ``read_image``, ``DefaultPredictor`` and the data pipeline follow.

    Channels: (H, W) and (H, W, 1) images are grey and become three equal channels; a fourth
    (alpha) channel is dropped; colour channels must already be in ``format``'s order (a colour
    image given for "L" is taken as BGR).

    Pixel values, by dtype:

    - uint8: taken as is.
    - bool: False is 0, True is 255.
    - uint16, uint32, uint64 (16-bit microscopy and other sensor data, as image files store it):
      stretched, whatever the range (a dim exposure too): the values between the image's 0.1th
      and 99.9th percentiles (``UINT16_PERCENTILES``, over all channels together, so colours keep
      their balance) map linearly onto 0..255 and the rest are clipped; a constant image
      becomes 0.
    - signed integers (int8 to int64, as array arithmetic produces): when every value lies in
      0..255, taken as 8-bit values unchanged (an int64 copy of a uint8 image is that image);
      otherwise stretched as above.
    - floats: every value in [0, 1]: intensities on the 0-1 scale, multiplied by 255; else every
      value in [0, 255]: 8-bit values. Both are rounded to the nearest integer and cast to uint8
      before resizing, so a float copy of a uint8 image, on either scale, is exactly that image
      and gives the same detections (only an image of levels 0 and 1 alone is ambiguous: it is
      read on the 0-1 scale; pass it as uint8 to mean levels). Any other range is stretched as
      16-bit images are.

    Raises ``UnusableImageError`` (a ``ValueError``) whose message starts with ``source`` for a
    wrong shape, an image without pixels, non-numeric values, or any NaN or infinite value (saying
    how many pixels and where the first is); ``ValueError`` for an unknown ``format``.
    """
    if format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {format!r}")
    _check_layout(image, source)
    image = scale_to_uint8(image, source)
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

    Files of any depth OpenCV decodes (8- and 16-bit PNG, float TIFF, ...), grey, colour or
    RGBA, are converted by the contract of ``convert_image_to_model_format``; EXIF orientation is
    applied. A missing or undecodable file, or one whose pixels break that contract (a NaN in a
    float TIFF, say), raises ``BadAnnotationError`` naming it (kind "missing image file" or
    "corrupt image file"), which the data pipeline's ``ON_BAD_ANNOTATION`` policy skips and counts.
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
    try:
        return convert_image_to_model_format(image, format, source=file_name)
    except UnusableImageError as e:
        raise BadAnnotationError(file_name, "image", e.problem, KIND_CORRUPT_IMAGE) from None


def model_image_to_rgb(image: torch.Tensor, format: str) -> np.ndarray:
    """The inverse of the mapper's image layout, for drawing what the model sees: a dataset
    mapper's ``"image"``, a (C, H, W) uint8 tensor in ``format`` (the config's INPUT.FORMAT:
    "BGR", "RGB" or "L"), as an (H, W, 3) RGB uint8 array, or (H, W) for "L". Raises
    ``ValueError`` for an unknown ``format``."""
    if format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {format!r}")
    array = image.detach().cpu().numpy().transpose(1, 2, 0)
    if format == "BGR":
        return np.ascontiguousarray(array[:, :, ::-1])
    if format == "L":
        return array[:, :, 0]
    return array


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
            KIND_IMAGE_SIZE,
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


def segmentation_to_mask_crop(segmentation: Any, image_size: Optional[Tuple[int, int]] = None) -> MaskCrop:
    """A ``MaskCrop`` from an RLE dict, a full (H, W) mask array (which must be of
    ``image_size`` when that is given) or a ``MaskCrop``."""
    if isinstance(segmentation, MaskCrop):
        return segmentation
    if isinstance(segmentation, dict):
        return decode_crop(segmentation)
    if isinstance(segmentation, np.ndarray):
        if image_size is not None and segmentation.shape != tuple(image_size):
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
    """Polygons as a list of flat arrays; a mask as a ``MaskCrop`` through ``resampler``, or
    without one as the full transformed array (an RLE decoded to uint8 first)."""
    if isinstance(segm, list):
        polygons = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segm]
        return [p.reshape(-1) for p in transforms.apply_polygons(polygons)]
    if resampler is not None:
        return resampler(segmentation_to_mask_crop(segm, resampler.input_size))
    full = segm if isinstance(segm, np.ndarray) else segmentation_to_mask_crop(segm).to_array().astype(np.uint8)
    return transforms.apply_segmentation(full)


def transform_keypoint_annotations(
    keypoints: Any,
    transforms: T.TransformList,
    image_size: Tuple[int, int],
    keypoint_hflip_indices: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Keypoints (flat or (K, 3) ``[x, y, visibility]``) moved by ``transforms`` onto an image of
    ``image_size``, as a (K, 3) float64 array. A keypoint that lands outside the image becomes
    invisible, and an invisible keypoint is all zeros. An odd number of horizontal flips swaps
    left and right keypoints by ``keypoint_hflip_indices``, which is then required."""
    points = np.array(keypoints, dtype=np.float64).reshape(-1, 3)
    points[:, :2] = transforms.apply_coords(points[:, :2].copy())
    height, width = image_size
    inside = (points[:, 0] >= 0) & (points[:, 0] <= width) & (points[:, 1] >= 0) & (points[:, 1] <= height)
    points[~inside, 2] = 0
    if sum(isinstance(t, T.HFlipTransform) for t in transforms.transforms) % 2:
        if keypoint_hflip_indices is None or len(keypoint_hflip_indices) != len(points):
            raise ValueError(f"a horizontal flip of {len(points)} keypoints needs as many keypoint_hflip_indices")
        points = points[np.asarray(keypoint_hflip_indices)]
    points[points[:, 2] == 0] = 0
    return points


def transform_annotations(
    annos: Sequence[Mapping[str, Any]],
    transforms: Union[T.Transform, Sequence[T.Transform]],
    image_size: Tuple[int, int],
    *,
    resampler: Optional[T.MaskCropResampler] = None,
    input_size: Optional[Tuple[int, int]] = None,
    keypoint_hflip_indices: Optional[np.ndarray] = None,
) -> List[Dict[str, Any]]:
    """New annotation dicts moved by ``transforms`` onto an image of ``image_size``:
    ``bbox`` transformed, clipped to the image and in XYXY mode; polygons transformed (a list
    of flat arrays); masks (RLE, arrays, ``MaskCrop``) as a transformed ``MaskCrop`` when the
    ``resampler`` of the image, or ``input_size`` (the image's size before the transforms) to
    build it, is given, else as the full transformed array; ``keypoints`` as
    ``transform_keypoint_annotations`` moves them.
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
        if "keypoints" in anno:
            moved["keypoints"] = transform_keypoint_annotations(
                anno["keypoints"], transforms, image_size, keypoint_hflip_indices
            )
        out.append(moved)
    return out


def transform_instance_annotations(
    annotation: Mapping[str, Any],
    transforms: Union[T.Transform, Sequence[T.Transform]],
    image_size: Tuple[int, int],
    *,
    keypoint_hflip_indices: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """One annotation moved by ``transforms`` (see ``transform_annotations``); a mask comes
    back as the full transformed array. The input is left unchanged."""
    return transform_annotations([annotation], transforms, image_size, keypoint_hflip_indices=keypoint_hflip_indices)[0]


def _bitmasks(segms: Sequence[Any], image_size: Tuple[int, int]) -> Union[BitMasks, CroppedBitMasks]:
    """Full mask arrays stacked as given into ``BitMasks``; otherwise (polygons, RLE, crops)
    ``CroppedBitMasks``."""
    if all(isinstance(s, np.ndarray) for s in segms):
        return BitMasks(torch.stack([torch.from_numpy(np.ascontiguousarray(s)) for s in segms]))
    crops = [
        MaskCrop.from_polygons(s, image_size) if isinstance(s, list) else segmentation_to_mask_crop(s, image_size)
        for s in segms
    ]
    return CroppedBitMasks(crops, image_size)


def annotations_to_instances(
    annos: Sequence[Mapping[str, Any]], image_size: Tuple[int, int], mask_format: str = "polygon"
) -> Instances:
    """``Instances`` with ``gt_boxes``, ``gt_classes`` and (when the annotations have
    segmentations) ``gt_masks`` from transformed annotations (XYXY boxes).

    ``mask_format="polygon"`` gives ``PolygonMasks`` and needs polygon segmentations;
    "bitmask" gives ``BitMasks`` when every segmentation is a full mask array, else
    ``CroppedBitMasks`` (a memory-light ``BitMasks``) from polygons, RLE or ``MaskCrop``s.
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
    if mask_format == "bitmask":
        target.gt_masks = _bitmasks(segms, image_size)
        return target
    if not all(isinstance(s, list) for s in segms):
        raise ValueError(
            "INPUT.MASK_FORMAT='polygon' needs polygon segmentations, but this image has masks "
            "(RLE or arrays); set INPUT.MASK_FORMAT=bitmask"
        )
    target.gt_masks = PolygonMasks(segms)
    return target


def gen_crop_transform_with_instance(
    crop_size: Tuple[int, int], image_size: Tuple[int, int], instance: Mapping[str, Any]
) -> T.CropTransform:
    """A random ``crop_size = (h, w)`` window of an image of ``image_size = (h, w)`` that
    contains the centre of ``instance``'s box. Its top-left corner is drawn uniformly among the
    integer positions that keep the window inside the image and the centre (rounded outwards)
    inside the window: ``np.random.randint`` for the row, then the column.

    Raises ``ArgumentOutOfRangeError`` (a ``ValueError``, and an ``AssertionError`` as in
    Detectron2) when the box centre lies outside the image or the window is larger than it.
    """
    crop = np.array([int(crop_size[0]), int(crop_size[1])])
    limits = np.array([int(image_size[0]), int(image_size[1])])
    x0, y0, x1, y1 = boxes_xyxy([instance])[0]
    centre = np.array([(y0 + y1) / 2, (x0 + x1) / 2])
    if (centre > limits).any():
        raise ArgumentOutOfRangeError(
            f"the instance's box centre (y, x) {tuple(centre)} lies outside the {image_size} image"
        )
    if (crop > limits).any():
        raise ArgumentOutOfRangeError(f"a {tuple(crop)} crop does not fit the {tuple(limits)} image")
    lowest = np.maximum(np.floor(centre).astype(np.int64) - crop, 0)
    highest = np.minimum(limits - crop, np.ceil(centre).astype(np.int64))
    top = np.random.randint(lowest[0], highest[0] + 1)
    left = np.random.randint(lowest[1], highest[1] + 1)
    return T.CropTransform(int(left), int(top), int(crop[1]), int(crop[0]))


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
    "UnusableImageError",
    "annotations_to_instances",
    "boxes_xyxy",
    "build_augmentation",
    "check_image_size",
    "convert_image_to_model_format",
    "filter_empty_instances",
    "gen_crop_transform_with_instance",
    "model_image_to_rgb",
    "read_image",
    "scale_to_uint8",
    "segmentation_to_mask_crop",
    "transform_annotations",
    "transform_instance_annotations",
    "transform_keypoint_annotations",
]
