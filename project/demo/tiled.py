"""The demo's ``--tile`` mode: each input image is read and predicted tile by tile
(``TiledPredictor``), so whole-slide scans and TIFFs larger than memory work, and its objects are
written as files that slide viewers and GIS tools open. Per image, under ``--output`` with the
inputs' folder layout:

- ``<stem>.json``: COCO results (RLE masks, the model's class ids, ``file_name``);
- ``<stem>_labels.tif``: a tiled uint32 label TIFF, id k + 1 on the mask of result k (QuPath,
  napari, Fiji), pyramidal when the input is;
- ``<stem>.geojson``: each mask's outline as a polygon with its class name (QuPath, QGIS);
- ``<stem>.jpg``: the objects drawn on the image; an image of more than 64 megapixels is drawn
  reduced by a whole factor to at most that (read window by window or from its pyramid), its
  objects as masks and outlines only.

An input that cannot be read is skipped and counted, as in the image mode; when it is the only
input, its message ends the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple

import numpy as np
from omegaconf import DictConfig

from ..data.detection_utils import UnusableImageError
from ..engine import cli
from ..engine.tiled_predictor import TiledPredictor, tile_settings
from ..evaluation.coco_evaluation import instances_to_coco_json
from ..structures import Instances
from ..tiling.geojson import write_geojson
from ..tiling.label_tiff import write_label_tiff
from ..tiling.preview import read_reduced, reduce_instances, reduction_factor
from ..tiling.readers import WHOLE_SLIDE_FORMATS, LargeImage, LargeImageError, open_large_image
from ..visualization import Visualizer
from .cli import TILED_PICTURE_MAX_PIXELS, class_ids, class_names_of, drawing_options, select_classes, skipped_lines
from .pipeline import Timings
from .sources import IMAGE_EXTENSIONS, DemoInputError, expand_image_inputs, is_video
from .writers import write_image

logger = logging.getLogger("project.demo")

# Errors of one input image: it is skipped and counted (when it is the only input, the error ends
# the command).
SKIPPED_ERRORS = (LargeImageError, FileNotFoundError, UnusableImageError)
_JPEG_MAX_SIDE = 65_535
_LABEL_TIFF_TILE = 512


@dataclass
class TiledTimings(Timings):
    """``Timings`` of a --tile run: ``frames`` counts the images done, ``decode`` is reading and
    preparing tiles, ``merge`` joining the tiles' detections, ``draw`` the pictures and
    ``encode`` writing the files. ``tiles`` and ``objects`` are totals; ``reduced_pictures``
    lists (image, factor) for images drawn reduced."""

    merge: float = 0.0
    tiles: int = 0
    objects: int = 0
    reduced_pictures: List[Tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        figures = super().as_dict()
        figures["ms_per_frame"]["merge"] = self.merge / max(1, self.frames) * 1000
        figures.update(
            tiles=self.tiles,
            tiles_per_s=self.tiles / self.wall if self.wall > 0 else 0.0,
            objects=self.objects,
            reduced_pictures=len(self.reduced_pictures),
        )
        return figures


def tiled_inputs(args: argparse.Namespace) -> List[Tuple[Path, str]]:
    """``(path, name)`` of the images --tile runs on. Raises ``DemoInputError`` for a video or
    webcam, without --input or --output, and with --save-instances."""
    videos = ([args.video_input] if args.video_input else []) + [p for p in args.input or [] if is_video(p)]
    if args.webcam is not None or videos:
        what = f"webcam {args.webcam}" if args.webcam is not None else f"the video {videos[0]}"
        raise DemoInputError(
            f"--tile works on images (files, glob patterns, folders), not on {what}; run it without --tile"
        )
    if not args.input:
        raise DemoInputError("--tile needs --input: image files, glob patterns or folders")
    if not args.output:
        raise DemoInputError("--tile needs --output: the folder the results are written to")
    if args.save_instances:
        raise DemoInputError(
            "--save-instances does not apply with --tile, which writes COCO results, a label TIFF and GeoJSON "
            "per image anyway"
        )
    files = expand_image_inputs(args.input, IMAGE_EXTENSIONS | set(WHOLE_SLIDE_FORMATS))  # slides too
    return files[: args.max_frames] if args.max_frames else files


def tiled_predictor(args: argparse.Namespace, cfg: DictConfig) -> TiledPredictor:
    """``TiledPredictor`` of ``cfg`` with --tile-size, --tile-overlap, --tile-scale and
    --batch-size over ``TEST.TILE``. Raises ``DemoInputError`` for settings it cannot use."""
    try:
        settings = tile_settings(cfg, args.tile_size, args.tile_overlap, args.tile_scale, args.batch_size)
    except ValueError as e:
        raise DemoInputError(f"{e} (see --tile-size, --tile-overlap, --tile-scale, --batch-size)") from None
    size, overlap, scale, batch_size = settings
    return TiledPredictor(cfg, tile_size=size, overlap=overlap, scale=scale, batch_size=batch_size)


def _class_names(names: Optional[Sequence[str]], instances: Instances, num_classes: int) -> List[str]:
    """A name for every class id in ``instances``: the dataset's, else ``class <id>``."""
    count = max(num_classes, int(instances.pred_classes.max()) + 1 if len(instances) else 0)
    return [names[i] if names is not None and i < len(names) else f"class {i}" for i in range(count)]


