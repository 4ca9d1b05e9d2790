"""COCO AP through pycocotools or faster-coco-eval, read straight from the accumulated precision
array so that any ``maxDets`` limit gives correct numbers.

pycocotools' ``COCOeval.summarize()`` looks AP up at ``maxDets == 100``; with a limit of e.g.
``[1, 10, 300]`` it finds no such entry and reports -1. Here every summary number is the mean of
``eval["precision"][iou, recall, category, area, maxdet]`` over its valid (> -1) entries, taken at
the index of the requested limit.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

# name -> (IoU threshold or None for the 0.50:0.95 mean, area range label)
DETECTION_METRICS: Dict[str, Tuple[Optional[float], str]] = {
    "AP": (None, "all"),
    "AP50": (0.5, "all"),
    "AP75": (0.75, "all"),
    "APs": (None, "small"),
    "APm": (None, "medium"),
    "APl": (None, "large"),
}


def fast_coco_eval_available() -> bool:
    return importlib.util.find_spec("faster_coco_eval") is not None


def load_coco_ground_truth(json_file: str, use_fast_impl: bool) -> Any:
    """The ground-truth COCO API object of the chosen backend, loaded quietly."""
    if use_fast_impl:
        from faster_coco_eval import COCO

        return COCO(json_file)
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(json_file)


def _load_results(coco_gt: Any, results: List[Dict[str, Any]]) -> Any:
    """Detections as a COCO API object of ``coco_gt``'s class; ``results`` is not modified.

    An empty list gives an object with the ground truth's images and categories and no
    annotations (pycocotools' ``loadRes`` cannot take an empty list).
    """
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(copy.deepcopy(results))
    coco_dt = type(coco_gt)()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


def run_coco_eval(
    coco_gt: Any,
    results: List[Dict[str, Any]],
    iou_type: str,
    max_dets_per_image: int,
    use_fast_impl: bool,
    image_ids: Optional[Sequence[Any]] = None,
) -> Any:
    """Match ``results`` (COCO result dicts with dataset category ids) to ``coco_gt`` and
    accumulate precision/recall, with ``params.maxDets = [1, 10, max_dets_per_image]``, over the
    ground-truth images ``image_ids`` (all of them when None).

    For ``segm`` the results' boxes are dropped first, so that, as for the ground truth, an
    instance's area (which decides small/medium/large) is its mask area.
    Returns the evaluated COCOeval object (``.eval["precision"]`` filled, ``summarize()`` not run).
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if iou_type == "segm":
        missing = sum("segmentation" not in r for r in results)
        if missing:
            raise ValueError(f"segm evaluation: {missing} of {len(results)} results have no 'segmentation'")
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    coco_dt = _load_results(coco_gt, results)
    if use_fast_impl:
        from faster_coco_eval import COCOeval_faster

        coco_eval = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=logger.debug)
    else:
        from pycocotools.cocoeval import COCOeval

        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    coco_eval.params.maxDets = sorted({1, 10, int(max_dets_per_image)})
    if image_ids is not None:
        coco_eval.params.imgIds = sorted(image_ids, key=str)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval


def _mean_valid(precision: np.ndarray) -> float:
    """Mean of the entries > -1 (-1 marks "no ground truth"); NaN when there are none."""
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else float("nan")


def _index_of(values: Sequence[float], value: float, what: str) -> int:
    matches = np.flatnonzero(np.isclose(np.asarray(values, dtype=np.float64), value))
    if matches.size != 1:
        raise ValueError(f"COCOeval params have no unique {what} {value} (have {list(values)})")
    return int(matches[0])


def summarize_precision(coco_eval: Any, max_dets_per_image: int) -> Dict[str, float]:
    """``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` as fractions in [0, 1] (NaN where no
    ground truth falls in the range), at ``max_dets_per_image`` detections per image."""
    params = coco_eval.params
    precision = np.asarray(coco_eval.eval["precision"])  # [IoU, recall, category, area, maxDets]
    max_det_index = _index_of(params.maxDets, max_dets_per_image, "maxDets entry")
    stats = {}
    for name, (iou_threshold, area_label) in DETECTION_METRICS.items():
        selected = precision[..., list(params.areaRngLbl).index(area_label), max_det_index]
        if iou_threshold is not None:
            selected = selected[_index_of(params.iouThrs, iou_threshold, "IoU threshold")]
        stats[name] = _mean_valid(selected)
    return stats


def per_category_precision(coco_eval: Any, max_dets_per_image: int) -> Dict[int, float]:
    """AP over IoU 0.50:0.95, all areas, per dataset category id, as fractions (NaN without
    ground truth of that category)."""
    params = coco_eval.params
    precision = np.asarray(coco_eval.eval["precision"])
    max_det_index = _index_of(params.maxDets, max_dets_per_image, "maxDets entry")
    area_index = list(params.areaRngLbl).index("all")
    return {
        int(category_id): _mean_valid(precision[:, :, k, area_index, max_det_index])
        for k, category_id in enumerate(params.catIds)
    }
