"""Datasets registered when ``project.data`` is imported. Registration reads no file: COCO is
read, and the demo datasets drawn, on first use.

- ``coco_2017_train``, ``coco_2017_val``: Detectron2's layout under ``$DETECTRON2_DATASETS``
  (default ``datasets/``): ``coco/annotations/instances_{train,val}2017.json`` and
  ``coco/{train,val}2017/``.
- ``cells_demo_{train,val}``, ``road_demo_{train,val}``: drawn by this project, see
  ``cells_demo`` and ``road_demo``.
"""

from __future__ import annotations

import os

from ..catalog import DatasetCatalog
from .coco import register_coco_instances
from .demo.cells import cells_demo_splits
from .demo.generated import register_generated_dataset
from .demo.roads import road_demo_splits

# The 80 COCO instance categories: (dataset id, name), in id order.
COCO_CATEGORIES = (
    (1, "person"),
    (2, "bicycle"),
    (3, "car"),
    (4, "motorcycle"),
    (5, "airplane"),
    (6, "bus"),
    (7, "train"),
    (8, "truck"),
    (9, "boat"),
    (10, "traffic light"),
    (11, "fire hydrant"),
    (13, "stop sign"),
    (14, "parking meter"),
    (15, "bench"),
    (16, "bird"),
    (17, "cat"),
    (18, "dog"),
    (19, "horse"),
    (20, "sheep"),
    (21, "cow"),
    (22, "elephant"),
    (23, "bear"),
    (24, "zebra"),
    (25, "giraffe"),
    (27, "backpack"),
    (28, "umbrella"),
    (31, "handbag"),
    (32, "tie"),
    (33, "suitcase"),
    (34, "frisbee"),
    (35, "skis"),
    (36, "snowboard"),
    (37, "sports ball"),
    (38, "kite"),
    (39, "baseball bat"),
    (40, "baseball glove"),
    (41, "skateboard"),
    (42, "surfboard"),
    (43, "tennis racket"),
    (44, "bottle"),
    (46, "wine glass"),
    (47, "cup"),
    (48, "fork"),
    (49, "knife"),
    (50, "spoon"),
    (51, "bowl"),
    (52, "banana"),
    (53, "apple"),
    (54, "sandwich"),
    (55, "orange"),
    (56, "broccoli"),
    (57, "carrot"),
    (58, "hot dog"),
    (59, "pizza"),
    (60, "donut"),
    (61, "cake"),
    (62, "chair"),
    (63, "couch"),
    (64, "potted plant"),
    (65, "bed"),
    (67, "dining table"),
    (70, "toilet"),
    (72, "tv"),
    (73, "laptop"),
    (74, "mouse"),
    (75, "remote"),
    (76, "keyboard"),
    (77, "cell phone"),
    (78, "microwave"),
    (79, "oven"),
    (80, "toaster"),
    (81, "sink"),
    (82, "refrigerator"),
    (84, "book"),
    (85, "clock"),
    (86, "vase"),
    (87, "scissors"),
    (88, "teddy bear"),
    (89, "hair drier"),
    (90, "toothbrush"),
)

COCO_2017_SPLITS = {
    "coco_2017_train": ("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": ("coco/val2017", "coco/annotations/instances_val2017.json"),
    # The first 100 val images, the subset quick evaluations and tests use.
    "coco_2017_val_100": ("coco/val2017", "coco/annotations/instances_val2017_100.json"),
}


def datasets_root() -> str:
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


def register_all_coco(root: str) -> None:
    metadata = {
        "thing_classes": [name for _, name in COCO_CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {cid: i for i, (cid, _) in enumerate(COCO_CATEGORIES)},
    }
    for name, (image_dir, json_file) in COCO_2017_SPLITS.items():
        register_coco_instances(name, metadata, os.path.join(root, json_file), os.path.join(root, image_dir))


def register_all_builtin() -> None:
    """Register the built-in datasets once (repeated calls do nothing)."""
    if "coco_2017_train" in DatasetCatalog:
        return
    register_all_coco(datasets_root())
    register_generated_dataset(cells_demo_splits())
    register_generated_dataset(road_demo_splits())
