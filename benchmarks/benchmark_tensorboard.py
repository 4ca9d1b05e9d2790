"""What the training-time TensorBoard summaries cost: seconds per training step of a recipe with
its own ``VIS_PERIOD`` and ``TENSORBOARD.HISTOGRAM_PERIOD`` ("default"), with both off ("off"),
and with both firing at every step ("every_step").

    python -m benchmarks.benchmark_tensorboard [--experiment finetune_dsb2018] [--steps 10]

Each variant is its own ``SimpleTrainer`` with the hooks a real run has for these summaries
(``ParameterStatistics`` where on; ``PeriodicWriter`` with ``metrics.jsonl`` and TensorBoard
writers every ``LOG_PERIOD`` steps in all), on its own copy of the same initial weights and the
same real training batches, mapped once before any timing. The variants take turns step by step,
each first in turn, so drift in the machine's speed falls on all alike; the first step is a
warm-up and is not counted. Steps are numbered from 0, so "default" records its summaries at the
multiples of its periods among steps 1..N (none when N is below them): the measured ratio then
shows the cost that every step pays, and ``projected_default_over_off`` adds the cost of the
summaries themselves (``every_step`` minus ``off``) spread over the shorter period, an upper bound.
Step times vary with the batch (image sizes, detections); each batch is stepped by every variant,
so ``default_over_off_median_step_ratio`` compares them batch by batch. Prints JSON.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from benchmarks.common import calibrated_detectron2_pkl, data_root, peak_rss_mb
from project.checkpoint import DetectionCheckpointer
from project.config import get_cfg
from project.data import build_detection_train_loader
from project.engine import EventStorage, SimpleTrainer
from project.engine.hooks import ParameterStatistics, PeriodicWriter
from project.modeling import build_model
from project.solver import build_gradient_clipper, build_optimizer
from project.utils.events import JSONWriter, TensorboardWriter


class SteppedTrainer:
    """A ``SimpleTrainer`` with its hooks, run one timed step at a time inside its own storage,
    as ``TrainerBase.train`` runs them (``before_step``, ``run_step``, ``after_step``)."""

    def __init__(self, cfg, model: torch.nn.Module, batches: List[List[dict]], periods: Dict[str, int], out_dir: str):
        model.vis_period = periods["VIS_PERIOD"]
        mask_head = getattr(getattr(model, "roi_heads", None), "mask_head", None)
        if mask_head is not None:
            mask_head.vis_period = periods["VIS_PERIOD"]
        self.trainer = SimpleTrainer(
            model, iter(batches), build_optimizer(cfg, model), grad_clipper=build_gradient_clipper(cfg)
        )
        writers = [JSONWriter(os.path.join(out_dir, "metrics.jsonl")), TensorboardWriter(out_dir)]
        hook_list = [PeriodicWriter(writers, period=cfg.LOG_PERIOD)]
        if periods["TENSORBOARD.HISTOGRAM_PERIOD"] > 0:
            hook_list.insert(0, ParameterStatistics(model, periods["TENSORBOARD.HISTOGRAM_PERIOD"]))
        self.trainer.register_hooks(hook_list)
        self.trainer.max_iter = len(batches)
        self.storage = EventStorage(0)
        self.trainer.storage = self.storage
        with self.storage:
            self.trainer.before_train()

    def step(self) -> float:
        trainer = self.trainer
        with self.storage:
            start = time.perf_counter()
            trainer.before_step()
            trainer.run_step()
            trainer.after_step()
            seconds = time.perf_counter() - start
        trainer.iter += 1
        return seconds

    def finish(self) -> None:
        with self.storage:
            self.storage.iter = self.trainer.iter
            self.trainer.after_train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="finetune_dsb2018", help="configs/experiment/<name>.yaml")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--weights",
        type=Path,
        default=Path("output/benchmarks/calibrated_R101_FPN.pkl"),
        help="for recipes that start from pretrained weights: a Detectron2-format R101-FPN checkpoint "
        "calibrated on real images, written first if absent (the pretrained weights need network)",
    )
    args = parser.parse_args()

    os.environ["PROJECT_DATA_ROOT"] = str(data_root())  # the experiments' dataset paths read it
    pretrained = bool(get_cfg([f"+experiment={args.experiment}"]).MODEL.WEIGHTS)
    cfg = get_cfg(
        [f"+experiment={args.experiment}", f"MODEL.DEVICE={args.device}", "MODEL.WEIGHTS=", "DATALOADER.NUM_WORKERS=0"]
    )
    default = {"VIS_PERIOD": cfg.VIS_PERIOD, "TENSORBOARD.HISTOGRAM_PERIOD": cfg.TENSORBOARD.HISTOGRAM_PERIOD}
    if not any(default.values()):
        raise SystemExit(f"{args.experiment} sets neither VIS_PERIOD nor TENSORBOARD.HISTOGRAM_PERIOD: nothing to time")
    variants = {
        "off": {"VIS_PERIOD": 0, "TENSORBOARD.HISTOGRAM_PERIOD": 0},
        "default": default,
        "every_step": {"VIS_PERIOD": 1, "TENSORBOARD.HISTOGRAM_PERIOD": 1},
    }

    torch.manual_seed(cfg.SEED)
    batches = list(itertools.islice(build_detection_train_loader(cfg), args.steps + 1))
    initial = build_model(cfg)
    if pretrained:  # random frozen batch norms would make a pretrained recipe diverge at once
        DetectionCheckpointer(initial).load(str(calibrated_detectron2_pkl(args.weights)))
    with tempfile.TemporaryDirectory() as out:
        trainers = {
            name: SteppedTrainer(cfg, copy.deepcopy(initial), batches, periods, os.path.join(out, name))
            for name, periods in variants.items()
        }
        times: Dict[str, List[float]] = {name: [] for name in trainers}
        for index in range(len(batches)):
            names = list(trainers)
            order = names[index % len(names) :] + names[: index % len(names)]  # each goes first in turn
            for name in order:
                seconds = trainers[name].step()
                if index > 0:
                    times[name].append(seconds)
        for trainer in trainers.values():
            trainer.finish()

    mean = {name: statistics.fmean(t) for name, t in times.items()}
    shorter_period = min(p for p in default.values() if p > 0)
    summaries_cost = mean["every_step"] - mean["off"]
    report = {
        "experiment": args.experiment,
        "model": f"R{cfg.MODEL.RESNETS.DEPTH}-FPN, {cfg.SOLVER.IMS_PER_BATCH} images per step, "
        f"shorter side {list(cfg.INPUT.MIN_SIZE_TRAIN)}",
        "weights": str(args.weights) if pretrained else "none (the recipe trains from scratch)",
        "device": args.device if args.device != "cpu" else f"cpu x{torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "timed_steps": args.steps,
        "log_period": cfg.LOG_PERIOD,
        "periods": variants,
        "default_summary_steps_timed": {
            key: [i for i in range(1, len(batches)) if period > 0 and i % period == 0]
            for key, period in default.items()
        },
        "s_per_step": {
            name: {"mean": mean[name], "median": statistics.median(t), "all": t} for name, t in times.items()
        },
        "default_over_off": mean["default"] / mean["off"],
        "default_over_off_median_step_ratio": statistics.median(d / o for d, o in zip(times["default"], times["off"])),
        "summaries_cost_s": summaries_cost,
        "projected_default_over_off": 1 + max(summaries_cost, 0.0) / shorter_period / mean["off"],
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
