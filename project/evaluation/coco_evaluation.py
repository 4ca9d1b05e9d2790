"""``COCOEvaluator``: COCO bbox and mask AP of instance predictions on a registered dataset."""

from __future__ import annotations

import collections
import itertools
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..data.catalog import DatasetCatalog, MetadataCatalog
from ..data.datasets.coco import convert_to_coco_json, save_coco_json
from ..structures import BitMasks, BoxMode, CroppedBitMasks, Instances
from ..structures.rle import RLE, encode_crop, encode_mask
from ..utils.comm import gather_to_main_process
from .coco_metrics import (
    fast_coco_eval_available,
    load_coco_ground_truth,
    per_category_precision,
    run_coco_eval,
    summarize_precision,
)
from .evaluator import DatasetEvaluator
from .testing import create_per_category_table, create_small_table

logger = logging.getLogger(__name__)

SUPPORTED_TASKS = ("bbox", "segm")
RESULTS_FILE_NAME = "coco_instances_results.json"


def mask_rles(masks: Union[torch.Tensor, BitMasks, CroppedBitMasks]) -> List[RLE]:
    """Compressed RLE (``counts`` a str) of each predicted mask: rows of an (N, H, W) tensor or
    ``BitMasks``, encoded one at a time, or crops of a ``CroppedBitMasks``, encoded without
    building any full-image array."""
    if isinstance(masks, CroppedBitMasks):
        return [encode_crop(crop) for crop in masks.crops]
    dense = masks.tensor if isinstance(masks, BitMasks) else masks
    return [encode_mask(mask) for mask in dense.detach().cpu().numpy()]


