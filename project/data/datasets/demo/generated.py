"""Datasets drawn by the project's own code, cached on disk as COCO JSON plus PNG images.

A generator draws one image from a seeded NumPy generator; image ``i`` of a split with seed
``s`` always comes from ``np.random.default_rng([s, i])``, so a split is the same on every
machine and run. Splits are cached under ``$DETECTRON2_DATASETS/generated/<dataset>/``
(default ``datasets/generated/``), in a directory named by the generator's version, seed and
size; they are written to a temporary directory and renamed into place, so concurrent
processes never read half a split.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from project.structures import BoxMode

from ...catalog import DatasetCatalog
from ..coco import dataset_dicts_to_coco, load_coco_json, save_coco_json
from ..metadata import register_metadata
from ..records import image_record

logger = logging.getLogger(__name__)

# Draws one image: returns a BGR uint8 (H, W, 3) image and its annotations, each with
# "category_id" (class index), "segmentation" (polygons or compressed RLE) and "bbox" (XYWH).
DrawImage = Callable[[np.random.Generator], Tuple[np.ndarray, List[Dict[str, Any]]]]

ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"


def generated_root() -> str:
    return os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "generated")


@dataclass(frozen=True)
class GeneratedSplit:
    """One split of a generated dataset: ``num_images`` images drawn with ``seed``, cached under
    ``root`` (by default ``generated_root()`` when the split is defined)."""

    dataset: str
    split: str
    version: str
    seed: int
    num_images: int
    thing_classes: Tuple[str, ...]
    draw: DrawImage
    root: str = field(default_factory=generated_root)

    @property
    def name(self) -> str:
        return f"{self.dataset}_{self.split}"

    @property
    def directory(self) -> str:
        return os.path.join(self.root, self.dataset, f"{self.split}-{self.version}-seed{self.seed}-n{self.num_images}")

    @property
    def json_file(self) -> str:
        return os.path.join(self.directory, ANNOTATION_FILE)

    @property
    def image_root(self) -> str:
        return os.path.join(self.directory, IMAGE_DIR)


def generate_split(split: GeneratedSplit) -> None:
    """Draw the split into its cache directory unless it is there already."""
    if os.path.isfile(split.json_file):
        return
    tmp = f"{split.directory}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, IMAGE_DIR))
    logger.info("Drawing %d images of '%s' into %s", split.num_images, split.name, split.directory)
    dataset_dicts = []
    for index in range(split.num_images):
        image, annotations = split.draw(np.random.default_rng([split.seed, index]))
        file_name = os.path.join(tmp, IMAGE_DIR, f"{index:04d}.png")
        if not cv2.imwrite(file_name, image):
            raise OSError(f"could not write {file_name}")
        dataset_dicts.append(
            image_record(
                file_name,
                image.shape[:2],
                index + 1,
                [dict(a, bbox_mode=BoxMode.XYWH_ABS, iscrowd=0) for a in annotations],
            )
        )
    coco = dataset_dicts_to_coco(
        dataset_dicts,
        split.thing_classes,
        {i: i + 1 for i in range(len(split.thing_classes))},
        file_name_root=os.path.join(tmp, IMAGE_DIR),
    )
    save_coco_json(coco, os.path.join(tmp, ANNOTATION_FILE))
    try:
        os.rename(tmp, split.directory)
    except OSError:
        if not os.path.isfile(split.json_file):  # not a concurrent writer having won the race
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def register_generated_dataset(splits: Sequence[GeneratedSplit]) -> None:
    """Register each split under its name. Nothing is drawn at registration; the first
    ``DatasetCatalog.get`` of any split draws all the splits (so that a validation split's
    ``json_file`` exists once training data has been loaded)."""

    def load(split: GeneratedSplit) -> List[Dict[str, Any]]:
        for s in splits:
            generate_split(s)
        return load_coco_json(split.json_file, split.image_root, split.name)

    for split in splits:
        DatasetCatalog.register(split.name, lambda split=split: load(split))
        register_metadata(
            split.name,
            {"thing_classes": list(split.thing_classes)},
            json_file=split.json_file,
            image_root=split.image_root,
        )
