"""Does tiling cost accuracy? DSB2018 val images of one size laid side by side into a mosaic
(their annotations shifted with them) are predicted tile by tile with ``TiledPredictor``; the
same model predicts each image on its own with ``DefaultPredictor``. Both are scored with
``COCOEvaluator`` against the same ground truth; prints JSON with both APs and their difference.

The images are 256 x 256 and the model is tested at 512 (the DSB2018 recipe), so tiles are
scaled by 2 (``--scale``), which shows the model nuclei at the size it saw them per image.

``--untiled`` adds a third score that separates the mosaic's own effect from the tiling: the whole
mosaic in one forward pass of ``DefaultPredictor`` at the same scale, with
``TEST.DETECTIONS_PER_IMAGE`` and the RPN's ``PRE_NMS_TOPK_TEST`` / ``POST_NMS_TOPK_TEST``
multiplied by the number of images (without that the pass keeps one image's worth of proposals
for the whole mosaic). "mosaic_effect" is untiled minus per image, "tiling_effect" tiled minus
untiled. It needs about 10 GB of memory for the 7 x 7 mosaic at scale 2.

    python -m benchmarks.tiled_mosaic_ap --config RUN/config.yaml --weights RUN/model_final.pth
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from typing import Any, Dict, List

import cv2
import numpy as np
import pycocotools.mask as mask_util

from project.config import load_cfg
from project.data import DatasetCatalog, MetadataCatalog
from project.data.datasets import register_coco_instances
from project.engine import DefaultPredictor
from project.engine.tiled_predictor import TiledPredictor
from project.evaluation import COCOEvaluator
from project.structures.rle import decode_crop, encode_crop

from .common import data_root


def mosaic_ground_truth(coco: Dict[str, Any], images: List[Dict[str, Any]], columns: int, image_root: str):
    """The mosaic image (BGR) of ``images`` (all of one size) in rows of ``columns``, and a COCO
    dict with its one image and every annotation moved to its place."""
    height, width = images[0]["height"], images[0]["width"]
    rows = math.ceil(len(images) / columns)
    mosaic = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    by_image: Dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    annotations = []
    for k, info in enumerate(images):
        y0, x0 = (k // columns) * height, (k % columns) * width
        mosaic[y0 : y0 + height, x0 : x0 + width] = cv2.imread(os.path.join(image_root, info["file_name"]))
        for a in by_image.get(info["id"], []):
            crop = decode_crop(a["segmentation"]).moved(x0, y0, mosaic.shape[:2])
            rle = encode_crop(crop)
            x, y, w, h = a["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 1,
                    "category_id": a["category_id"],
                    "bbox": [x + x0, y + y0, w, h],
                    "area": float(mask_util.area(rle)),
                    "segmentation": rle,
                    "iscrowd": a.get("iscrowd", 0),
                }
            )
    info = {"id": 1, "file_name": "mosaic.png", "height": mosaic.shape[0], "width": mosaic.shape[1]}
    return mosaic, {"images": [info], "annotations": annotations, "categories": coco["categories"]}


def _evaluate(name: str, predictions: List[tuple], max_dets: int, output_dir: str) -> Dict[str, float]:
    evaluator = COCOEvaluator(name, distributed=False, output_dir=output_dir, max_dets_per_image=max_dets)
    evaluator.reset()
    for image_id, output in predictions:
        evaluator.process([{"image_id": image_id}], [output])
    results = evaluator.evaluate()
    return {task: round(results[task]["AP"], 2) for task in ("bbox", "segm")}


def untiled_prediction(cfg, mosaic: np.ndarray, scale: float, images: int) -> Dict[str, Any]:
    """The whole ``mosaic`` in one forward pass, resized by ``scale``, with the per-image limits
    on detections and proposals multiplied by the number of ``images`` in it."""
    cfg = cfg.copy()
    height, width = mosaic.shape[:2]
    cfg.INPUT.MIN_SIZE_TEST = round(min(height, width) * scale)
    cfg.INPUT.MAX_SIZE_TEST = round(max(height, width) * scale)
    cfg.TEST.DETECTIONS_PER_IMAGE *= images
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST *= images
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST *= images
    cfg.TEST.PRED_MASK_FORMAT = "crop"  # (N, H, W) masks of the whole mosaic would take gigabytes
    return DefaultPredictor(cfg)(mosaic)


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config.yaml of a DSB2018 run (train_net.py writes one)")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", type=int, default=49, help="256 x 256 val images in the mosaic")
    parser.add_argument("--columns", type=int, default=7)
    parser.add_argument("--tile", type=int, default=512, help="tile side in model pixels")
    parser.add_argument("--overlap", type=int, default=128, help="tile overlap in model pixels")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument(
        "--untiled", action="store_true", help="also score the whole mosaic in one untiled forward pass"
    )
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args(argv)

    root = os.path.join(data_root(), "dsb2018")
    coco = json.load(open(os.path.join(root, "annotations_val.json")))
    images = [i for i in coco["images"] if (i["height"], i["width"]) == (256, 256)][: args.images]
    cfg = load_cfg(args.config)
    cfg.MODEL.WEIGHTS = args.weights
    cfg.MODEL.DEVICE = "cpu"
    per_image_max = cfg.TEST.DETECTIONS_PER_IMAGE
    work = tempfile.mkdtemp(prefix="tiled_mosaic_")

    ids = {i["id"] for i in images}
    subset = dict(coco, images=images, annotations=[a for a in coco["annotations"] if a["image_id"] in ids])
    mosaic, mosaic_coco = mosaic_ground_truth(coco, images, args.columns, os.path.join(root, "val"))
    cv2.imwrite(os.path.join(work, "mosaic.png"), mosaic)
    for name, data, image_root in (
        ("dsb_mosaic_parts", subset, os.path.join(root, "val")),
        ("dsb_mosaic", mosaic_coco, work),
    ):
        path = os.path.join(work, f"{name}.json")
        json.dump(data, open(path, "w"))
        for catalog in (DatasetCatalog, MetadataCatalog):
            if name in catalog:
                catalog.remove(name)
        register_coco_instances(name, {}, path, image_root)

    predictor = DefaultPredictor(cfg)
    start = time.perf_counter()
    per_image = [(i["id"], predictor(cv2.imread(os.path.join(root, "val", i["file_name"])))) for i in images]
    per_image_seconds = time.perf_counter() - start
    tiled = TiledPredictor(cfg, tile_size=args.tile, overlap=args.overlap, scale=args.scale)
    tiled_output = tiled(mosaic, progress=True)

    result = {
        "images": len(images),
        "mosaic_size": list(mosaic.shape[:2]),
        "tiles": int(tiled.last_seconds["tiles"]),
        "tile": args.tile,
        "overlap": args.overlap,
        "scale": args.scale,
        "ground_truth_objects": len(mosaic_coco["annotations"]),
        "per_image_detections": sum(len(o["instances"]) for _, o in per_image),
        "tiled_detections": len(tiled_output["instances"]),
        "merge": tiled.last_report.as_dict(),
        "per_image_ap": _evaluate("dsb_mosaic_parts", per_image, per_image_max, os.path.join(work, "parts")),
        "tiled_ap": _evaluate(
            "dsb_mosaic", [(1, tiled_output)], per_image_max * len(images), os.path.join(work, "mosaic")
        ),
        "per_image_seconds": round(per_image_seconds, 1),
        "tiled_seconds": round(tiled.last_seconds["total"], 1),
    }
    result["segm_ap_difference"] = round(result["tiled_ap"]["segm"] - result["per_image_ap"]["segm"], 2)
    result["bbox_ap_difference"] = round(result["tiled_ap"]["bbox"] - result["per_image_ap"]["bbox"], 2)
    if args.untiled:
        untiled = untiled_prediction(cfg, mosaic, args.scale, len(images))
        result["untiled_detections"] = len(untiled["instances"])
        result["untiled_ap"] = _evaluate(
            "dsb_mosaic", [(1, untiled)], per_image_max * len(images), os.path.join(work, "untiled")
        )
        for task in ("segm", "bbox"):
            result[f"{task}_mosaic_effect"] = round(result["untiled_ap"][task] - result["per_image_ap"][task], 2)
            result[f"{task}_tiling_effect"] = round(result["tiled_ap"][task] - result["untiled_ap"][task], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
