"""Images per second of the training DatasetMapper on DSB2018 train: the first 120 images
(5,823 nuclei as RLE masks), multi-scale shorter side 640-800 (longer at most 1333) and
horizontal flip, bitmask instances, mapped one after another in one process (one worker).

    python -m benchmarks.benchmark_mapper [--images 120] [--rounds 3] [--compare-detectron2]

With ``--compare-detectron2`` and Detectron2 importable (run with the Python of the environment
that has it, see benchmarks/README.md), Detectron2's DatasetMapper maps the same images with the same
augmentations; rounds of the two alternate so that machine noise hits both alike. Prints one
JSON object with the median images/s of each and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Dict, List

import numpy as np

from benchmarks.common import data_root, detectron2_available
from project.data import DatasetMapper, load_coco_json
from project.data import transforms as T

SHORT_EDGES = (640, 672, 704, 736, 768, 800)
MAX_SIZE = 1333
TARGET_SPEEDUP = 1.5


def our_mapper() -> Callable[[Dict], Dict]:
    augmentations = [T.ResizeShortestEdge(SHORT_EDGES, MAX_SIZE, "choice"), T.RandomFlip(0.5)]
    return DatasetMapper(
        is_train=True,
        augmentations=augmentations,
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format="bitmask",
    )


def detectron2_mapper_and_dicts(json_file: str, image_root: str, count: int):
    """Detectron2's mapper with the same augmentations, and its own loading of the same file."""
    import detectron2.data.transforms as d2T
    from detectron2.data import DatasetMapper as D2DatasetMapper
    from detectron2.data.datasets import load_coco_json as d2_load_coco_json

    augmentations = [d2T.ResizeShortestEdge(SHORT_EDGES, MAX_SIZE, "choice"), d2T.RandomFlip(0.5)]
    mapper = D2DatasetMapper(
        is_train=True,
        augmentations=augmentations,
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format="bitmask",
    )
    return mapper, d2_load_coco_json(json_file, image_root)[:count]


def images_per_second(mapper: Callable[[Dict], Dict], dicts: List[Dict], seed: int) -> float:
    np.random.seed(seed)
    start = time.perf_counter()
    for d in dicts:
        out = mapper(d)
        assert out is not None and len(out["instances"]) > 0
    return len(dicts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-detectron2", action="store_true")
    args = parser.parse_args()

    root = data_root() / "dsb2018"
    json_file, image_root = str(root / "annotations_train.json"), str(root / "train")
    dicts = load_coco_json(json_file, image_root)[: args.images]
    contenders = {"ours": (our_mapper(), dicts)}
    result: Dict = {
        "benchmark": "DatasetMapper images/s, one process",
        "dataset": "dsb2018 train",
        "images": len(dicts),
        "instances": sum(len(d["annotations"]) for d in dicts),
        "augmentations": f"ResizeShortestEdge({list(SHORT_EDGES)}, max {MAX_SIZE}, choice) + horizontal flip",
        "masks": "RLE -> bitmask",
        "rounds": args.rounds,
    }
    if args.compare_detectron2:
        if detectron2_available():
            d2_mapper, d2_dicts = detectron2_mapper_and_dicts(json_file, image_root, args.images)
            assert [d["file_name"] for d in d2_dicts] == [d["file_name"] for d in dicts]
            contenders["detectron2"] = (d2_mapper, d2_dicts)
        else:
            result["detectron2"] = "not importable; run with a Python that has detectron2"

    for mapper, some in contenders.values():  # warm the file cache and lazy imports
        images_per_second(mapper, some[:5], seed=0)
    timings: Dict[str, List[float]] = {name: [] for name in contenders}
    for round_index in range(args.rounds):
        for name, (mapper, some) in contenders.items():
            timings[name].append(images_per_second(mapper, some, seed=round_index))
    for name, values in timings.items():
        result[name] = {"images_per_s": round(statistics.median(values), 2), "rounds": [round(v, 2) for v in values]}
    if "detectron2" in timings:
        speedup = result["ours"]["images_per_s"] / result["detectron2"]["images_per_s"]
        result["speedup"] = round(speedup, 2)
        result["target_speedup"] = TARGET_SPEEDUP
        result["meets_target"] = speedup >= TARGET_SPEEDUP
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
