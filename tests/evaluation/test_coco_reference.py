"""COCOEvaluator against an independent reference: a ground truth and detections written by hand
in this file (not produced by project code), scored once by pycocotools' COCOeval directly and
once through the project's registration + COCOEvaluator, which must agree to the last digit.

The ground truth has category ids 3, 7 and 12 (listed out of order), four small images,
polygon and uncompressed-RLE masks, a crowd region and hand-written areas. The detections hold
true positives, near misses, false positives, a class confusion (right box, wrong category) and a
detection on the crowd region, all with distinct scores that float32 represents exactly (so the
model outputs' float32 scores rank exactly like the hand-written ones).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from typing import Any, Dict, List

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from project.data import DatasetCatalog, MetadataCatalog, register_coco_instances
from project.evaluation import COCOEvaluator
from project.structures import Boxes, Instances

SUMMARY = ["AP", "AP50", "AP75", "APs", "APm", "APl"]

# ----------------------------------------------------------------------------------------------
# The ground truth, as a COCO instances file would hold it. Every annotation has a bbox and a
# mask; polygon areas are the geometric areas, worked out by hand.
# ----------------------------------------------------------------------------------------------
GROUND_TRUTH: Dict[str, Any] = {
    "images": [
        {"id": 101, "file_name": "a.png", "height": 64, "width": 80},
        {"id": 102, "file_name": "b.png", "height": 48, "width": 48},
        {"id": 103, "file_name": "c.png", "height": 120, "width": 128},
        {"id": 104, "file_name": "d.png", "height": 32, "width": 40},
    ],
    # Not in id order: the loader sorts them, so the model's classes are 3 -> 0, 7 -> 1, 12 -> 2.
    "categories": [
        {"id": 12, "name": "debris"},
        {"id": 3, "name": "nucleus"},
        {"id": 7, "name": "cell"},
    ],
    "annotations": [
        # Image 101 (64 x 80).
        {  # 12 x 10 rectangle
            "id": 1, "image_id": 101, "category_id": 3, "iscrowd": 0,
            "segmentation": [[4, 6, 16, 6, 16, 16, 4, 16]], "bbox": [4, 6, 12, 10], "area": 120,
        },
        {  # right triangle, legs 20: 20 * 20 / 2
            "id": 2, "image_id": 101, "category_id": 3, "iscrowd": 0,
            "segmentation": [[30, 4, 50, 4, 30, 24]], "bbox": [30, 4, 20, 20], "area": 200,
        },
        {  # 40 x 32 rectangle: medium (32**2 <= 1280 < 96**2)
            "id": 3, "image_id": 101, "category_id": 7, "iscrowd": 0,
            "segmentation": [[20, 28, 60, 28, 60, 60, 20, 60]], "bbox": [20, 28, 40, 32], "area": 1280,
        },
        # Image 102 (48 x 48).
        {  # 16 x 16 square: the only "debris" of the dataset
            "id": 4, "image_id": 102, "category_id": 12, "iscrowd": 0,
            "segmentation": [[24, 20, 40, 20, 40, 36, 24, 36]], "bbox": [24, 20, 16, 16], "area": 256,
        },
        {  # 10 x 8 rectangle
            "id": 5, "image_id": 102, "category_id": 3, "iscrowd": 0,
            "segmentation": [[4, 4, 14, 4, 14, 12, 4, 12]], "bbox": [4, 4, 10, 8], "area": 80,
        },
        {  # uncompressed RLE (column-major runs, zeros first): rows 30..45 of columns 2..11
            "id": 6, "image_id": 102, "category_id": 7, "iscrowd": 0,
            "segmentation": {
                "size": [48, 48],
                "counts": [126, 16, 32, 16, 32, 16, 32, 16, 32, 16, 32, 16, 32, 16, 32, 16, 32, 16, 32, 16, 1730],
            },
            "bbox": [2, 30, 10, 16], "area": 160,
        },
        # Image 103 (120 x 128).
        {  # 100 x 100 square: large (> 96**2)
            "id": 7, "image_id": 103, "category_id": 7, "iscrowd": 0,
            "segmentation": [[10, 10, 110, 10, 110, 110, 10, 110]], "bbox": [10, 10, 100, 100], "area": 10000,
        },
        {  # 12 x 12 square that nothing detects
            "id": 8, "image_id": 103, "category_id": 3, "iscrowd": 0,
            "segmentation": [[114, 2, 126, 2, 126, 14, 114, 14]], "bbox": [114, 2, 12, 12], "area": 144,
        },
        # Image 104 (32 x 40).
        {  # crowd region, uncompressed RLE: rows 2..11 of columns 4..9
            "id": 9, "image_id": 104, "category_id": 3, "iscrowd": 1,
            "segmentation": {"size": [32, 40], "counts": [130, 10, 22, 10, 22, 10, 22, 10, 22, 10, 22, 10, 980]},
            "bbox": [4, 2, 6, 10], "area": 60,
        },
        {  # L shape: 16 x 6 bar on top of an 8 x 6 foot, 96 + 48
            "id": 10, "image_id": 104, "category_id": 3, "iscrowd": 0,
            "segmentation": [[20, 16, 36, 16, 36, 22, 28, 22, 28, 28, 20, 28]], "bbox": [20, 16, 16, 12], "area": 144,
        },
    ],
}  # fmt: skip

IMAGE_SIZES = {im["id"]: (im["height"], im["width"]) for im in GROUND_TRUTH["images"]}
# Detectron2's convention for a COCO file: category ids in increasing order become 0..K-1.
CONTIGUOUS = {3: 0, 7: 1, 12: 2}
CLASS_NAMES = ["nucleus", "cell", "debris"]


# ----------------------------------------------------------------------------------------------
# The detections: COCO result dicts with hand-drawn masks (a bool array of the image's size;
# "segmentation" is its RLE from pycocotools.mask.encode). Boxes are XYWH.
# ----------------------------------------------------------------------------------------------
def _rect(image_id: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(IMAGE_SIZES[image_id], dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _staircase() -> np.ndarray:
    """A 16-row staircase in the corner of ground-truth triangle 2 (image 101): row 4 + r holds
    columns 30 .. 45 - r."""
    mask = np.zeros(IMAGE_SIZES[101], dtype=bool)
    for r in range(16):
        mask[4 + r, 30 : 46 - r] = True
    return mask


def _l_shape() -> np.ndarray:
    """The pixels of ground-truth L shape 10 (image 104)."""
    mask = _rect(104, 20, 16, 36, 22)
    mask[22:28, 20:28] = True
    return mask


DETECTIONS: List[Dict[str, Any]] = [
    # Image 101.
    # gt 1 moved 1 px: IoU 110/130
    {"image_id": 101, "category_id": 3, "bbox": [5, 6, 12, 10], "score": 0.875, "mask": _rect(101, 5, 6, 17, 16)},
    # gt 2: exact box, rough mask
    {"image_id": 101, "category_id": 3, "bbox": [30, 4, 20, 20], "score": 0.625, "mask": _staircase()},
    # gt 3, 4 rows short: IoU 0.875
    {"image_id": 101, "category_id": 7, "bbox": [20, 28, 40, 28], "score": 0.8125, "mask": _rect(101, 20, 28, 60, 56)},
    # debris where there is none
    {"image_id": 101, "category_id": 12, "bbox": [60, 4, 12, 12], "score": 0.75, "mask": _rect(101, 60, 4, 72, 16)},
    # nucleus where there is none
    {"image_id": 101, "category_id": 3, "bbox": [64, 40, 10, 10], "score": 0.5625, "mask": _rect(101, 64, 40, 74, 50)},
    # Image 102.
    # gt 4 exactly
    {"image_id": 102, "category_id": 12, "bbox": [24, 20, 16, 16], "score": 0.5, "mask": _rect(102, 24, 20, 40, 36)},
    # gt 5's box and mask, but "cell"
    {"image_id": 102, "category_id": 7, "bbox": [4, 4, 10, 8], "score": 0.6875, "mask": _rect(102, 4, 4, 14, 12)},
    # gt 5 a row lower: IoU 70/90
    {"image_id": 102, "category_id": 3, "bbox": [4, 5, 10, 8], "score": 0.375, "mask": _rect(102, 4, 5, 14, 13)},
    # gt 6 exactly
    {"image_id": 102, "category_id": 7, "bbox": [2, 30, 10, 16], "score": 0.25, "mask": _rect(102, 2, 30, 12, 46)},
    # Image 103.
    # gt 7: IoU 9408/10192
    {"image_id": 103, "category_id": 7, "bbox": [12, 10, 100, 96], "score": 0.59375,
     "mask": _rect(103, 12, 10, 112, 106)},
    # nucleus inside the cell
    {"image_id": 103, "category_id": 3, "bbox": [30, 30, 50, 50], "score": 0.96875, "mask": _rect(103, 30, 30, 80, 80)},
    # Image 104.
    # inside the crowd region: ignored
    {"image_id": 104, "category_id": 3, "bbox": [5, 3, 4, 8], "score": 0.9375, "mask": _rect(104, 5, 3, 9, 11)},
    # gt 10 exactly
    {"image_id": 104, "category_id": 3, "bbox": [20, 16, 16, 12], "score": 0.4375, "mask": _l_shape()},
]  # fmt: skip


def coco_results(iou_type: str) -> List[Dict[str, Any]]:
    """The detections as COCO results for ``iou_type``: boxes only for "bbox", masks only for
    "segm" (so that a detection's area, which decides small/medium/large, is its mask's)."""
    results = []
    for d in DETECTIONS:
        result = {"image_id": d["image_id"], "category_id": d["category_id"], "score": d["score"]}
        if iou_type == "bbox":
            result["bbox"] = list(d["bbox"])
        else:
            result["segmentation"] = mask_util.encode(np.asfortranarray(d["mask"].astype(np.uint8)))
        results.append(result)
    return results


def model_outputs() -> List[tuple]:
    """(input, output) per image, in image order: what a model with contiguous classes returns."""
    pairs = []
    for image_id, size in IMAGE_SIZES.items():
        dets = [d for d in DETECTIONS if d["image_id"] == image_id]
        instances = Instances(
            size,
            pred_boxes=Boxes(torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in dets)])),
            scores=torch.tensor([d["score"] for d in dets], dtype=torch.float32),
            pred_classes=torch.tensor([CONTIGUOUS[d["category_id"]] for d in dets], dtype=torch.int64),
            pred_masks=torch.from_numpy(np.stack([d["mask"] for d in dets])),
        )
        pairs.append(({"image_id": image_id, "height": size[0], "width": size[1]}, {"instances": instances}))
    return pairs


# ----------------------------------------------------------------------------------------------
# The reference: pycocotools, used directly.
# ----------------------------------------------------------------------------------------------
def reference_eval(gt_json: str, results: List[Dict[str, Any]], iou_type: str) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_json)
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def reference_metrics(coco_eval: COCOeval) -> Dict[str, float]:
    """pycocotools' summary (its first six stats) and per-category AP, in percent."""
    assert coco_eval.params.maxDets == [1, 10, 100] and coco_eval.params.catIds == [3, 7, 12]
    metrics = {name: 100 * stat for name, stat in zip(SUMMARY, coco_eval.stats[:6])}
    precision = coco_eval.eval["precision"]  # [IoU, recall, category, area, maxDets]
    for k, category_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, 2]  # area "all", 100 detections
        metrics[f"AP-{CLASS_NAMES[CONTIGUOUS[category_id]]}"] = 100 * p[p > -1].mean()
    return metrics


