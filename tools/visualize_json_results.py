#!/usr/bin/env python
r"""Draw the predictions of a COCO results file next to the ground truth, one PNG per image.

    python tools/visualize_json_results.py \
        --input output/finetune_dsb2018/inference/dsb2018_val/coco_instances_results.json \
        --output vis/dsb2018_val_predictions +experiment=finetune_dsb2018
    python tools/visualize_json_results.py --input results.json --output vis/val --dataset dsb2018_val \
        --conf-threshold 0.7 --no-labels +experiment=finetune_dsb2018

--input is a list of COCO results, as evaluation writes to coco_instances_results.json:
objects with image_id, category_id (the dataset's category ids, as in its annotation file),
bbox (XYWH, absolute pixels), score and, optionally, segmentation (RLE). Category ids are
mapped to the dataset's classes through its metadata thing_dataset_id_to_contiguous_id when
it has one (taken as class indices otherwise).

Every image of the dataset (--dataset, else the first of DATASETS.TEST) gets one picture,
named after its image file (<stem>.png): on the left its results with a score of at least
--conf-threshold, on the right its ground truth. Both halves colour by class (the metadata's
thing_colors), so a detection has the colour of the object it finds. Positional arguments are
config overrides, as for train_net.py; they also register datasets (DATASETS.REGISTER).

Results for an image id or a category id the dataset does not have, or with a mask of another
size than their image, are counted, reported and left out; an unreadable image is reported
and skipped. A missing or malformed --input, an unknown dataset name, a bad override or an
output folder that cannot be written ends the tool with a message and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.data import MetadataCatalog
from project.data.detection_utils import read_image
from project.engine.cli import (
    ArgumentParser,
    CommandLineError,
    load_config,
    load_dataset,
    picture_path,
    prepare_output_dir,
    require_dataset_name,
    run_command,
    save_picture,
    split_overrides,
)
from project.structures import Boxes, BoxMode, Instances
from project.visualization import ColorMode, VisImage, Visualizer

PROG = "visualize_json_results.py"
REQUIRED_KEYS = ("image_id", "category_id", "bbox", "score")

# Why results were left out, as counted in the summary.
BELOW_THRESHOLD = "below --conf-threshold"
UNKNOWN_IMAGE = "image id not in the dataset"
UNKNOWN_CATEGORY = "category id not in the dataset"
MASK_SIZE = "mask of another size than its image"


def build_parser() -> argparse.ArgumentParser:
    """The command line: options, then Hydra overrides as positional arguments."""
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="COCO results JSON (coco_instances_results.json)")
    parser.add_argument("--output", required=True, help="folder for the pictures (created if needed)")
    parser.add_argument("--dataset", help="registered dataset of the results (default: the first of DATASETS.TEST)")
    parser.add_argument(
        "--conf-threshold", type=float, default=0.5, help="draw results with at least this score (default: 0.5)"
    )
    parser.add_argument("--no-boxes", action="store_true", help="leave the boxes out (masks and labels only)")
    parser.add_argument("--no-labels", action="store_true", help="leave the class names and scores out")
    return parser


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _result_problem(result: Any) -> Optional[str]:
    """What makes ``result`` no COCO result, or None."""
    if not isinstance(result, dict):
        return f"is a {type(result).__name__}, not an object"
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        return f"lacks {', '.join(missing)}"
    bbox = result["bbox"]
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        return f"has bbox {bbox!r}; expected [x, y, width, height]"
    if not isinstance(result["image_id"], (int, str)) or isinstance(result["image_id"], bool):
        return f"has image_id {result['image_id']!r}; expected a number or a string"
    if not isinstance(result["category_id"], int) or isinstance(result["category_id"], bool):
        return f"has category_id {result['category_id']!r}; expected an integer"
    if not _is_number(result["score"]):
        return f"has score {result['score']!r}; expected a number"
    segm = result.get("segmentation")
    if segm is not None and not (isinstance(segm, dict) and "size" in segm and "counts" in segm):
        return "has a segmentation that is no RLE (an object with size and counts)"
    return None


def read_results(path: str) -> List[Dict[str, Any]]:
    """The results of the COCO results file ``path``; raises ``CommandLineError`` saying what is wrong
    when it is missing, not JSON, or not a list of results."""
    if not os.path.isfile(path):
        raise CommandLineError(f"--input {path}: no such file")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CommandLineError(f"--input {path}: not a JSON file ({error})") from None
    if isinstance(data, dict) and "annotations" in data:
        raise CommandLineError(
            f"--input {path}: this is a COCO annotation file (it has 'images' and 'annotations'), not results; "
            "pass the coco_instances_results.json that evaluation writes"
        )
    if not isinstance(data, list):
        raise CommandLineError(
            f"--input {path}: expected a JSON list of COCO results (objects with {', '.join(REQUIRED_KEYS)}), "
            f"got a JSON {type(data).__name__}"
        )
    for index, result in enumerate(data):
        problem = _result_problem(result)
        if problem:
            raise CommandLineError(f"--input {path}: result #{index} {problem}")
    return data


def class_id_map(metadata: Any) -> Optional[Dict[int, int]]:
    """Dataset category id -> class index, from ``thing_dataset_id_to_contiguous_id``; None
    when the metadata has none."""
    mapping = metadata.get("thing_dataset_id_to_contiguous_id")
    return {int(k): int(v) for k, v in mapping.items()} if mapping else None


def sort_results(
    results: Sequence[Mapping[str, Any]],
    dicts: Sequence[Mapping[str, Any]],
    id_map: Optional[Dict[int, int]],
    num_classes: Optional[int],
    threshold: float,
) -> Tuple[Dict[Any, List[Dict[str, Any]]], Counter, List[Any]]:
    """The results to draw per image id, each with its class index in ``class``; the counts of
    those left out, per reason; and the image ids not in the dataset, in order of appearance."""
    sizes = {d["image_id"]: (d["height"], d["width"]) for d in dicts}
    kept: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    left_out: Counter = Counter()
    unknown_ids: Dict[Any, None] = {}
    for result in results:
        image_id = result["image_id"]
        category = result["category_id"]
        klass = id_map.get(category) if id_map is not None else category
        segm = result.get("segmentation")
        if image_id not in sizes:
            left_out[UNKNOWN_IMAGE] += 1
            unknown_ids[image_id] = None
        elif klass is None or klass < 0 or (num_classes is not None and klass >= num_classes):
            left_out[UNKNOWN_CATEGORY] += 1
        elif result["score"] < threshold:
            left_out[BELOW_THRESHOLD] += 1
        elif segm is not None and tuple(int(s) for s in segm["size"]) != tuple(sizes[image_id]):
            left_out[MASK_SIZE] += 1
        else:
            kept[image_id].append(dict(result, **{"class": klass}))
    return kept, left_out, list(unknown_ids)


def results_to_instances(results: Sequence[Mapping[str, Any]], image_size: Tuple[int, int]) -> Instances:
    """``Instances`` with ``pred_boxes`` (XYXY), ``scores``, ``pred_classes`` (from each
    result's ``class``) and, when every result has one, ``pred_masks`` (their RLE)."""
    instances = Instances(image_size)
    if not results:
        return instances
    xywh = np.array([r["bbox"] for r in results], dtype=np.float64)
    instances.pred_boxes = Boxes(torch.as_tensor(BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)))
    instances.scores = torch.tensor([float(r["score"]) for r in results])
    instances.pred_classes = torch.tensor([r["class"] for r in results], dtype=torch.int64)
    if all(r.get("segmentation") is not None for r in results):
        instances.pred_masks = [r["segmentation"] for r in results]
    return instances