def _image_line(name: str, seconds: dict, report: dict, objects: int) -> str:
    tiles = int(seconds["tiles"])
    return (
        f"{name}: {tiles} tiles in {seconds['total']:.1f} s ({tiles / max(seconds['total'], 1e-9):.1f} tiles/s), "
        f"{objects} objects; merge: {report['fragments_joined']} fragments joined into "
        f"{report['objects_from_fragments']} objects, {report['suppressed']} duplicates suppressed"
    )


class TiledResultWriter:
    """Writes the result files of one image after another under ``folder``; counts into
    ``timings`` the time spent drawing and writing, and the images left without a picture."""

    def __init__(
        self,
        folder: Path,
        names: Optional[List[str]],
        num_classes: int,
        args: argparse.Namespace,
        timings: TiledTimings,
    ):
        self.folder, self.names, self.num_classes = folder, names, num_classes
        self.pyramid_levels: Optional[int] = args.pyramid_levels
        self.drawing = drawing_options(args)
        self.timings = timings
        self.taken: Set[str] = set()

    def stem(self, name: str) -> Path:
        """``folder/<name without extension>``, numbered when this run already wrote that stem
        (two inputs of one name)."""
        return Path(cli.picture_path(str(self.folder), Path(name).with_suffix("").as_posix(), self.taken)).with_suffix(
            ""
        )

    def write(self, index: int, name: str, instances: Instances, levels: int, picture: Picture) -> Path:
        """The results of image ``index`` (``levels``: how many resolutions the input has), and
        its objects drawn on ``picture``. Returns the files' stem."""
        stem = self.stem(name)
        stem.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        results = instances_to_coco_json(instances, index)
        for result in results:
            result["file_name"] = name
        with open(f"{stem}.json", "w") as f:
            json.dump(results, f)
        pyramid = levels - 1 if self.pyramid_levels is None else self.pyramid_levels
        write_label_tiff(f"{stem}_labels.tif", instances, tile_size=_LABEL_TIFF_TILE, pyramid_levels=pyramid)
        write_geojson(f"{stem}.geojson", instances, _class_names(self.names, instances, self.num_classes))
        self.timings.encode += time.perf_counter() - start
        self._draw(Path(f"{stem}.jpg"), picture, instances)
        return stem

    def _draw(self, path: Path, picture: Picture, instances: Instances) -> None:
        start = time.perf_counter()
        metadata = {"thing_classes": self.names} if self.names else None
        drawing = self.drawing
        if picture.factor > 1:  # objects shrunk this much have no room for boxes and labels
            instances = reduce_instances(instances, picture.factor)
            drawing = dict(drawing, boxes=False, labels=False)
        drawn = Visualizer(picture.pixels, metadata, **drawing).draw_instance_predictions(instances).get_image()
        drawn_at = time.perf_counter()
        write_image(path, np.ascontiguousarray(drawn[:, :, ::-1]))
        self.timings.draw += drawn_at - start
        self.timings.encode += time.perf_counter() - drawn_at


