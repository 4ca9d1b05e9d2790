"""``TiledPredictor``: run a trained model over an image of any size, tile by tile, and get every
object once with its whole mask."""

from __future__ import annotations

import copy
import math
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from ..data.detection_utils import convert_image_to_model_format, uint8_conversion
from ..data.transforms import ResizeTransform
from ..structures import Instances
from ..tiling.grid import Tile, TileGrid
from ..tiling.merge import MergeReport, TileDetections, merge_tile_detections
from ..tiling.readers import ArrayLargeImage, LargeImage, open_large_image
from ..utils.memory import GrowthTrimmer
from .predictor import DefaultPredictor

# Pixels read to choose one 8-bit mapping for a whole non-8-bit image: its coarsest pyramid level
# when that is this small, else this many pixels in windows spread over full resolution.
_INTENSITY_SAMPLE_PIXELS = 4_000_000
_INTENSITY_SAMPLE_WINDOW = 256


def _batches(tiles: Sequence[Tile], size: int) -> Iterator[List[Tile]]:
    for start in range(0, len(tiles), size):
        yield list(tiles[start : start + size])


def _intensity_sample(image: LargeImage) -> np.ndarray:
    """Pixels representing the whole image: its coarsest level if small enough, else windows on
    a regular grid over level 0."""
    height, width = image.levels[-1]
    if height * width <= _INTENSITY_SAMPLE_PIXELS:
        return image.read_region(0, 0, width, height, level=len(image.levels) - 1)
    side = _INTENSITY_SAMPLE_WINDOW
    per_axis = max(1, int(np.sqrt(_INTENSITY_SAMPLE_PIXELS / side**2)))
    ys = np.linspace(0, max(image.height - side, 0), per_axis).astype(int)
    xs = np.linspace(0, max(image.width - side, 0), per_axis).astype(int)
    windows = [
        image.read_region(int(x), int(y), min(side, image.width), min(side, image.height)).reshape(-1, image.channels)
        for y in ys
        for x in xs
    ]
    return np.concatenate(windows)


def tile_settings(
    cfg: DictConfig,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
    scale: Optional[float] = None,
    batch_size: Optional[int] = None,
) -> Tuple[int, int, float, int]:
    """``(tile_size, overlap, scale, batch_size)``: the arguments given, else ``cfg.TEST.TILE``
    (a tile ``SIZE`` of 0 means the test size, ``INPUT.MIN_SIZE_TEST``, or ``MAX_SIZE_TEST``
    when that is 0). Raises ``ValueError`` for a size or overlap that cannot tile, or a scale or
    batch size not above 0."""
    settings = cfg.TEST.TILE
    default_size = settings.SIZE or cfg.INPUT.MIN_SIZE_TEST or cfg.INPUT.MAX_SIZE_TEST
    size = int(tile_size if tile_size is not None else default_size)
    overlap = int(overlap if overlap is not None else settings.OVERLAP)
    scale = float(scale if scale is not None else settings.SCALE)
    batch_size = int(batch_size if batch_size is not None else settings.BATCH_SIZE)
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(
            f"tiles of {size} pixels cannot overlap by {overlap}: the overlap must be 0 or more and below the tile size"
        )
    if scale <= 0 or batch_size <= 0:
        raise ValueError(f"the tile scale and batch size must be above 0, got {scale} and {batch_size}")
    return size, overlap, scale, batch_size


def proposal_scale(cfg: DictConfig, tile_size: int) -> float:
    """How many times the area of the model's test input a tile of ``tile_size`` model pixels
    covers, at least 1: the factor ``TiledPredictor`` multiplies the RPN's proposal budgets
    (``MODEL.RPN.PRE_NMS_TOPK_TEST``, ``POST_NMS_TOPK_TEST``) by. The test input side is
    ``INPUT.MIN_SIZE_TEST`` (or ``MAX_SIZE_TEST`` when that is 0); 1 when both are 0."""
    reference = cfg.INPUT.MIN_SIZE_TEST or cfg.INPUT.MAX_SIZE_TEST
    if not reference:
        return 1.0
    return max(1.0, (tile_size / reference) ** 2)


