"""COCOEvaluator against pycocotools' official COCOeval, on a fixed hand-built ground truth and
predictions (non-contiguous category ids, a crowd region, polygon and RLE masks), plus
inference_on_dataset, the evaluator protocol and gathering across 2 gloo processes."""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import json
import logging
import os
import socket
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import require_dataset
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from project.data import DatasetCatalog, MetadataCatalog, convert_to_coco_dict
from project.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    instances_to_coco_json,
    print_csv_format,
)
from project.structures import Boxes, BoxMode, Instances, polygons_to_bitmask

HEIGHT, WIDTH = 128, 160
# Deliberately neither sorted nor starting at 1: the model's class k is dataset category DATASET_IDS[k].
DATASET_IDS = [7, 0, 3]
THING_CLASSES = ["nucleus", "cell", "debris"]
ID_MAP = {dataset_id: k for k, dataset_id in enumerate(DATASET_IDS)}
SUMMARY = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
NUM_IMAGES = 4
IMAGE_IDS = [11, 12, 13, 14]
NUM_JUNK = 110  # high-scoring class-0 misses per image in the max-detections test


# ----------------------------------------------------------------------------------------------
# Fixed data: ground-truth dataset dicts and model outputs, built from a seeded generator.
# ----------------------------------------------------------------------------------------------
def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> List[float]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    xs = np.clip(cx + rx * np.cos(t), 0, WIDTH)
    ys = np.clip(cy + ry * np.sin(t), 0, HEIGHT)
    return np.stack([xs, ys], axis=1).reshape(-1).tolist()


def _uncompressed_rle(mask: np.ndarray) -> Dict[str, Any]:
    """COCO's uncompressed RLE: run lengths of the column-major flattened mask, zeros first."""
    flat = mask.reshape(-1, order="F").astype(np.int64)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"size": [HEIGHT, WIDTH], "counts": runs}


def _objects(rng: np.random.Generator, image_index: int) -> List[Tuple[float, float, float, float, int]]:
    """Ellipses (cx, cy, rx, ry, contiguous class) of one image: small, medium and one large."""
    objects = []
    for _ in range(6):
        r = rng.uniform(3, 7) if rng.random() < 0.4 else rng.uniform(12, 26)
        cx, cy = rng.uniform(r, WIDTH - r), rng.uniform(r, HEIGHT - r)
        objects.append((cx, cy, r * rng.uniform(0.8, 1.2), r, int(rng.integers(0, 3))))
    if image_index == 0:
        objects.append((80.0, 64.0, 62.0, 60.0, 1))  # area > 96**2: a "large" object
    return objects


def build_dataset() -> Tuple[List[Dict[str, Any]], List[List[Tuple[float, float, float, float, int]]]]:
    """Dataset dicts (Detectron2 format, contiguous category ids) and the ellipses behind them."""
    rng = np.random.default_rng(0)
    dicts, all_objects = [], []
    for index, image_id in enumerate(IMAGE_IDS):
        objects = _objects(rng, index)
        annotations = []
        for k, (cx, cy, rx, ry, cls) in enumerate(objects):
            polygon = _ellipse(cx, cy, rx, ry)
            x0, y0 = min(polygon[0::2]), min(polygon[1::2])
            x1, y1 = max(polygon[0::2]), max(polygon[1::2])
            annotation = {"category_id": cls, "iscrowd": 0}
            if k % 2:
                annotation.update(bbox=[x0, y0, x1, y1], bbox_mode=BoxMode.XYXY_ABS)
            else:
                annotation.update(bbox=[x0, y0, x1 - x0, y1 - y0], bbox_mode=BoxMode.XYWH_ABS)
            mask = polygons_to_bitmask([polygon], HEIGHT, WIDTH)
            if k % 3 == 0:
                annotation["segmentation"] = [polygon]
            elif k % 3 == 1:
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                annotation["segmentation"] = {"size": rle["size"], "counts": rle["counts"]}  # bytes counts
            else:
                annotation["segmentation"] = _uncompressed_rle(mask)
            annotations.append(annotation)
        # A crowd region in the top-left corner, as RLE.
        crowd = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        crowd[2:30, 2:40] = 1
        crowd_rle = mask_util.encode(np.asfortranarray(crowd))
        annotations.append(
            {
                "category_id": 0,
                "iscrowd": 1,
                "bbox": [2, 2, 38, 28],
                "bbox_mode": BoxMode.XYWH_ABS,
                "segmentation": {"size": crowd_rle["size"], "counts": crowd_rle["counts"].decode()},
            }
        )
        dicts.append(
            {
                "file_name": f"image_{image_id}.png",
                "image_id": image_id,
                "height": HEIGHT,
                "width": WIDTH,
                "annotations": annotations,
            }
        )
        all_objects.append(objects)
    return dicts, all_objects