@pytest.fixture
def gt_json(tmp_path) -> str:
    for image in GROUND_TRUTH["images"]:
        pixels = np.zeros((image["height"], image["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / image["file_name"])
    path = tmp_path / "ground_truth.json"
    path.write_text(json.dumps(GROUND_TRUTH))
    return str(path)


@pytest.fixture
def dataset(gt_json, request):
    """The hand-written file registered like any COCO dataset: no class mapping given."""
    name = f"coco_reference_{request.node.name}"
    register_coco_instances(name, {}, gt_json, os.path.dirname(gt_json))
    yield name
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------
def test_hand_written_masks_are_what_the_comments_say(gt_json):
    """The hand-made RLEs and polygons rasterise (in pycocotools) to the pixels described, and
    the exact detections cover exactly the pixels of their ground truth."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_json)
    masks = {a["id"]: coco.annToMask(a).astype(bool) for a in GROUND_TRUTH["annotations"]}
    np.testing.assert_array_equal(masks[9], _rect(104, 4, 2, 10, 12))  # crowd
    np.testing.assert_array_equal(masks[6], _rect(102, 2, 30, 12, 46))
    np.testing.assert_array_equal(masks[4], DETECTIONS[5]["mask"])  # debris, exact
    np.testing.assert_array_equal(masks[6], DETECTIONS[8]["mask"])  # cell, exact
    np.testing.assert_array_equal(masks[10], _l_shape())
    for ann in GROUND_TRUTH["annotations"]:
        pixels = int(masks[ann["id"]].sum())
        if ann["id"] == 2:  # the triangle's raster leaves out pixels the hypotenuse cuts
            assert 180 <= pixels < ann["area"]
            continue
        # Axis-aligned shapes with integer corners: the raster has the geometric area and box.
        assert pixels == ann["area"]
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(masks[ann["id"]])
        assert [xs.min(), ys.min(), xs.max() + 1 - x, ys.max() + 1 - y] == [x, y, w, h]


@pytest.mark.parametrize("use_fast_impl", [False, True])
def test_evaluator_equals_direct_cocoeval(gt_json, dataset, tmp_path, use_fast_impl):
    if use_fast_impl:
        pytest.importorskip("faster_coco_eval")
    output_dir = tmp_path / "eval"
    output_dir.mkdir()
    evaluator = COCOEvaluator(dataset, output_dir=str(output_dir), use_fast_impl=use_fast_impl)
    assert evaluator._gt_json_file == gt_json  # the hand-written file is the ground truth
    evaluator.reset()
    for model_input, output in model_outputs():
        evaluator.process([model_input], [output])
    results = evaluator.evaluate()

    assert list(results) == ["bbox", "segm"]
    for iou_type in ("bbox", "segm"):
        reference = reference_metrics(reference_eval(gt_json, coco_results(iou_type), iou_type))
        assert set(results[iou_type]) == set(reference)
        for key, expected in reference.items():
            assert results[iou_type][key] == pytest.approx(expected, rel=0, abs=1e-9), (iou_type, key)
        # Discriminative: no summary number is trivially 0 or 100, and none is missing.
        assert all(0 < reference[key] < 100 for key in SUMMARY), reference
    # The staircase mask (detection 2) is a worse match than its exact box.
    assert results["segm"]["AP"] < results["bbox"]["AP"]

    # Loading the file recorded the mapping; the written results carry the file's category ids.
    assert MetadataCatalog.get(dataset).thing_dataset_id_to_contiguous_id == CONTIGUOUS
    assert MetadataCatalog.get(dataset).thing_classes == CLASS_NAMES
    with open(output_dir / "coco_instances_results.json") as f:
        written = json.load(f)
    assert [(r["image_id"], r["category_id"], r["score"]) for r in written] == [
        (d["image_id"], d["category_id"], d["score"]) for d in DETECTIONS
    ]
    for r, d in zip(written, DETECTIONS):
        assert r["bbox"] == d["bbox"]
        rle = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_util.decode(rle).astype(bool), d["mask"])


def test_hand_computed_ap(gt_json):
    """Numbers worked out by hand, checked on the reference (the evaluator equals it above).

    debris (12): one ground truth (image 102); two detections, the false positive in image 101
    scored 0.75 above the exact match scored 0.5. At every IoU threshold, in score order:
    FP -> precision 0/1, recall 0; TP -> precision 1/2, recall 1. COCO's interpolated precision
    (the best precision at recall >= r) is 1/2 at each of the 101 recall points, so AP = 50.

    APm: the only medium ground truth is cell 3 (area 1280); its detection (area 1120) has IoU
    1120/1280 = 0.875, a match at the 8 thresholds 0.50 .. 0.85 (AP 1) and, unmatched above, a
    medium false positive (AP 0); the large cell detection matches the large cell (ignored in
    this range) or, unmatched at 0.95, is outside the range. APm = 8/10 = 80.

    APl: the only large ground truth is cell 7; its detection has IoU (98 * 96) /
    (10000 + 9600 - 9408) = 0.923: matched at 0.50 .. 0.90 (AP 1), a large false positive at
    0.95 (AP 0). APl = 9/10 = 90. The masks are the boxes' rectangles, so segm gives the same.
    """
    for iou_type in ("bbox", "segm"):
        metrics = reference_metrics(reference_eval(gt_json, coco_results(iou_type), iou_type))
        assert metrics["AP-debris"] == pytest.approx(50.0, abs=1e-9)
        assert metrics["APm"] == pytest.approx(80.0, abs=1e-9)
        assert metrics["APl"] == pytest.approx(90.0, abs=1e-9)


def test_detection_on_the_crowd_region_is_ignored(gt_json, tmp_path):
    """The fixture exercises the crowd rule: the nucleus detection inside the crowd region
    changes nothing, while without the crowd annotation it is a high-scoring false positive."""
    assert DETECTIONS[11]["image_id"] == 104 and DETECTIONS[11]["score"] == 0.9375
    no_crowd = copy.deepcopy(GROUND_TRUTH)
    no_crowd["annotations"] = [a for a in no_crowd["annotations"] if not a["iscrowd"]]
    no_crowd_json = tmp_path / "no_crowd.json"
    no_crowd_json.write_text(json.dumps(no_crowd))
    for iou_type in ("bbox", "segm"):
        results = coco_results(iou_type)
        full = reference_metrics(reference_eval(gt_json, results, iou_type))
        dropped = reference_metrics(reference_eval(gt_json, results[:11] + results[12:], iou_type))
        assert full == dropped
        unprotected = reference_metrics(reference_eval(str(no_crowd_json), results, iou_type))
        assert unprotected["AP-nucleus"] < full["AP-nucleus"] - 1
