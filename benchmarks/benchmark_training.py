"""Seconds per training step on the DSB2018 recipe (``+experiment=finetune_dsb2018``), optionally
next to Detectron2's own model and optimizer on the same batches, in alternating steps.

    python -m benchmarks.benchmark_training --steps 6 [--compare-detectron2]

Real DSB2018 training batches (2 images, shorter side 384/448/512) are mapped once, before any
timing. Each timed step is one ``run_step`` of the framework's own ``SimpleTrainer``: forward,
backward, the recipe's per-parameter gradient clipping, SGD and the loss metrics. With
``--compare-detectron2`` both models start from the same weights and each batch is stepped by
both, back to back, taking turns at going first, so drift in the machine's speed falls on both
alike; the first batch is a warm-up and is not counted.
The data loading of a real run happens in a worker process, beside these steps, in both.
Prints JSON; with Detectron2, also ours over its step times: median per-pair ratio, ratio of the
sums with a bootstrap 95% interval, and on how many pairs ours was faster.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import time
from typing import Dict, List

import torch

from benchmarks.common import as_detectron2_batch, data_root, detectron2_available, detectron2_recipe, peak_rss_mb
from project.config import get_cfg
from project.data import build_detection_train_loader
from project.engine import EventStorage, SimpleTrainer
from project.modeling import build_model
from project.solver import build_gradient_clipper, build_optimizer

# The recipe benchmarked; the report names it and reads everything else from its config.
EXPERIMENT = "finetune_dsb2018"


def training_batches(cfg, count: int) -> List[List[dict]]:
    """The first ``count`` batches of the recipe's training loader, mapped in this process."""
    return list(itertools.islice(build_detection_train_loader(cfg), count))


class TimedTrainer:
    """A framework's own ``SimpleTrainer`` reading fixed batches; ``step()`` times one
    ``run_step`` (forward, backward, clipping, SGD, metrics) inside that framework's storage."""

    def __init__(self, trainer, storage_class):
        self.trainer, self.storage_class = trainer, storage_class

    def step(self) -> float:
        with self.storage_class(self.trainer.iter):
            start = time.perf_counter()
            self.trainer.run_step()
            seconds = time.perf_counter() - start
        self.trainer.iter += 1
        return seconds


def detectron2_trainer(cfg, state_dict: Dict[str, torch.Tensor], batches: List[List[dict]]) -> TimedTrainer:
    from detectron2 import model_zoo
    from detectron2.engine import SimpleTrainer as D2SimpleTrainer
    from detectron2.modeling import build_model as d2_build_model
    from detectron2.solver import build_optimizer as d2_build_optimizer
    from detectron2.utils.events import EventStorage as D2EventStorage

    d2_cfg = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml")
    d2_cfg.merge_from_list(detectron2_recipe(cfg))
    model = d2_build_model(d2_cfg)
    model.load_state_dict(state_dict)
    # Its optimizer clips each parameter's gradient itself.
    trainer = D2SimpleTrainer(model, [as_detectron2_batch(b) for b in batches], d2_build_optimizer(d2_cfg, model))
    return TimedTrainer(trainer, D2EventStorage)


def paired_ratios(ours: List[float], theirs: List[float], resamples: int = 10000) -> Dict[str, object]:
    """Ours over theirs for step times taken in pairs on the same batches: the median per-pair
    ratio, the ratio of the sums with a bootstrap 95% interval (pairs resampled, fixed seed),
    and on how many pairs ours was faster."""
    pairs = list(zip(ours, theirs))
    rng = random.Random(0)
    resampled = sorted(
        sum(a for a, _ in sample) / sum(b for _, b in sample)
        for sample in (rng.choices(pairs, k=len(pairs)) for _ in range(resamples))
    )
    return {
        "median_pair_ratio": statistics.median(a / b for a, b in pairs),
        "ratio_of_sums": sum(ours) / sum(theirs),
        "ratio_of_sums_95ci": [resampled[int(0.025 * resamples)], resampled[int(0.975 * resamples) - 1]],
        "pairs_ours_faster": f"{sum(a < b for a, b in pairs)} of {len(pairs)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per framework (after one warm-up)")
    parser.add_argument("--compare-detectron2", action="store_true")
    args = parser.parse_args()
    if not (data_root() / "dsb2018").is_dir():
        raise SystemExit(f"no DSB2018 data under {data_root()}; set PROJECT_DATA_ROOT to the shared data folder")

    os.environ["PROJECT_DATA_ROOT"] = str(data_root())  # the experiment's dataset paths read it
    cfg = get_cfg([f"+experiment={EXPERIMENT}", "MODEL.DEVICE=cpu", "DATALOADER.NUM_WORKERS=0"])
    torch.manual_seed(cfg.SEED)
    model = build_model(cfg)
    batches = training_batches(cfg, args.steps + 1)
    ours = SimpleTrainer(model, batches, build_optimizer(cfg, model), grad_clipper=build_gradient_clipper(cfg))
    trainers = {"ours": TimedTrainer(ours, EventStorage)}
    if args.compare_detectron2:
        if not detectron2_available():
            raise SystemExit("--compare-detectron2: detectron2 is not importable in this environment")
        trainers["detectron2"] = detectron2_trainer(cfg, model.state_dict(), batches)

    times: Dict[str, List[float]] = {name: [] for name in trainers}
    for index in range(len(batches)):
        order = list(trainers) if index % 2 == 0 else list(reversed(trainers))  # neither always goes first
        for name in order:
            seconds = trainers[name].step()
            if index > 0:
                times[name].append(seconds)

    report = {
        "recipe": {  # read from the config, so the report follows the recipe as it is
            "experiment": EXPERIMENT,
            "depth": cfg.MODEL.RESNETS.DEPTH,
            "weights": cfg.MODEL.WEIGHTS or "none (from scratch)",
            "backbone_norm": cfg.MODEL.RESNETS.NORM,
            "fpn_norm": cfg.MODEL.FPN.NORM,
            "mask_head_norm": cfg.MODEL.ROI_MASK_HEAD.NORM,
            "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
            "min_size_train": list(cfg.INPUT.MIN_SIZE_TRAIN),
        },
        "device": f"cpu x{torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "image_sizes": [[list(item["image"].shape[1:]) for item in batch] for batch in batches[1:]],
        "results": {name: {"s_per_iter": statistics.median(t), "all_s_per_iter": t} for name, t in times.items()},
        "peak_rss_mb": peak_rss_mb(),
    }
    if "detectron2" in times:
        report["ours_over_detectron2"] = paired_ratios(times["ours"], times["detectron2"])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
