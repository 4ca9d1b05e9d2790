"""COCOEvaluator maps the model's contiguous classes back to the ground truth's category ids
whether it is built before the data loader (Detectron2's tutorials) or after: loading a COCO
dataset is what records ``thing_dataset_id_to_contiguous_id`` in its metadata, so an evaluator
that read the mapping when it was built would score class k as category k."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from project.config import get_cfg
from project.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader, register_coco_instances
from project.evaluation import COCOEvaluator, inference_on_dataset
from project.structures import Boxes, BoxMode, Instances

HEIGHT, WIDTH = 64, 80
SUMMARY = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def _square(x0: int, y0: int, size: int) -> List[float]:
    x1, y1 = x0 + size, y0 + size
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def write_dataset(root: Path, category_ids: Sequence[int]) -> Path:
    """Three images, two or three squares each, of the categories ``category_ids`` in turn."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id in (4, 9, 17):
        file_name = f"img{image_id}.png"
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(root / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": HEIGHT, "width": WIDTH})
        for k in range(2 + image_id % 2):
            x0, y0, size = 4 + 24 * k, int(rng.integers(2, 30)), int(rng.integers(8, 20))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(category_ids[(k + image_id) % len(category_ids)]),
                    "segmentation": [_square(x0, y0, size)],
                    "bbox": [x0, y0, size, size],
                    "area": size * size,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": int(c), "name": f"class{c}"} for c in category_ids]
    json_file = root / "annotations.json"
    json_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return json_file


def predictions(json_file: Path, keep_categories: Sequence[int]) -> Dict[int, List[Dict[str, Any]]]:
    """Per image id, COCO results (dataset category ids) of the ground truth of ``keep_categories``:
    exact for the last category, shifted by two pixels for the others."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(json_file))
    out: Dict[int, List[Dict[str, Any]]] = {i: [] for i in coco.getImgIds()}
    for ann in coco.loadAnns(coco.getAnnIds(catIds=list(keep_categories))):
        shift = 0 if ann["category_id"] == keep_categories[-1] else 2
        mask = np.roll(coco.annToMask(ann), shift, axis=1)
        x, y, w, h = ann["bbox"]
        out[ann["image_id"]].append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": [x + shift, y, w, h],
                "score": 0.9 - 0.1 * len(out[ann["image_id"]]),
                "mask": mask.astype(bool),
            }
        )
    return out


class ReplayModel(torch.nn.Module):
    """Answers each image of the loader with the stored detections of its ``image_id``, with
    contiguous classes as the COCO loader numbers categories: in increasing id order."""

    def __init__(self, results: Dict[int, List[Dict[str, Any]]], category_ids: Sequence[int]):
        super().__init__()
        self.results = results
        self.contiguous = {c: k for k, c in enumerate(sorted(category_ids))}

    def forward(self, inputs: List[Dict[str, Any]]) -> List[Dict[str, Instances]]:
        return [{"instances": self._instances(self.results[x["image_id"]])} for x in inputs]

    def _instances(self, results: List[Dict[str, Any]]) -> Instances:
        xywh = np.array([r["bbox"] for r in results]).reshape(-1, 4)
        boxes = BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        masks = np.stack([r["mask"] for r in results]) if results else np.zeros((0, HEIGHT, WIDTH), dtype=bool)
        return Instances(
            (HEIGHT, WIDTH),
            pred_boxes=Boxes(torch.as_tensor(boxes, dtype=torch.float32)),
            scores=torch.tensor([r["score"] for r in results], dtype=torch.float32),
            pred_classes=torch.tensor([self.contiguous[r["category_id"]] for r in results], dtype=torch.int64),
            pred_masks=torch.from_numpy(masks),
        )


def official_metrics(json_file: Path, results: Dict[int, List[Dict[str, Any]]], task: str) -> Dict[str, float]:
    """pycocotools' COCOeval on the ground-truth file and the results, in percent: the summary and
    ``AP-class<id>`` per category (NaN where no ground truth)."""
    dets = []
    for r in (r for per_image in results.values() for r in per_image):
        det = {k: r[k] for k in ("image_id", "category_id", "score")}
        if task == "bbox":
            det["bbox"] = r["bbox"]
        else:
            rle = mask_util.encode(np.asfortranarray(r["mask"].astype(np.uint8)))
            det["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        dets.append(det)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(json_file))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(dets), task)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    metrics = {name: (100 * s if s >= 0 else float("nan")) for name, s in zip(SUMMARY, coco_eval.stats[:6])}
    precision = coco_eval.eval["precision"]
    for k, category_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        metrics[f"AP-class{category_id}"] = 100 * p[p > -1].mean() if (p > -1).any() else float("nan")
    return metrics


def assert_same(ours: Dict[str, float], reference: Dict[str, float]) -> None:
    assert sorted(ours) == sorted(reference)
    for key, expected in reference.items():
        got = ours[key]
        assert (np.isnan(got) and np.isnan(expected)) or abs(got - expected) <= 1e-9, f"{key}: {got} != {expected}"


def evaluate_in_order(name: str, json_file: Path, output_dir: Path, evaluator_first: bool, model) -> Dict[str, Any]:
    """Register the dataset afresh, then build the evaluator and the loader in the given order
    and run ``inference_on_dataset``."""
    register_coco_instances(name, {}, str(json_file), str(json_file.parent))
    try:
        cfg = get_cfg(["MODEL.DEVICE=cpu", "DATALOADER.NUM_WORKERS=0", "INPUT.MIN_SIZE_TEST=0"])
        if evaluator_first:
            evaluator = COCOEvaluator(name, output_dir=str(output_dir), use_fast_impl=False)
            loader = build_detection_test_loader(cfg, name)
        else:
            loader = build_detection_test_loader(cfg, name)
            evaluator = COCOEvaluator(name, output_dir=str(output_dir), use_fast_impl=False)
        return inference_on_dataset(model, loader, evaluator)
    finally:
        DatasetCatalog.pop(name, None)
        MetadataCatalog.pop(name, None)


@pytest.mark.parametrize(
    "category_ids, keep",
    [
        ([1, 2], [2]),  # the report: perfect detections of the second category only
        ([7, 3], [7, 3]),  # both categories, ids neither from 0 nor in order in the file
        ([5], [5]),  # one category
    ],
)
def test_same_ap_whichever_is_built_first(tmp_path, category_ids, keep):
    json_file = write_dataset(tmp_path, category_ids)
    results = predictions(json_file, keep)
    model = ReplayModel(results, category_ids)
    name = f"mapping_order_{'_'.join(map(str, category_ids))}"
    detectron2_order = evaluate_in_order(name, json_file, tmp_path / "a", True, model)
    loader_first = evaluate_in_order(name, json_file, tmp_path / "b", False, model)

    for task in ("bbox", "segm"):
        reference = official_metrics(json_file, results, task)
        if len(category_ids) == 1:  # no per-category entries for a single class
            reference = {k: v for k, v in reference.items() if k in SUMMARY}
        assert_same(loader_first[task], reference)
        assert_same(detectron2_order[task], reference)
    if keep == [2]:  # exact detections of category 2 only: AP 100 for it, 0 for category 1
        assert detectron2_order["segm"]["AP-class2"] == pytest.approx(100.0)
        assert detectron2_order["segm"]["AP-class1"] == 0.0
    if len(category_ids) == 1:
        assert detectron2_order["segm"]["AP"] == pytest.approx(100.0)


def test_mapping_learned_when_nothing_loaded_the_dataset(tmp_path):
    """Predictions fed straight to ``process`` (a loop over image files, no data loader): the
    evaluator loads the dataset itself to learn the mapping, instead of scoring class k as id k."""
    category_ids = [1, 2]
    json_file = write_dataset(tmp_path, category_ids)
    results = predictions(json_file, [2])
    model = ReplayModel(results, category_ids)
    name = "mapping_without_loader"
    register_coco_instances(name, {}, str(json_file), str(tmp_path))
    try:
        evaluator = COCOEvaluator(name, output_dir=str(tmp_path / "out"), use_fast_impl=False)
        evaluator.reset()
        for image_id in results:
            evaluator.process([{"image_id": image_id}], model([{"image_id": image_id}]))
        metrics = evaluator.evaluate()
    finally:
        DatasetCatalog.pop(name, None)
        MetadataCatalog.pop(name, None)
    for task in ("bbox", "segm"):
        assert_same(metrics[task], official_metrics(json_file, results, task))
    assert metrics["segm"]["AP-class2"] == pytest.approx(100.0)
