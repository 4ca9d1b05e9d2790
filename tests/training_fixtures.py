"""A tiny COCO dataset drawn on the fly and a tiny model config, for fast training tests.

The model keeps the real architecture (ResNet-18-FPN Mask R-CNN, the demo's) with narrow
heads and 96-px images, so an iteration takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

IMAGE_SIZE = 96


def write_tiny_coco(directory: Path, num_images: int, seed: int, disks: Optional[int] = None) -> Tuple[str, str]:
    """Draw ``num_images`` square grey images with 2-4 bright disks each (``disks`` each when
    given, at most 4) and write them with a COCO JSON of polygon annotations (one category, id
    1). Returns (json_file, image_root)."""
    rng = np.random.default_rng(seed)
    image_root = directory / "images"
    image_root.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 30, np.uint8)
        cells = rng.permutation(4)[: rng.integers(2, 5) if disks is None else disks]  # distinct quadrants
        for cell in cells:
            cx = 24 + 48 * (cell % 2) + rng.integers(-4, 5)
            cy = 24 + 48 * (cell // 2) + rng.integers(-4, 5)
            radius = int(rng.integers(8, 15))
            polygon = cv2.ellipse2Poly((int(cx), int(cy)), (radius, radius), 0, 0, 360, 20)
            cv2.fillPoly(image, [polygon], (200, 220, 210))
            x, y, w, h = cv2.boundingRect(polygon)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [x, y, w, h],
                    "area": float(cv2.contourArea(polygon)),
                    "segmentation": [polygon.reshape(-1).astype(float).tolist()],
                }
            )
        file_name = f"{image_id:03d}.png"
        cv2.imwrite(str(image_root / file_name), image)
        images.append({"id": image_id, "file_name": file_name, "height": IMAGE_SIZE, "width": IMAGE_SIZE})
    json_file = directory / "annotations.json"
    json_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "disk"}]})
    )
    return str(json_file), str(image_root)


def register_entry(name: str, json_file: str, image_root: str) -> str:
    """A ``DATASETS.REGISTER`` list element, in Hydra override syntax."""
    return f"{{NAME: {name}, FORMAT: coco, ARGS: {{json_file: '{json_file}', image_root: '{image_root}'}}}}"


def tiny_overrides(
    train: Tuple[str, str, str], test: Sequence[Tuple[str, str, str]], output_dir: str, extra: Sequence[str] = ()
) -> List[str]:
    """Overrides of the default composition for a few fast CPU iterations on ``train`` and
    evaluation on ``test`` (each ``(name, json_file, image_root)``)."""
    entries = [register_entry(*train)] + [register_entry(*dataset) for dataset in test]
    return [
        "MODEL.DEVICE=cpu",
        f"DATASETS.REGISTER=[{', '.join(entries)}]",
        f"DATASETS.TRAIN=[{train[0]}]",
        f"DATASETS.TEST=[{', '.join(dataset[0] for dataset in test)}]",
        "MODEL.ROI_HEADS.NUM_CLASSES=1",
        "MODEL.FPN.OUT_CHANNELS=32",
        "MODEL.ROI_BOX_HEAD.FC_DIM=64",
        "MODEL.ROI_MASK_HEAD.CONV_DIM=32",
        "MODEL.ROI_MASK_HEAD.NUM_CONV=1",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=32",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN=200",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN=50",
        "MODEL.RPN.PRE_NMS_TOPK_TEST=200",
        "MODEL.RPN.POST_NMS_TOPK_TEST=50",
        f"INPUT.MIN_SIZE_TRAIN=[{IMAGE_SIZE}]",
        f"INPUT.MAX_SIZE_TRAIN={IMAGE_SIZE}",
        f"INPUT.MIN_SIZE_TEST={IMAGE_SIZE}",
        f"INPUT.MAX_SIZE_TEST={IMAGE_SIZE}",
        "INPUT.RANDOM_FLIP=none",
        "SOLVER.IMS_PER_BATCH=2",
        "SOLVER.BASE_LR=0.01",
        "SOLVER.WARMUP_ITERS=2",
        "SOLVER.MAX_ITER=4",
        "SOLVER.STEPS=[3]",
        "SOLVER.CHECKPOINT_PERIOD=1000",
        "DATALOADER.NUM_WORKERS=0",
        "SEED=7",
        "LOG_PERIOD=1",
        f"OUTPUT_DIR={output_dir}",
        *extra,
    ]
