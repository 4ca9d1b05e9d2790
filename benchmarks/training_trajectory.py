"""Does a code change alter training? Record a short training trajectory, then compare two.

    python -m benchmarks.training_trajectory record --output OUT.pt --steps 8 --dtype float64 [OVERRIDES ...]
    python -m benchmarks.training_trajectory compare A.pt B.pt

``record`` runs the first ``--steps`` iterations of a recipe (default ``+experiment=finetune_dsb2018``;
Hydra overrides after the options) as a run does them: the model built from ``SEED``, the
recipe's first batches from its seeded loader (mapped in this process), ``SimpleTrainer`` steps
with the recipe's clipping and SGD, and the LR schedule. It saves every step's losses and LR and
the final weights to ``OUT.pt``, and prints the losses as JSON.

``compare`` prints, as JSON, the worst relative difference of the losses at each step and of the
final weights (per tensor, ``|a - b| / |b|`` in the 2-norm). Two checkouts that compute the same
training give the same trajectory in float64 up to summation order (about 1e-10); in float32,
rounding differences grow step by step through the network, so a float32 difference alone does
not tell a changed computation from a changed summation order.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from typing import Dict, List

import torch

from benchmarks.common import data_root
from project.config import get_cfg
from project.data import build_detection_train_loader
from project.engine import EventStorage, SimpleTrainer, seed_all_rng
from project.modeling import build_model
from project.solver import build_gradient_clipper, build_lr_scheduler, build_optimizer

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def record(overrides: List[str], steps: int, dtype: torch.dtype) -> Dict[str, object]:
    """Train ``steps`` iterations of the recipe in ``dtype``; the losses and LR of each step and
    the final weights (parameters and buffers)."""
    os.environ.setdefault("PROJECT_DATA_ROOT", str(data_root()))  # the experiments' dataset paths read it
    cfg = get_cfg(overrides + ["MODEL.DEVICE=cpu", "DATALOADER.NUM_WORKERS=0"])
    seed_all_rng(cfg.SEED)  # the augmentations draw from NumPy's generator, the rest from torch's
    batches = list(itertools.islice(build_detection_train_loader(cfg), steps))
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # tensors the model creates follow its weights
    try:
        torch.manual_seed(cfg.SEED)
        model = build_model(cfg).to(dtype)
        for batch in batches:
            for item in batch:
                item["image"] = item["image"].to(dtype)
        optimizer = build_optimizer(cfg, model)
        scheduler = build_lr_scheduler(cfg, optimizer)
        trainer = SimpleTrainer(model, batches, optimizer, grad_clipper=build_gradient_clipper(cfg))
        losses: Dict[str, float] = {}  # the model's own loss dict, at full precision (metrics are float32)
        model.register_forward_hook(lambda _, __, output: losses.update({k: v.item() for k, v in output.items()}))
        history = []
        for iteration in range(steps):
            lr = optimizer.param_groups[0]["lr"]
            with EventStorage(iteration):
                trainer.iter = iteration
                trainer.run_step()
            scheduler.step()
            history.append({"iter": iteration, "lr": lr, **dict(sorted(losses.items()))})
    finally:
        torch.set_default_dtype(default_dtype)
    return {
        "overrides": overrides,
        "dtype": str(dtype),
        "steps": history,
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def compare(a: Dict[str, object], b: Dict[str, object]) -> Dict[str, object]:
    """Per-step worst relative loss difference and per-tensor relative weight difference of two
    recorded trajectories (``b`` is the reference)."""
    per_step = []
    for step_a, step_b in zip(a["steps"], b["steps"]):
        names = [k for k in step_b if k.startswith("loss_")]
        worst = max(abs(step_a[k] - step_b[k]) / max(abs(step_b[k]), 1e-30) for k in names)
        per_step.append(worst)
    weights_a, weights_b = a["weights"], b["weights"]
    if sorted(weights_a) != sorted(weights_b):
        raise SystemExit("the two trajectories have different state-dict keys; they are not the same model")
    relative = {}
    for name, reference in weights_b.items():
        if reference.is_floating_point():
            diff = (weights_a[name].double() - reference.double()).norm() / reference.double().norm().clamp(min=1e-30)
            relative[name] = diff.item()
    worst_name = max(relative, key=relative.get)
    return {
        "steps": len(per_step),
        "worst_relative_loss_difference_per_step": per_step,
        "worst_relative_weight_difference": {"tensor": worst_name, "value": relative[worst_name]},
        "median_relative_weight_difference": sorted(relative.values())[len(relative) // 2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="train a few steps and save the trajectory")
    rec.add_argument("--output", required=True, help="file to write (torch.save)")
    rec.add_argument("--steps", type=int, default=8)
    rec.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    rec.add_argument("overrides", nargs="*", default=["+experiment=finetune_dsb2018"], help="Hydra overrides")
    cmp = commands.add_parser("compare", help="compare two saved trajectories")
    cmp.add_argument("a")
    cmp.add_argument("b", help="the reference")
    args = parser.parse_args()

    if args.command == "record":
        if not (data_root() / "dsb2018").is_dir():
            raise SystemExit(f"no DSB2018 data under {data_root()}; set PROJECT_DATA_ROOT to the shared data folder")
        result = record(args.overrides, args.steps, DTYPES[args.dtype])
        torch.save(result, args.output)
        print(json.dumps({k: v for k, v in result.items() if k != "weights"}, indent=2))
    else:
        a, b = (torch.load(path, weights_only=True) for path in (args.a, args.b))
        print(json.dumps(compare(a, b), indent=2))


if __name__ == "__main__":
    main()
