"""Time R101-FPN Mask R-CNN inference (s/img, peak memory) at 800x1333, batch 1 and batched,
and training (s/iter and peak GPU memory, 2 images per step); optionally Detectron2 on the same
input and weights in the same run. ``--amp`` adds every setting again under autocast.

    python -m benchmarks.benchmark_inference --device cpu --iters 5 [--compare-detectron2]
    python -m benchmarks.benchmark_inference --device cuda --amp --train-iters 20

Prints one JSON object. Weights are calibrated on real images (no download), so the model
makes realistic numbers of detections. Runs of the two implementations are interleaved so
that machine noise hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import (
    build_detectron2_model,
    calibrated_detectron2_pkl,
    cuda_peak_mb,
    detectron2_available,
    maybe_synchronize,
    peak_rss_mb,
    real_images,
    to_tensor,
)
from project.checkpoint import DetectionCheckpointer
from project.model_zoo import get_config
from project.modeling import build_model


def time_call(fn, device: str) -> float:
    maybe_synchronize(device)
    start = time.perf_counter()
    fn()
    maybe_synchronize(device)
    return time.perf_counter() - start


def inference_inputs(batch: int, device: str):
    images = real_images(batch)
    return [{"image": to_tensor(img, 800, 1333).to(device), "height": 800, "width": 1333} for img in images]


def training_inputs(batch: int, device: str, detectron2_types: bool = False):
    """Real images at 800x1333 with a few boxes and masks each, as training input, built with
    this project's structures or, with ``detectron2_types``, Detectron2's own."""
    if detectron2_types:
        from detectron2.structures import BitMasks, Instances
    else:
        from project.structures import BitMasks, Instances
    inputs = []
    for img in real_images(batch):
        masks = torch.zeros(3, 800, 1333, dtype=torch.bool)
        masks[0, 100:400, 200:500] = True
        masks[1, 300:700, 600:900] = True
        masks[2, 50:250, 1000:1300] = True
        inst = Instances((800, 1333))
        inst.gt_masks = BitMasks(masks)
        inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        inst.gt_classes = torch.tensor([0, 1, 2])
        inputs.append({"image": to_tensor(img, 800, 1333).to(device), "instances": inst})
    return inputs


def training_context(name: str):
    """Detectron2's training code logs into an event storage that must be open."""
    if name == "detectron2":
        from detectron2.utils.events import EventStorage

        return EventStorage(0)
    return contextlib.nullcontext()


def run_inference(model, inputs, amp: bool, device: str):
    with torch.inference_mode(), torch.autocast(device.split(":")[0], enabled=amp):
        return model(inputs)


def time_training(model, name: str, amp: bool, device: str, iters: int):
    """Seconds per SGD step on 2 images at 800x1333 (one warm-up step first), and the peak GPU
    memory allocated during these steps in MiB (None on CPU). ``amp`` runs the forward pass under
    autocast with a GradScaler, as the trainer's ``SOLVER.AMP.ENABLED`` does."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-5, momentum=0.9)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=amp)
    inputs = training_inputs(2, device, detectron2_types=name == "detectron2")

    def step():
        with torch.autocast(device.split(":")[0], enabled=amp):
            losses = model(inputs)
        optimizer.zero_grad()
        scaler.scale(sum(losses.values())).backward()
        scaler.step(optimizer)
        scaler.update()

    with training_context(name):
        step()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times = [time_call(step, device) for _ in range(iters)]
    model.eval()
    return times, cuda_peak_mb(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per setting")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2, help="batch size of the batched setting")
    parser.add_argument("--train-iters", type=int, default=3, help="timed training iterations (0 to skip)")
    parser.add_argument("--amp", action="store_true", help="also time inference and training with autocast (GPU)")
    parser.add_argument("--compare-detectron2", action="store_true")
    parser.add_argument("--weights", type=Path, default=Path("output/benchmarks/calibrated_R101_FPN.pkl"))
    args = parser.parse_args()

    weights = calibrated_detectron2_pkl(args.weights)
    cfg = get_config("mask_rcnn_R_101_FPN_3x", overrides=[f"MODEL.DEVICE={args.device}"])
    ours = build_model(cfg)
    DetectionCheckpointer(ours).load(str(weights))
    ours.eval()
    models = {"ours": ours}
    if args.compare_detectron2:
        if not detectron2_available():
            raise SystemExit("--compare-detectron2: detectron2 is not importable in this environment")
        models["detectron2"] = build_detectron2_model(weights, args.device)

    report = {
        "model": "mask_rcnn_R_101_FPN_3x",
        "input": "800x1333",
        "device": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"cpu x{torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "results": {},
    }
    settings = [("batch1", 1, False), (f"batch{args.batch}", args.batch, False)]
    if args.amp:
        settings += [("batch1_amp", 1, True), (f"batch{args.batch}_amp", args.batch, True)]
    for label, batch, amp in settings:
        inputs = inference_inputs(batch, args.device)
        times = {name: [] for name in models}
        detections = {}
        for _ in range(args.warmup):
            for name, model in models.items():
                detections[name] = sum(len(o["instances"]) for o in run_inference(model, inputs, amp, args.device))
        for _ in range(args.iters):
            for name, model in models.items():
                times[name].append(
                    time_call(functools.partial(run_inference, model, inputs, amp, args.device), args.device) / batch
                )
        entry = {
            name: {"s_per_img": statistics.median(t), "all_s_per_img": t, "detections_per_batch": detections.get(name)}
            for name, t in times.items()
        }
        if "detectron2" in entry:
            entry["ratio_ours_over_detectron2"] = entry["ours"]["s_per_img"] / entry["detectron2"]["s_per_img"]
        report["results"][label] = entry

    if args.train_iters > 0:
        for label, amp in [("train_800x1333", False)] + ([("train_800x1333_amp", True)] if args.amp else []):
            entry = {}
            for name, model in models.items():
                times, peak = time_training(model, name, amp, args.device, args.train_iters)
                entry[name] = {
                    "s_per_iter": statistics.median(times),
                    "images_per_iter": 2,
                    "all_s_per_iter": times,
                    "cuda_peak_allocated_mb": peak,
                }
            if "detectron2" in entry:
                entry["ratio_ours_over_detectron2"] = entry["ours"]["s_per_iter"] / entry["detectron2"]["s_per_iter"]
            report["results"][label] = entry

    report["peak_rss_mb"] = peak_rss_mb()
    report["cuda_peak_allocated_mb"] = cuda_peak_mb(args.device)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