class TiledPredictor:
    """Predicts on images far larger than the model input (whole-slide scans, mosaics, aerial
    images) by running the model of ``cfg`` on overlapping tiles and merging their detections
    (``project.tiling.merge``): each object comes once, with its whole mask.

    Tiles are ``TEST.TILE.SIZE`` model-input pixels square (default: the test scale,
    ``INPUT.MIN_SIZE_TEST``) and overlap by ``TEST.TILE.OVERLAP``; the image is resized by
    ``TEST.TILE.SCALE`` tile by tile. Arguments given here override the config. Images are read
    a tile at a time (``project.tiling.readers``: TIFF, OME-TIFF and whole-slide files lazily),
    and masks stay crops: memory grows with the number of objects, not with the image area.

    Call it with a path (or an open ``LargeImage``), or with an (H, W, C) numpy array in
    ``INPUT.FORMAT`` channel order as ``DefaultPredictor`` takes. Returns ``{"instances":
    Instances}`` of the whole image, best score first, with ``pred_boxes``, ``scores``,
    ``pred_classes`` and ``pred_masks`` as a ``CroppedBitMasks``. Images that are not 8-bit get
    one mapping to 8 bits for the whole image (the percentile stretch of
    ``convert_image_to_model_format`` over a sample of it), so tiles are not stretched apart.
    ``last_report`` and ``last_seconds`` describe the last call.

    Tiles larger than the model's test input get proportionally more region proposals: the RPN's
    ``PRE_NMS_TOPK_TEST`` and ``POST_NMS_TOPK_TEST`` are multiplied by the tile's area over the
    test input's (``proposal_scale``), as the config's budgets are meant for one test-size image:
    without that, a tile of twice the test side has a quarter of the proposals per unit area and
    misses objects. ``TEST.DETECTIONS_PER_IMAGE`` stays the limit per tile.
    """

    def __init__(
        self,
        cfg: DictConfig,
        tile_size: Optional[int] = None,
        overlap: Optional[int] = None,
        scale: Optional[float] = None,
        batch_size: Optional[int] = None,
    ):
        self.tile_size, self.overlap, self.scale, self.batch_size = tile_settings(
            cfg, tile_size, overlap, scale, batch_size
        )
        cfg = copy.deepcopy(cfg)
        cfg.TEST.PRED_MASK_FORMAT = "crop"
        self.proposal_scale = proposal_scale(cfg, self.tile_size)
        for key in ("PRE_NMS_TOPK_TEST", "POST_NMS_TOPK_TEST"):
            cfg.MODEL.RPN[key] = math.ceil(cfg.MODEL.RPN[key] * self.proposal_scale)
        self.cfg = cfg
        self.model = DefaultPredictor(cfg).model
        self.join_threshold = float(cfg.TEST.TILE.JOIN_THRESHOLD)
        self.nms_threshold = float(cfg.TEST.TILE.NMS_THRESHOLD)
        self.input_format = cfg.INPUT.FORMAT
        self.last_report: Optional[MergeReport] = None
        self.last_seconds: Dict[str, float] = {}

    def grid(self, image_size: Sequence[int]) -> TileGrid:
        """The tiles over an image of ``(H, W)`` pixels: ``tile_size`` and ``overlap`` taken back
        to image pixels through ``scale``."""
        return TileGrid(
            (int(image_size[0]), int(image_size[1])),
            max(1, round(self.tile_size / self.scale)),
            round(self.overlap / self.scale),
        )

    def _tile_input(self, image: LargeImage, tile: Tile, to_uint8) -> Dict[str, object]:
        x0, y0, x1, y1 = tile.window
        pixels = to_uint8(image.read_region(x0, y0, x1 - x0, y1 - y0))
        if pixels.ndim == 3 and pixels.shape[2] >= 3:
            pixels = pixels[..., :3]
            wanted = "RGB" if self.input_format == "RGB" else "BGR"  # "L" takes colour as BGR
            if image.channel_order != wanted:
                pixels = pixels[..., ::-1]
        pixels = convert_image_to_model_format(pixels, self.input_format, source=f"{image.path}, tile {tile.window}")
        height, width = pixels.shape[:2]
        if self.scale != 1.0:
            resize = ResizeTransform(height, width, round(height * self.scale), round(width * self.scale))
            pixels = resize.apply_image(pixels)
        tensor = torch.as_tensor(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    @torch.inference_mode()
    def predict(self, image: LargeImage, progress: bool = False) -> Dict[str, Instances]:
        """Tiled prediction on an open ``LargeImage``."""
        start = time.perf_counter()
        image_size = (image.height, image.width)
        grid = self.grid(image_size)
        # 8-bit pixels map to themselves; other types get one mapping from a sample of the image.
        sample = image.read_region(0, 0, 1, 1) if image.dtype == np.uint8 else _intensity_sample(image)
        to_uint8 = uint8_conversion(sample, source=image.path)
        detections: List[TileDetections] = []
        model_seconds = 0.0
        # Freed feature maps between the masks kept would stay resident: hand them back as they pile up.
        trim = GrowthTrimmer()
        with tqdm(total=len(grid), unit="tile", disable=not progress, desc=image.path) as bar:
            for batch in _batches(grid.tiles, self.batch_size):
                inputs = [self._tile_input(image, tile, to_uint8) for tile in batch]
                model_start = time.perf_counter()
                outputs = self.model(inputs)
                model_seconds += time.perf_counter() - model_start
                for tile, output in zip(batch, outputs):
                    detections.append(TileDetections.from_instances(tile, output["instances"], image_size))
                del inputs, outputs
                trim()
                bar.update(len(batch))
        merge_start = time.perf_counter()
        instances, self.last_report = merge_tile_detections(
            detections, image_size, grid.tile, self.join_threshold, self.nms_threshold
        )
        end = time.perf_counter()
        self.last_seconds = {
            "total": end - start,
            "model": model_seconds,
            "merge": end - merge_start,
            "tiles": float(len(grid)),
        }
        return {"instances": instances}

    def __call__(self, image: Union[str, np.ndarray, LargeImage], progress: bool = False) -> Dict[str, Instances]:
        if isinstance(image, LargeImage):
            return self.predict(image, progress)
        if isinstance(image, np.ndarray):
            return self.predict(ArrayLargeImage(image, channel_order=self.input_format), progress)
        with open_large_image(str(image)) as opened:
            return self.predict(opened, progress)