def instances_to_coco_json(instances: Instances, image_id: int) -> List[Dict[str, Any]]:
    """One image's predictions as COCO result dicts.

    ``instances`` has ``pred_boxes`` (Boxes, XYXY absolute pixels), ``scores``, ``pred_classes``
    and optionally ``pred_masks`` (N x H x W, full image, or ``CroppedBitMasks``). Results carry
    ``bbox`` in XYWH, ``score``, the model's (contiguous) ``category_id`` and, with masks,
    ``segmentation`` as a compressed RLE whose ``counts`` is a str (JSON-serialisable).
    """
    if len(instances) == 0:
        return []
    boxes = BoxMode.convert(instances.pred_boxes.tensor.detach().cpu().double(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    boxes = boxes.tolist()
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    results = [
        {"image_id": image_id, "category_id": int(c), "bbox": b, "score": float(s)}
        for b, s, c in zip(boxes, scores, classes)
    ]
    if instances.has("pred_masks"):
        for result, rle in zip(results, mask_rles(instances.pred_masks)):
            result["segmentation"] = rle
    return results


class COCOEvaluator(DatasetEvaluator):
    """COCO AP (in percent, like Detectron2) of ``{"instances": Instances}`` outputs.

    Ground truth is ``metadata.json_file`` when set and present; otherwise the registered dataset
    is converted to COCO JSON and cached as ``<output_dir>/<dataset_name>_coco_format.json``.
    Predicted contiguous class ids are mapped back to dataset ids through metadata
    ``thing_dataset_id_to_contiguous_id`` when present.

    Every ground-truth image is evaluated: an image never processed counts as one with no
    detections. When no detections at all were made, AP is computed all the same (0 for every
    category that has ground truth) after a warning. Metrics that have no ground truth to be
    measured on (e.g. ``APs`` without small objects) are NaN.

    Masks may come as an (N, H, W) tensor or as ``CroppedBitMasks`` (``accepts_cropped_masks``):
    both give the same RLE, the latter without any full-image array.
    """

    accepts_cropped_masks = True

    def __init__(
        self,
        dataset_name: str,
        tasks: Optional[Sequence[str]] = None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        max_dets_per_image: Optional[int] = None,
        use_fast_impl: bool = True,
        allow_cached_coco: bool = True,
    ):
        """
        Args:
            dataset_name: a dataset registered in DatasetCatalog / MetadataCatalog.
            tasks: subset of ("bbox", "segm"); None infers it from the predictions ("segm" when
                they have masks).
            distributed: gather the predictions of all processes onto rank 0, which evaluates;
                other ranks return {}.
            output_dir: where ``coco_instances_results.json`` (and a converted ground truth) go.
            max_dets_per_image: detections per image that count for AP (COCO's 100 when None).
            use_fast_impl: use faster-coco-eval when importable, else pycocotools' COCOeval.
            allow_cached_coco: reuse a converted ground truth already in ``output_dir``.
        """
        if tasks is not None:
            tasks = tuple(tasks)
            unknown = [t for t in tasks if t not in SUPPORTED_TASKS]
            if unknown or not tasks:
                raise ValueError(f"COCOEvaluator tasks must be a non-empty subset of {SUPPORTED_TASKS}, got {tasks}")
        self._tasks = tasks
        self._distributed = distributed
        self._output_dir = output_dir
        self._max_dets_per_image = 100 if max_dets_per_image is None else int(max_dets_per_image)
        if self._max_dets_per_image < 1:
            raise ValueError(f"max_dets_per_image must be a positive number of detections, got {max_dets_per_image}")
        if use_fast_impl and not fast_coco_eval_available():
            logger.warning("faster-coco-eval is not installed; falling back to pycocotools' COCOeval")
            use_fast_impl = False
        self._use_fast_impl = use_fast_impl

        self._dataset_name = dataset_name
        self._metadata = MetadataCatalog.get(dataset_name)
        # Read when evaluating, not now: loading the dataset (which Detectron2's tutorials do
        # after building the evaluator) is what records the class-id mapping in the metadata.
        self._contiguous_to_dataset_id: Optional[Dict[int, int]] = None
        self._gt_json_file = self._ground_truth_json(allow_cached_coco)
        self._coco_gt = load_coco_ground_truth(self._gt_json_file, use_fast_impl)
        self._predictions: List[Dict[str, Any]] = []

    def _ground_truth_json(self, allow_cached: bool) -> str:
        json_file = self._metadata.get("json_file")
        if json_file and os.path.isfile(json_file):
            return json_file
        if json_file:
            logger.warning(
                "dataset '%s': metadata json_file %s does not exist; converting the registered dataset instead",
                self._dataset_name,
                json_file,
            )
        if self._output_dir is None:
            raise ValueError(
                f"COCOEvaluator('{self._dataset_name}'): the dataset has no COCO json_file in its metadata, "
                "so its ground truth must be converted to COCO format; pass output_dir to write it to"
            )
        cache_path = os.path.join(self._output_dir, f"{self._dataset_name}_coco_format.json")
        convert_to_coco_json(self._dataset_name, cache_path, allow_cached=allow_cached)
        return cache_path

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Convert each image's ``outputs[i]["instances"]`` to COCO results for ``inputs[i]["image_id"]``."""
        if len(inputs) != len(outputs):
            raise ValueError(f"COCOEvaluator.process: {len(inputs)} inputs but {len(outputs)} outputs")
        for model_input, output in zip(inputs, outputs):
            if "image_id" not in model_input:
                raise ValueError(f"COCOEvaluator.process: an input has no 'image_id' (fields: {sorted(model_input)})")
            if "instances" not in output:
                raise ValueError(f"COCOEvaluator.process: an output has no 'instances' (fields: {sorted(output)})")
            instances = output["instances"].to(torch.device("cpu"))
            image_id = model_input["image_id"]
            self._predictions.append({"image_id": image_id, "instances": instances_to_coco_json(instances, image_id)})

    def evaluate(self) -> Dict[str, Any]:
        """Metrics ``{"bbox": {...}, "segm": {...}}`` in percent, with ``AP-<class>`` entries;
        {} on processes other than rank 0 when distributed."""
        predictions = self._predictions
        if self._distributed:
            gathered = gather_to_main_process(self._predictions)
            if gathered is None:
                return {}
            predictions = list(itertools.chain.from_iterable(gathered))
        if not predictions:
            logger.warning("COCOEvaluator: no image was processed; nothing to evaluate")
            return {}
        self._check_images(predictions)

        coco_results = [r for p in predictions for r in p["instances"]]
        self._contiguous_to_dataset_id = self._read_class_id_mapping()
        self._map_to_dataset_category_ids(coco_results)
        if self._output_dir:
            path = os.path.join(self._output_dir, RESULTS_FILE_NAME)
            save_coco_json(coco_results, path)
            logger.info("Saved %d COCO results to %s", len(coco_results), path)
        if not coco_results:
            logger.warning("COCOEvaluator: the model made no detection on %d images; AP is 0", len(predictions))

        tasks = self._tasks_to_run(coco_results)
        logger.info(
            "Evaluating %s on %d images with %s (max %d detections per image)",
            "/".join(tasks),
            len(predictions),
            "faster-coco-eval" if self._use_fast_impl else "pycocotools",
            self._max_dets_per_image,
        )
        results: Dict[str, Any] = OrderedDict()
        for task in tasks:
            coco_eval = run_coco_eval(
                self._coco_gt,
                coco_results,
                task,
                self._max_dets_per_image,
                self._use_fast_impl,
                image_ids=[p["image_id"] for p in predictions],
            )
            results[task] = self._derive_metrics(coco_eval, task)
        return results

    def _check_images(self, predictions: List[Dict[str, Any]]) -> None:
        """Each processed image must be a ground-truth image, processed once."""
        counts = collections.Counter(p["image_id"] for p in predictions)
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            raise ValueError(
                f"COCOEvaluator: {len(repeated)} images were processed more than once (e.g. image_id {repeated[:5]}); "
                "the inference data loader must yield every image exactly once across processes"
            )
        gt_ids = set(self._coco_gt.getImgIds())
        unknown = sorted(set(counts) - gt_ids, key=str)
        if unknown:
            raise ValueError(
                f"COCOEvaluator: image_id {unknown[:5]} ({len(unknown)} in all) are not in the ground truth "
                f"{self._gt_json_file}"
            )
        if len(counts) < len(gt_ids):
            logger.warning(
                "COCOEvaluator: %d of the %d ground-truth images were processed (the others were skipped when the "
                "dataset was loaded, or not given); the AP is over the processed images only",
                len(counts),
                len(gt_ids),
            )

    def _read_class_id_mapping(self) -> Optional[Dict[int, int]]:
        """Contiguous class id -> ground-truth category id, from the metadata's
        ``thing_dataset_id_to_contiguous_id``; None (ids kept as they are) where it has none.

        A dataset loader records that mapping when the dataset is loaded. When the ground truth
        is the metadata's ``json_file`` and nothing has loaded the dataset in this process (e.g.
        predictions fed to ``process`` from a loop over image files), the dataset is loaded here
        once, so that class k is never scored as category k by mistake.
        """
        key = "thing_dataset_id_to_contiguous_id"
        converted = self._gt_json_file != self._metadata.get("json_file")
        if self._metadata.get(key) is None and not converted and self._dataset_name in DatasetCatalog:
            logger.info("COCOEvaluator: loading dataset '%s' to learn its %s", self._dataset_name, key)
            DatasetCatalog.get(self._dataset_name)
        mapping = self._metadata.get(key)
        if not mapping:
            return None
        return {int(contiguous): int(dataset_id) for dataset_id, contiguous in mapping.items()}

    def _to_dataset_id(self, class_id: int) -> int:
        """The ground truth's category id of a model (contiguous) class id."""
        if self._contiguous_to_dataset_id is None:
            return class_id
        if class_id not in self._contiguous_to_dataset_id:
            raise ValueError(
                f"COCOEvaluator: class id {class_id} is not a contiguous id of the metadata "
                f"thing_dataset_id_to_contiguous_id of '{self._dataset_name}' "
                f"(known: {sorted(self._contiguous_to_dataset_id)})"
            )
        return self._contiguous_to_dataset_id[class_id]

    def _map_to_dataset_category_ids(self, coco_results: List[Dict[str, Any]]) -> None:
        """Replace contiguous class ids by the ground truth's category ids, in place."""
        for result in coco_results:
            result["category_id"] = self._to_dataset_id(result["category_id"])
        gt_category_ids = set(self._coco_gt.getCatIds())
        unknown = sorted({r["category_id"] for r in coco_results} - gt_category_ids)
        if unknown:
            raise ValueError(
                f"COCOEvaluator: predicted category ids {unknown} are not categories of {self._gt_json_file} "
                f"(ids {sorted(gt_category_ids)}); set metadata 'thing_dataset_id_to_contiguous_id' of "
                f"'{self._dataset_name}' to map the model's classes to them"
            )

    @staticmethod
    def _tasks_from_results(coco_results: List[Dict[str, Any]]) -> tuple:
        has_masks = any("segmentation" in r for r in coco_results)
        return ("bbox", "segm") if has_masks else ("bbox",)

    def _tasks_to_run(self, coco_results: List[Dict[str, Any]]) -> tuple:
        """The tasks asked for, or those the results allow. Mask AP needs a mask on every
        ground-truth annotation (COCOeval fails inside otherwise): without, "segm" is dropped
        with a warning when it was inferred, and is an error when it was asked for."""
        tasks = self._tasks or self._tasks_from_results(coco_results)
        if "segm" not in tasks:
            return tasks
        annotations = self._coco_gt.dataset.get("annotations", [])
        unmasked = sum(1 for ann in annotations if not ann.get("segmentation"))
        if not unmasked:
            return tasks
        problem = (
            f"COCOEvaluator: {unmasked} of {len(annotations)} ground-truth annotations in {self._gt_json_file} "
            "have no 'segmentation', so mask AP (segm) cannot be measured"
        )
        if self._tasks:
            raise ValueError(
                f"{problem}; give every annotation a polygon or RLE mask, or evaluate boxes only with tasks=('bbox',)"
            )
        logger.warning("%s; evaluating boxes only", problem)
        return tuple(t for t in tasks if t != "segm")

    def _derive_metrics(self, coco_eval: Any, task: str) -> Dict[str, float]:
        """Summary and per-category AP in percent, logged as tables."""
        summary = summarize_precision(coco_eval, self._max_dets_per_image)
        metrics = {name: 100.0 * value for name, value in summary.items()}
        logger.info("Evaluation results for %s:\n%s", task, create_small_table(metrics))
        if not np.isfinite(list(metrics.values())).all():
            logger.info("Some %s metrics are NaN: no ground truth falls in their range", task)

        class_names = self._metadata.get("thing_classes")
        if class_names is None or len(class_names) <= 1:
            return metrics
        per_category_ap = per_category_precision(coco_eval, self._max_dets_per_image)
        per_category = []
        for contiguous_id, name in enumerate(class_names):
            ap = per_category_ap.get(self._to_dataset_id(contiguous_id), float("nan"))
            per_category.append((str(name), 100.0 * ap))
        logger.info("Per-category %s AP:\n%s", task, create_per_category_table(per_category))
        metrics.update({f"AP-{name}": ap for name, ap in per_category})
        return metrics