def _instances(boxes, scores, classes, masks, image_size: Tuple[int, int] = (HEIGHT, WIDTH)) -> Instances:
    """Model output for one image: XYXY boxes, scores, contiguous classes, full-image bool masks."""
    masks = np.stack(masks) if len(masks) else np.zeros((0, *image_size), dtype=bool)
    return Instances(
        image_size,
        pred_boxes=Boxes(torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)),
        scores=torch.as_tensor(np.asarray(scores, dtype=np.float32)),
        pred_classes=torch.as_tensor(np.asarray(classes, dtype=np.int64)),
        pred_masks=torch.from_numpy(masks),
    )


def _detection(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> Tuple[List[float], np.ndarray]:
    """The mask of an ellipse and its box with noisy corners (noise relative to the size)."""
    polygon = _ellipse(cx, cy, rx, ry)
    xs, ys = polygon[0::2], polygon[1::2]
    noise = rng.normal(0, 0.03 * (rx + ry), 4)
    box = [min(xs) + noise[0], min(ys) + noise[1], max(xs) + noise[2], max(ys) + noise[3]]
    return box, polygons_to_bitmask([polygon], HEIGHT, WIDTH)


def build_outputs(num_junk: int = 0) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """One (model input, model output) pair per image: jittered detections of most objects,
    some with the wrong class, false positives, detections on the crowd region, and optionally
    ``num_junk`` high-scoring misses of class 0 that push that class's real detections below the
    100th place (COCO limits detections per image and category)."""
    _, all_objects = build_dataset()
    rng = np.random.default_rng(1)
    pairs = []
    for image_id, objects in zip(IMAGE_IDS, all_objects):
        ellipses = []  # (cx, cy, rx, ry, class, score)
        for cx, cy, rx, ry, cls in objects:
            if rng.random() < 0.85 or rx > 50:  # the large object is always found
                wrong = rng.random() < 0.15
                shift = rng.normal(0, 0.05 * (rx + ry), 2)
                ellipses.append(
                    (
                        cx + shift[0],
                        cy + shift[1],
                        rx * rng.uniform(0.92, 1.08),
                        ry * rng.uniform(0.92, 1.08),
                        (cls + 1) % 3 if wrong else cls,
                        rng.uniform(0.2, 0.89),
                    )
                )
        for _ in range(3):
            ellipses.append(
                (
                    rng.uniform(10, WIDTH - 10),
                    rng.uniform(10, HEIGHT - 10),
                    rng.uniform(4, 15),
                    rng.uniform(4, 15),
                    int(rng.integers(0, 3)),
                    rng.uniform(0.05, 0.7),
                )
            )
        ellipses.append((20, 15, 8, 6, 0, rng.uniform(0.3, 0.8)))  # in the crowd region of class 0: ignored
        for _ in range(num_junk):
            ellipses.append((rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), 2.0, 2.0, 0, rng.uniform(0.9, 1.0)))
        boxes, masks = zip(*[_detection(rng, *e[:4]) for e in ellipses])
        instances = _instances(boxes, [e[5] for e in ellipses], [e[4] for e in ellipses], masks)
        pairs.append(({"image_id": image_id, "height": HEIGHT, "width": WIDTH}, {"instances": instances}))
    return pairs