@dataclass
class Picture:
    """The pixels the objects of an image are drawn on: the image reduced by ``factor`` (1: at
    full resolution); ``seconds`` it took to read them."""

    pixels: np.ndarray
    factor: int
    seconds: float


def read_picture(image: LargeImage) -> Picture:
    """``image`` at full resolution when it has at most ``TILED_PICTURE_MAX_PIXELS`` pixels and
    fits a JPEG, else reduced by the smallest whole factor that makes it so."""
    start = time.perf_counter()
    factor = reduction_factor(image.height, image.width, TILED_PICTURE_MAX_PIXELS, _JPEG_MAX_SIDE)
    return Picture(read_reduced(image, factor), factor, time.perf_counter() - start)


def _count(timings: TiledTimings, seconds: dict, objects: int) -> None:
    timings.frames += 1
    timings.tiles += int(seconds["tiles"])
    timings.objects += objects
    timings.model += seconds["model"]
    timings.merge += seconds["merge"]
    timings.decode += seconds["total"] - seconds["model"] - seconds["merge"]


def _summary(timings: TiledTimings, output: str) -> str:
    figures = timings.as_dict()
    ms = figures["ms_per_frame"]
    lines = [
        f"demo --tile: {timings.frames} images done, {len(timings.skipped)} skipped (unreadable), "
        f"{timings.tiles} tiles ({figures['tiles_per_s']:.2f} tiles/s), {timings.objects} objects; per image: "
        f"reading {ms['decode']:.0f} ms, model {ms['model']:.0f} ms, merge {ms['merge']:.0f} ms, "
        f"drawing {ms['draw']:.0f} ms, writing {ms['encode']:.0f} ms"
    ]
    lines += skipped_lines(timings.skipped)
    lines.append(f"  results: {output} (<stem>.json, <stem>_labels.tif, <stem>.geojson, <stem>.jpg)")
    lines += [
        f"  picture of {name} reduced {factor} times on each side (at most {TILED_PICTURE_MAX_PIXELS / 1e6:g} "
        "megapixels are drawn), masks without boxes or labels; its label TIFF (QuPath, napari) and GeoJSON "
        "(QuPath, QGIS) hold every object at full resolution"
        for name, factor in timings.reduced_pictures[:10]
    ]
    if len(timings.reduced_pictures) > 10:
        lines.append(f"  ... and {len(timings.reduced_pictures) - 10} more drawn reduced")
    return "\n".join(lines)


def run_tiled(args: argparse.Namespace, cfg: DictConfig) -> TiledTimings:
    """The demo with --tile: each image of ``args.input`` predicted tile by tile and its results
    written under ``args.output`` (see the module docstring). Prints a summary and returns the
    timings; raises the user errors of ``project.demo.cli.run_demo``."""
    files = tiled_inputs(args)
    names = class_names_of(cfg)
    keep = class_ids(args.classes, names, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    cli.prepare_output_dir(args.output, "--output")
    predictor = tiled_predictor(args, cfg)
    timings = TiledTimings()
    writer = TiledResultWriter(Path(args.output), names, cfg.MODEL.ROI_HEADS.NUM_CLASSES, args, timings)
    start = time.perf_counter()
    for index, (path, name) in enumerate(files):
        try:
            with open_large_image(str(path)) as image:
                instances = select_classes(predictor(image, progress=not args.no_progress)["instances"], keep)
                levels, picture = len(image.levels), read_picture(image)
        except SKIPPED_ERRORS as error:
            if len(files) == 1:
                raise
            logger.warning("skipped %s: %s", name, error)
            timings.skipped.append((name, str(error)))
            continue
        seconds, report = predictor.last_seconds, predictor.last_report.as_dict()
        _count(timings, seconds, len(instances))
        timings.draw += picture.seconds
        if picture.factor > 1:
            timings.reduced_pictures.append((name, picture.factor))
        writer.write(index, name, instances, levels, picture)
        logger.info(_image_line(name, seconds, report, len(instances)))
    timings.wall = time.perf_counter() - start
    print(_summary(timings, args.output), file=sys.stderr)
    if timings.skipped and not timings.frames:
        raise DemoInputError(f"none of the {len(files)} input images could be read (see the skipped ones above)")
    return timings