def draw_side_by_side(
    dic: Mapping[str, Any], results: Sequence[Mapping[str, Any]], metadata: Any, options: Mapping[str, bool]
) -> VisImage:
    """The image with ``results`` drawn on the left and the dict's ground truth on the right.
    Raises ``ValueError`` (``BadAnnotationError`` included) when the image cannot be read or
    does not fit its annotations."""
    image = read_image(dic["file_name"], "RGB")
    height, width = image.shape[:2]
    predicted = Visualizer(image, metadata, instance_mode=ColorMode.SEGMENTATION, **options)
    truth = Visualizer(image, metadata, instance_mode=ColorMode.SEGMENTATION, **options)
    left = predicted.draw_instance_predictions(results_to_instances(results, (height, width))).get_image()
    right = truth.draw_dataset_dict(dic).get_image()
    return VisImage(np.concatenate([left, right], axis=1))


def _report_unknown_images(unknown_ids: Sequence[Any], count: int, name: str) -> None:
    shown = ", ".join(str(i) for i in unknown_ids[:5]) + (", ..." if len(unknown_ids) > 5 else "")
    print(
        f"{PROG}: {count} results name {len(unknown_ids)} image ids that dataset '{name}' does not have ({shown}); "
        "they are left out. Were the results computed on another dataset (see --dataset)?",
        file=sys.stderr,
    )


def main(argv: Sequence[str]) -> Dict[str, Any]:
    """Draw one picture per image of the dataset and print the summary line; returns the
    counts: ``written``, ``skipped`` (unreadable images), ``results``, ``drawn`` (results
    drawn), ``left_out`` (per reason), ``unknown_image_ids``, ``files``, ``dataset``. Raises
    ``CommandLineError`` (and the other ``USER_ERRORS`` of ``project.engine.cli``) for bad input."""
    args, overrides = split_overrides(build_parser(), argv)
    results = read_results(args.input)
    cfg = load_config(overrides)
    name = require_dataset_name(args.dataset, list(cfg.DATASETS.TEST), "DATASETS.TEST")
    prepare_output_dir(args.output, "--output")
    dicts = load_dataset(cfg, name)
    metadata = MetadataCatalog.get(name)
    classes = metadata.get("thing_classes")
    per_image, left_out, unknown_ids = sort_results(
        results, dicts, class_id_map(metadata), len(classes) if classes else None, args.conf_threshold
    )
    if unknown_ids:
        _report_unknown_images(unknown_ids, left_out[UNKNOWN_IMAGE], name)

    options = {"boxes": not args.no_boxes, "labels": not args.no_labels}
    files: List[str] = []
    taken: Set[str] = set()
    skipped = drawn = 0
    for dic in tqdm(dicts, desc="drawing", unit="image", dynamic_ncols=True):
        image_results = per_image.get(dic["image_id"], [])
        try:
            picture = draw_side_by_side(dic, image_results, metadata, options)
        except ValueError as error:
            skipped += 1
            tqdm.write(f"{PROG}: skipped {error}", file=sys.stderr)
            continue
        path = picture_path(args.output, Path(dic["file_name"]).stem, taken)
        save_picture(picture, path)
        files.append(path)
        drawn += len(image_results)

    reasons = ", ".join(f"{n} {reason}" for reason, n in left_out.most_common())
    print(
        f"wrote {len(files)} pictures to {args.output}; {skipped} images skipped (unreadable); "
        f"drew {drawn} of {len(results)} results" + (f" (left out: {reasons})" if reasons else "")
    )
    return {
        "dataset": name,
        "written": len(files),
        "skipped": skipped,
        "results": len(results),
        "drawn": drawn,
        "left_out": dict(left_out),
        "unknown_image_ids": unknown_ids,
        "files": files,
    }


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:], PROG))