def register(name: str, json_file: str | None = None) -> None:
    dicts, _ = build_dataset()
    DatasetCatalog.register(name, lambda: dicts)
    metadata = MetadataCatalog.get(name).set(thing_classes=THING_CLASSES, thing_dataset_id_to_contiguous_id=ID_MAP)
    if json_file is not None:
        metadata.set(json_file=json_file)


def unregister(name: str) -> None:
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


def run_evaluator(evaluator: COCOEvaluator, pairs) -> Dict[str, Any]:
    evaluator.reset()
    for model_input, output in pairs:
        evaluator.process([model_input], [output])
    return evaluator.evaluate()


# ----------------------------------------------------------------------------------------------
# The official reference: pycocotools on the written ground-truth and result files.
# ----------------------------------------------------------------------------------------------
def official_coco_eval(gt_json: str, results_json: str, iou_type: str, max_dets: List[int]) -> COCOeval:
    """pycocotools' COCOeval, as Detectron2 runs it: for ``segm`` the results' boxes are
    removed, so that results' areas (small/medium/large) are mask areas, like the ground truth's."""
    with open(results_json) as f:
        results = json.load(f)
    if iou_type == "segm":
        for r in results:
            r.pop("bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_json)
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
        coco_eval.params.maxDets = max_dets
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval


def official_summary(coco_eval: COCOeval) -> Dict[str, float]:
    """The first six numbers of pycocotools' own summarize() (valid for maxDets [1, 10, 100])."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.summarize()
    return {name: (100 * s if s >= 0 else float("nan")) for name, s in zip(SUMMARY, coco_eval.stats[:6])}


def official_per_category(coco_eval: COCOeval) -> Dict[int, float]:
    """AP at IoU 0.50:0.95, all areas, the last maxDets, per dataset category id, in percent."""
    precision = coco_eval.eval["precision"]
    out = {}
    for k, category_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        out[category_id] = 100 * p[p > -1].mean() if (p > -1).any() else float("nan")
    return out


def assert_metrics_close(ours: Dict[str, float], reference: Dict[str, float], keys) -> None:
    for key in keys:
        a, b = ours[key], reference[key]
        assert (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-6, f"{key}: ours {a}, pycocotools {b}"


@pytest.fixture
def dataset(tmp_path, request):
    name = f"eval_test_{request.node.name}"
    register(name)
    yield name, str(tmp_path)
    unregister(name)


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_fast_impl", [False, True])
def test_ap_equals_official_cocoeval(dataset, use_fast_impl):
    name, output_dir = dataset
    evaluator = COCOEvaluator(name, output_dir=output_dir, use_fast_impl=use_fast_impl)
    results = run_evaluator(evaluator, build_outputs())

    assert list(results) == ["bbox", "segm"]
    gt_json = os.path.join(output_dir, f"{name}_coco_format.json")
    results_json = os.path.join(output_dir, "coco_instances_results.json")
    for task in ("bbox", "segm"):
        official = official_coco_eval(gt_json, results_json, task, [1, 10, 100])
        assert_metrics_close(results[task], official_summary(official), SUMMARY)
        per_category = official_per_category(official)
        assert_metrics_close(
            results[task],
            {f"AP-{THING_CLASSES[ID_MAP[c]]}": ap for c, ap in per_category.items()},
            [f"AP-{c}" for c in THING_CLASSES],
        )
        # A meaningful fixture: imperfect but far from zero, with every area range present.
        assert 20 < results[task]["AP"] < 95
        assert np.isfinite([results[task][k] for k in SUMMARY]).all()
    assert results["segm"]["AP"] != results["bbox"]["AP"]


def test_metadata_json_file_is_used_as_ground_truth(dataset, tmp_path):
    name, output_dir = dataset
    converted = COCOEvaluator(name, output_dir=output_dir, use_fast_impl=False)
    expected = run_evaluator(converted, build_outputs())

    # The same ground truth, written by hand with different annotation ids and extra fields.
    coco = convert_to_coco_dict(name)
    for ann in coco["annotations"]:
        ann["id"] += 1000
    coco["licenses"] = []
    gt_file = tmp_path / "given_gt.json"
    gt_file.write_text(json.dumps(coco))
    other = f"{name}_with_json"
    register(other, json_file=str(gt_file))
    try:
        evaluator = COCOEvaluator(other, output_dir=None, use_fast_impl=False)
        assert evaluator._gt_json_file == str(gt_file)
        results = run_evaluator(evaluator, build_outputs())
    finally:
        unregister(other)
    for task in ("bbox", "segm"):
        assert_metrics_close(results[task], expected[task], SUMMARY)


def test_convert_to_coco_dict(dataset):
    name, _ = dataset
    coco = convert_to_coco_dict(name)
    dicts, _ = build_dataset()
    assert sorted(c["id"] for c in coco["categories"]) == sorted(DATASET_IDS)
    assert {c["id"]: c["name"] for c in coco["categories"]} == dict(zip(DATASET_IDS, THING_CLASSES))
    assert [im["id"] for im in coco["images"]] == IMAGE_IDS
    anns = coco["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    source = [a for d in dicts for a in d["annotations"]]
    assert len(anns) == len(source)
    for ann, src in zip(anns, source):
        assert ann["category_id"] == DATASET_IDS[src["category_id"]]
        assert ann["iscrowd"] == src["iscrowd"]
        xywh = BoxMode.convert(list(src["bbox"]), src["bbox_mode"], BoxMode.XYWH_ABS)
        np.testing.assert_allclose(ann["bbox"], xywh, atol=1e-3)
        # Every segmentation, polygon or RLE (compressed or not), has the area of its mask.
        seg = ann["segmentation"]
        rle = (
            mask_util.merge(mask_util.frPyObjects(seg, HEIGHT, WIDTH))
            if isinstance(seg, list)
            else dict(seg, counts=seg["counts"].encode())
        )
        if isinstance(seg, list):
            # Polygons: the geometric area (COCO's and Detectron2's), here by OpenCV's contour
            # area; the raster's pixel count is within 1% of it (measured on these 9
            # polygons: -3.4 to +6.6 px, at most 0.75%).
            geometric = sum(cv2.contourArea(np.asarray(p, np.float32).reshape(-1, 2)) for p in seg)
            assert ann["area"] == pytest.approx(geometric, rel=1e-6)
            assert abs(float(mask_util.area(rle)) - ann["area"]) <= 0.01 * ann["area"]
        else:
            assert float(mask_util.area(rle)) == ann["area"]
    assert sum(a["iscrowd"] for a in anns) == NUM_IMAGES
    json.dumps(coco)  # serialisable


@pytest.mark.parametrize("use_fast_impl", [False, True])
def test_max_dets_per_image(dataset, use_fast_impl):
    name, output_dir = dataset
    pairs = build_outputs(num_junk=NUM_JUNK)
    assert all(len(out["instances"]) > 100 for _, out in pairs)
    results_json = os.path.join(output_dir, "coco_instances_results.json")
    gt_json = os.path.join(output_dir, f"{name}_coco_format.json")

    at_100 = run_evaluator(COCOEvaluator(name, output_dir=output_dir, use_fast_impl=use_fast_impl), pairs)
    at_300 = run_evaluator(
        COCOEvaluator(name, output_dir=output_dir, use_fast_impl=use_fast_impl, max_dets_per_image=300), pairs
    )
    for task in ("bbox", "segm"):
        official = official_coco_eval(gt_json, results_json, task, [1, 10, 300])
        precision = official.eval["precision"]  # [IoU, recall, category, area, maxDets]
        expected = {
            "AP": precision[:, :, :, 0, 2],
            "AP50": precision[0, :, :, 0, 2],
            "AP75": precision[5, :, :, 0, 2],
            "APs": precision[:, :, :, 1, 2],
            "APm": precision[:, :, :, 2, 2],
            "APl": precision[:, :, :, 3, 2],
        }
        expected = {k: 100 * p[p > -1].mean() for k, p in expected.items()}
        assert_metrics_close(at_300[task], expected, SUMMARY)
        # pycocotools' own summarize() cannot report AP at maxDets=300 ...
        with contextlib.redirect_stdout(io.StringIO()):
            official.summarize()
        assert official.stats[0] == -1
        # ... and at 100 the junk crowds out the real detections of class 0 ("nucleus").
        assert_metrics_close(
            at_100[task], official_summary(official_coco_eval(gt_json, results_json, task, [1, 10, 100])), SUMMARY
        )
        assert at_300[task]["AP-nucleus"] > at_100[task]["AP-nucleus"] + 0.5
        assert at_300[task]["AP"] > at_100[task]["AP"]
        assert at_300[task]["AP-cell"] == at_100[task]["AP-cell"]


def test_results_json_maps_category_ids_back(dataset):
    name, output_dir = dataset
    pairs = build_outputs()
    run_evaluator(COCOEvaluator(name, output_dir=output_dir, use_fast_impl=False), pairs)
    with open(os.path.join(output_dir, "coco_instances_results.json")) as f:
        written = json.load(f)
    expected = [r for inp, out in pairs for r in instances_to_coco_json(out["instances"], inp["image_id"])]
    assert len(written) == len(expected)
    for w, e in zip(written, expected):
        assert w["category_id"] == DATASET_IDS[e["category_id"]]
        assert w["image_id"] == e["image_id"]
        assert w["score"] == pytest.approx(e["score"])
        assert w["segmentation"] == e["segmentation"]
    assert {w["category_id"] for w in written} == set(DATASET_IDS)


def test_instances_to_coco_json():
    masks = np.zeros((2, HEIGHT, WIDTH), dtype=bool)
    masks[0, 10:20, 30:50] = True
    masks[1, 100:128, 0:5] = True
    instances = _instances([[30, 10, 50, 20], [0.5, 100.25, 5, 128]], [0.9, 0.4], [2, 0], list(masks))
    results = instances_to_coco_json(instances, image_id=5)
    assert [r["bbox"] for r in results] == [pytest.approx([30, 10, 20, 10]), pytest.approx([0.5, 100.25, 4.5, 27.75])]
    assert [r["category_id"] for r in results] == [2, 0]
    for r, mask in zip(results, masks):
        assert r["image_id"] == 5 and isinstance(r["segmentation"]["counts"], str)
        decoded = mask_util.decode(dict(r["segmentation"], counts=r["segmentation"]["counts"].encode()))
        np.testing.assert_array_equal(decoded.astype(bool), mask)
    assert instances_to_coco_json(instances[torch.zeros(2, dtype=torch.bool)], 5) == []


@pytest.mark.parametrize("use_fast_impl", [False, True])
def test_no_detections_gives_zero_ap(dataset, use_fast_impl):
    name, output_dir = dataset
    pairs = [
        (inp, {"instances": out["instances"][torch.zeros(len(out["instances"]), dtype=torch.bool)]})
        for inp, out in build_outputs()
    ]
    inferred = run_evaluator(COCOEvaluator(name, output_dir=output_dir, use_fast_impl=use_fast_impl), pairs)
    assert list(inferred) == ["bbox"]  # without masks, segm cannot be inferred
    results = run_evaluator(
        COCOEvaluator(name, tasks=("bbox", "segm"), output_dir=output_dir, use_fast_impl=use_fast_impl), pairs
    )
    for task in ("bbox", "segm"):
        assert results[task]["AP"] == 0 and results[task]["AP50"] == 0
        assert all(results[task][f"AP-{c}"] == 0 for c in THING_CLASSES)
    with open(os.path.join(output_dir, "coco_instances_results.json")) as f:
        assert json.load(f) == []


def test_bad_input_is_reported(dataset):
    name, output_dir = dataset
    pairs = build_outputs()
    evaluator = COCOEvaluator(name, output_dir=output_dir, use_fast_impl=False)
    evaluator.process([pairs[0][0]], [pairs[0][1]])
    evaluator.process([pairs[0][0]], [pairs[0][1]])
    with pytest.raises(ValueError, match="more than once"):
        evaluator.evaluate()

    evaluator.reset()
    evaluator.process([{"image_id": 999}], [pairs[0][1]])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluator.evaluate()

    evaluator.reset()
    bad = pairs[0][1]["instances"]
    bad.pred_classes = torch.full_like(bad.pred_classes, 5)
    evaluator.process([pairs[0][0]], [{"instances": bad}])
    with pytest.raises(ValueError, match="class id 5"):
        evaluator.evaluate()

    with pytest.raises(ValueError, match="tasks"):
        COCOEvaluator(name, tasks=("keypoints",), output_dir=output_dir)
    with pytest.raises(ValueError, match="output_dir"):
        COCOEvaluator(name, output_dir=None)
    with pytest.raises(KeyError, match="not registered"):
        COCOEvaluator("no_such_dataset_xyz", output_dir=output_dir)


class _ReplayModel(torch.nn.Module):
    """Returns the stored output of each input image and records the mode it was called in."""

    def __init__(self, pairs):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.outputs = {inp["image_id"]: out for inp, out in pairs}
        self.calls: List[Tuple[bool, bool]] = []

    def forward(self, inputs):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return [self.outputs[x["image_id"]] for x in inputs]


def test_inference_on_dataset(dataset, caplog):
    name, output_dir = dataset
    pairs = build_outputs()
    model = _ReplayModel(pairs).train()
    batches = [[pairs[0][0], pairs[1][0]], [pairs[2][0]], [pairs[3][0]]]
    evaluator = COCOEvaluator(name, output_dir=output_dir, use_fast_impl=False)
    with caplog.at_level(logging.INFO):
        results = inference_on_dataset(model, batches, evaluator)
    assert model.calls == [(False, False)] * len(batches)
    assert model.training
    assert results == run_evaluator(COCOEvaluator(name, output_dir=output_dir, use_fast_impl=False), pairs)
    assert "Total inference time" in caplog.text and "s/img" in caplog.text
    assert "Per-category segm AP" in caplog.text and "nucleus" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO):
        print_csv_format(results)
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in caplog.text
    assert f"copypaste: {results['bbox']['AP']:.4f}," in caplog.text
    assert "AP-nucleus" not in caplog.text


class _FixedEvaluator(DatasetEvaluator):
    def __init__(self, task: str):
        self.task, self.seen = task, 0

    def reset(self):
        self.seen = 0

    def process(self, inputs, outputs):
        self.seen += len(inputs)

    def evaluate(self):
        return {self.task: {"images": self.seen}}


def test_dataset_evaluators_merge_and_reject_duplicates():
    model = _ReplayModel([({"image_id": i}, {"instances": None}) for i in range(7)])
    batches = [[{"image_id": i}, {"image_id": i + 1}] for i in range(0, 6, 2)] + [[{"image_id": 6}]]
    results = inference_on_dataset(model, batches, [_FixedEvaluator("a"), _FixedEvaluator("b")])
    assert results == {"a": {"images": 7}, "b": {"images": 7}}
    assert inference_on_dataset(model, batches, None) == {}
    with pytest.raises(ValueError, match="'a'"):
        DatasetEvaluators([_FixedEvaluator("a"), _FixedEvaluator("a")]).evaluate()


# ----------------------------------------------------------------------------------------------
# Two processes (gloo, CPU), each evaluating half of the images.
# ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _distributed_worker(rank: int, world_size: int, port: int, name: str, output_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        if name not in DatasetCatalog:  # inherited from the parent when forked
            register(name)
        pairs = build_outputs()[rank::world_size]
        evaluator = COCOEvaluator(name, output_dir=output_dir, use_fast_impl=False)
        results = run_evaluator(evaluator, pairs)
        with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"results": results, "processed": [p[0]["image_id"] for p in pairs]}, f)
    finally:
        dist.destroy_process_group()


def test_distributed_gathering_evaluates_every_image_once(dataset, tmp_path):
    name, single_dir = dataset
    single = run_evaluator(COCOEvaluator(name, output_dir=single_dir, use_fast_impl=False), build_outputs())

    output_dir = str(tmp_path / "distributed")
    os.makedirs(output_dir)
    # fork: the children inherit the imported modules instead of importing torch again.
    mp.start_processes(
        _distributed_worker, args=(2, _free_port(), name, output_dir), nprocs=2, join=True, start_method="fork"
    )

    ranks = []
    for rank in range(2):
        with open(os.path.join(output_dir, f"rank{rank}.json")) as f:
            ranks.append(json.load(f))
    assert ranks[1]["results"] == {}
    assert sorted(itertools.chain(ranks[0]["processed"], ranks[1]["processed"])) == IMAGE_IDS
    assert set(ranks[0]["processed"]).isdisjoint(ranks[1]["processed"])
    with open(os.path.join(output_dir, "coco_instances_results.json")) as f:
        written = json.load(f)
    expected_counts = {inp["image_id"]: len(out["instances"]) for inp, out in build_outputs()}
    counts = {i: sum(r["image_id"] == i for r in written) for i in IMAGE_IDS}
    assert counts == expected_counts
    for task in ("bbox", "segm"):
        assert_metrics_close(ranks[0]["results"][task], single[task], single[task].keys())


# ----------------------------------------------------------------------------------------------
# Real data: two COCO 2017 images and their original annotations.
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_fast_impl", [False, True])
def test_real_coco_annotations(data_root, tmp_path, use_fast_impl):
    gt_json = str(require_dataset(data_root, "coco_mini") / "annotations" / "instances_val2017.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_json)
    id_map = {c: k for k, c in enumerate(sorted(coco.getCatIds()))}
    name = f"eval_test_coco_mini_{use_fast_impl}"
    DatasetCatalog.register(name, list)
    MetadataCatalog.get(name).set(
        json_file=gt_json,
        thing_dataset_id_to_contiguous_id=id_map,
        thing_classes=[coco.cats[c]["name"] for c in sorted(coco.getCatIds())],
    )
    rng = np.random.default_rng(2)
    try:
        pairs_exact, pairs_jittered = [], []
        for image_id in coco.getImgIds():
            image = coco.imgs[image_id]
            anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a["iscrowd"]]
            boxes = BoxMode.convert(np.array([a["bbox"] for a in anns]), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
            masks = np.stack([coco.annToMask(a).astype(bool) for a in anns])
            classes = [id_map[a["category_id"]] for a in anns]
            scores = rng.uniform(0.1, 1.0, len(anns))
            size = (image["height"], image["width"])
            pairs_exact.append(({"image_id": image_id}, {"instances": _instances(boxes, scores, classes, masks, size)}))
            shifted = np.roll(masks, shift=(int(rng.integers(1, 4)), int(rng.integers(1, 4))), axis=(1, 2))
            jittered = _instances(boxes + rng.normal(0, 3, boxes.shape), scores, classes, shifted, size)
            pairs_jittered.append(({"image_id": image_id}, {"instances": jittered}))

        exact = run_evaluator(COCOEvaluator(name, output_dir=str(tmp_path), use_fast_impl=use_fast_impl), pairs_exact)
        for task in ("bbox", "segm"):
            assert exact[task]["AP"] == pytest.approx(100.0) and exact[task]["AP75"] == pytest.approx(100.0)

        jittered = run_evaluator(
            COCOEvaluator(name, output_dir=str(tmp_path), use_fast_impl=use_fast_impl), pairs_jittered
        )
        results_json = str(tmp_path / "coco_instances_results.json")
        for task in ("bbox", "segm"):
            assert jittered[task]["AP"] < 95
            official = official_coco_eval(gt_json, results_json, task, [1, 10, 100])
            assert_metrics_close(jittered[task], official_summary(official), SUMMARY)
    finally:
        unregister(name)


@pytest.mark.slow
def test_real_cells_need_more_than_100_detections(data_root, tmp_path):
    """DSB2018 val's most crowded images (up to ~200 nuclei each): their own ground truth, given as
    predictions, scores AP 100 with max_dets_per_image=400 but not with COCO's 100, and matches
    pycocotools at 400."""
    with open(require_dataset(data_root, "dsb2018") / "annotations_val.json") as f:
        full = json.load(f)
    # The 3 most crowded images (pycocotools' Python matching is slow on hundreds of instances).
    counts = collections.Counter(a["image_id"] for a in full["annotations"])
    keep = {image_id for image_id, _ in counts.most_common(3)}
    subset = dict(
        full,
        images=[im for im in full["images"] if im["id"] in keep],
        annotations=[a for a in full["annotations"] if a["image_id"] in keep],
    )
    gt_json = str(tmp_path / "dsb2018_val_subset.json")
    with open(gt_json, "w") as f:
        json.dump(subset, f)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(gt_json)
    name = "eval_test_dsb2018_val"
    DatasetCatalog.register(name, list)
    MetadataCatalog.get(name).set(
        json_file=gt_json, thing_classes=["nucleus"], thing_dataset_id_to_contiguous_id={1: 0}
    )
    rng = np.random.default_rng(3)
    pairs = []
    for image_id in coco.getImgIds():
        image = coco.imgs[image_id]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        rles = [coco.annToRLE(a) for a in anns]
        masks = mask_util.decode(rles).astype(bool).transpose(2, 0, 1)
        boxes = BoxMode.convert(np.array([a["bbox"] for a in anns]).reshape(-1, 4), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        scores = rng.uniform(0.1, 1.0, len(anns))
        instances = _instances(boxes, scores, np.zeros(len(anns)), masks, (image["height"], image["width"]))
        pairs.append(({"image_id": image_id}, {"instances": instances}))
    assert max(len(out["instances"]) for _, out in pairs) > 100
    try:
        at_400 = run_evaluator(COCOEvaluator(name, output_dir=str(tmp_path), max_dets_per_image=400), pairs)
        at_100 = run_evaluator(COCOEvaluator(name, output_dir=str(tmp_path)), pairs)
    finally:
        unregister(name)
    results_json = str(tmp_path / "coco_instances_results.json")
    for task in ("bbox", "segm"):
        assert at_400[task]["AP"] == pytest.approx(100.0)
        assert at_100[task]["AP"] < 99
        precision = official_coco_eval(gt_json, results_json, task, [1, 10, 400]).eval["precision"][:, :, :, 0, -1]
        assert abs(at_400[task]["AP"] - 100 * precision[precision > -1].mean()) <= 1e-6


def _box_only_ground_truth(tmp_path, name: str) -> None:
    """Register ``name`` with a COCO ground truth whose annotations have boxes but no 'segmentation'."""
    register(name)
    coco = convert_to_coco_dict(name)
    unregister(name)
    for ann in coco["annotations"]:
        ann.pop("segmentation", None)
    gt_file = tmp_path / "boxes_only.json"
    gt_file.write_text(json.dumps(coco))
    register(name, json_file=str(gt_file))


@pytest.mark.parametrize("use_fast_impl", [False, True])
def test_ground_truth_without_masks_gives_box_ap_and_says_why_mask_ap_is_missing(tmp_path, caplog, use_fast_impl):
    """Masks predicted on a box-only ground truth: box AP, and a warning that counts the
    annotations without masks, instead of a KeyError inside COCOeval. Asking for segm explicitly
    is an error that says what to do."""
    name = f"eval_test_boxes_only_{use_fast_impl}"
    _box_only_ground_truth(tmp_path, name)
    try:
        pairs = build_outputs()
        with caplog.at_level(logging.WARNING):
            results = run_evaluator(COCOEvaluator(name, output_dir=str(tmp_path), use_fast_impl=use_fast_impl), pairs)
        assert list(results) == ["bbox"] and 20 < results["bbox"]["AP"] < 95
        assert "have no 'segmentation'" in caplog.text and "boxes_only.json" in caplog.text
        explicit = COCOEvaluator(name, tasks=("bbox", "segm"), output_dir=str(tmp_path), use_fast_impl=use_fast_impl)
        with pytest.raises(ValueError, match=r"have no 'segmentation'.*tasks=\('bbox',\)"):
            run_evaluator(explicit, pairs)
    finally:
        unregister(name)
