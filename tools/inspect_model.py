#!/usr/bin/env python
r"""Look inside a Mask R-CNN on one image, stage by stage, as the Mask R-CNN tutorials do.

    python tools/inspect_model.py --input cells.png --output inspect/cells MODEL.WEIGHTS=model_final.pth
    python tools/inspect_model.py --dataset dsb2018_val --index 3 --output inspect/dsb3 \
        +experiment=finetune_dsb2018 MODEL.WEIGHTS=output/finetune_dsb2018/model_final.pth

Positional arguments are config overrides, as for train_net.py (they also register datasets,
DATASETS.REGISTER). The image is --input (a file, no annotations) or entry --index of the
registered dataset --dataset (with its annotations). The model runs once, exactly as the
predictor runs it (test-time resize, eval mode); forward hooks record each stage, and
--output receives, for the steps of --steps (all by default):

  1_anchors_*.png   anchors the RPN's matcher labels positive / negative / ignored against the
                    ground truth (dataset entries only), and the --top-n anchors by objectness,
                    dashed, with arrows to the solid boxes their deltas refine them into
  2_proposals.png   proposals before and after NMS, with their recall at IoU 0.5 and 0.7
  3_boxes.png       each kept proposal -> its class-specific box; detections after the score
                    threshold and NMS
  4_masks.png       per detection, the M x M mask probabilities, the pasted mask and the
                    ground-truth mask of the object it overlaps most
  5_activations/    per backbone stage and FPN level, a montage of channels; NaN, dead and
                    exploding layers flagged
  6_weights/        per convolution and linear layer, a histogram; constant (dead) and
                    overflowing layers flagged
  7_result.png      the detections drawn by the Visualizer
  inspection.json   every number (boxes of the final detections exactly as the model returns
                    them); index.md shows it all in order

Anchors, proposals and box refinement are drawn on the resized image the model sees; masks and
the result on the original. A bad option or override, an unreadable image, an unknown dataset,
an index out of range, a weights file that does not fit the model or an unwritable --output
ends the tool with a message and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.checkpoint.errors import CheckpointError
from project.data import BadAnnotationError, DatasetCatalog, MetadataCatalog
from project.engine import DefaultPredictor, cli
from project.engine.cli import (
    ArgumentParser,
    CommandLineError,
    load_config,
    non_negative_int,
    positive_int,
    prepare_output_dir,
    require_dataset_name,
    run_command,
    split_overrides,
)
from project.inspection import (
    ALL_STEPS,
    InspectionInput,
    InspectionOptions,
    UnknownModuleError,
    input_from_dataset_dict,
    input_from_file,
    inspect_model,
    write_report,
)

PROG = "inspect_model.py"

# Errors that end the tool with their message and exit status 1: the shared ones, and a
# weights file that does not fit the model.
USER_ERRORS = (*cli.USER_ERRORS, CheckpointError)


def _steps(text: str) -> Tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in steps if s not in ALL_STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(f"steps are a comma-separated list of {', '.join(ALL_STEPS)}; got {text!r}")
    return steps


def build_parser() -> argparse.ArgumentParser:
    """The command line: options, then Hydra overrides as positional arguments."""
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="an image file to inspect the model on (no annotations)")
    source.add_argument("--dataset", help="a registered dataset; inspect on its entry --index, with its annotations")
    parser.add_argument("--index", type=non_negative_int, default=0, help="entry of --dataset (default: 0, the first)")
    parser.add_argument("--output", required=True, help="folder for the pictures and tables (created if needed)")
    parser.add_argument(
        "--top-n", type=positive_int, default=30, help="anchors, proposals, detections and masks shown (default: 30)"
    )
    steps = ",".join(ALL_STEPS)
    parser.add_argument("--steps", type=_steps, default=ALL_STEPS, help=f"a subset of {steps} (default: all)")
    parser.add_argument(
        "--channels", type=positive_int, default=16, help="channels per activation montage (default: 16)"
    )
    parser.add_argument(
        "--activation-module",
        action="append",
        default=[],
        metavar="PATH",
        help="also record this module's outputs as activations (e.g. roi_heads.box_head); repeatable",
    )
    return parser


def parse_command_line(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    """The options and the config overrides; an unknown option is an error, not an override."""
    args, overrides = split_overrides(build_parser(), argv)
    if args.index and args.dataset is None:
        raise CommandLineError("--index picks an entry of --dataset; with --input there is only the one image")
    return args, overrides


def dataset_entry(name: str, index: int) -> Dict[str, Any]:
    """Entry ``index`` of the registered dataset ``name``; ``CommandLineError`` when there is none."""
    require_dataset_name(name, (), "--dataset")  # registered, else the registered names are told
    records = DatasetCatalog.get(name)
    if not isinstance(records, list):
        raise CommandLineError(
            f"dataset '{name}' is a torch dataset, not a list of dataset dicts: it cannot be indexed"
        )
    if index >= len(records):
        raise CommandLineError(
            f"--index {index} is out of range: dataset '{name}' has {len(records)} entries (0 to {len(records) - 1})"
        )
    return records[index]


def _metadata(cfg: DictConfig, dataset: str | None) -> Any:
    """The metadata naming the classes: the dataset's, else that of the config's first test
    (or training) dataset when registered, else None."""
    names = [dataset] if dataset else list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
    for name in names:
        if name in DatasetCatalog:
            return MetadataCatalog.get(name)
    return None


def prepare_input(args: argparse.Namespace, predictor: DefaultPredictor) -> InspectionInput:
    """The image (and annotations) to inspect on, resized as the predictor resizes."""
    fmt = predictor.input_format
    if args.input is not None:
        return input_from_file(args.input, predictor.augmentations, fmt)
    record = dataset_entry(args.dataset, args.index)
    try:
        return input_from_dataset_dict(record, predictor.augmentations, fmt, source=f"{args.dataset}[{args.index}]")
    except BadAnnotationError:  # names the file and says what is wrong with it
        raise
    except (ValueError, TypeError) as error:  # annotations this project cannot read
        raise CommandLineError(f"{args.dataset}[{args.index}] ({record.get('file_name')}): {error}") from None


def main(argv: Sequence[str]) -> Dict[str, Any]:
    """Inspect, write the report and print where it is; returns the report's summary (the
    content of ``inspection.json``) with ``output`` and ``files`` added. Raises ``CommandLineError``
    (and the other ``USER_ERRORS``) for bad input."""
    args, overrides = parse_command_line(argv)
    cfg = load_config(overrides)
    # A wrong file, dataset name or index is told before the model is built.
    if args.input is not None and not Path(args.input).is_file():
        raise CommandLineError(f"--input {args.input}: no such file")
    if args.dataset is not None:
        dataset_entry(args.dataset, args.index)
    prepare_output_dir(args.output, "--output")
    predictor = DefaultPredictor(cfg)
    inspection_input = prepare_input(args, predictor)
    options = InspectionOptions(
        top_n=args.top_n,
        steps=args.steps,
        montage_channels=args.channels,
        activation_modules=tuple(args.activation_module),
    )
    try:
        inspection = inspect_model(predictor.model, inspection_input, options)
    except UnknownModuleError as error:
        raise CommandLineError(f"--activation-module: {error}") from None
    report = write_report(inspection, args.output, _metadata(cfg, args.dataset))
    summary = dict(report.summary, output=str(report.directory), files=report.files)
    _print_summary(summary, report.index_path)
    return summary


def _print_summary(summary: Dict[str, Any], index_path: Path) -> None:
    steps = summary["steps"]
    pictures = sum(len(files) for files in summary["files"].values())
    print(f"{PROG}: {summary['source']}: wrote {pictures} pictures and the tables to {summary['output']}")
    print(f"  open {index_path}")
    for step in ("activations", "weights"):
        flagged = steps.get(step, {}).get("flagged") or {}
        if flagged:
            listed = "; ".join(f"{name} ({', '.join(flags)})" for name, flags in list(flagged.items())[:8])
            more = f" and {len(flagged) - 8} more" if len(flagged) > 8 else ""
            print(f"  flagged {step}: {listed}{more}")
    origin = steps.get("activations", {}).get("first_non_finite")
    if origin:
        print(f"  NaN or infinite activations start at {origin}")
    for step, reason in summary["skipped"].items():
        print(f"  skipped {step}: {reason}")
    seconds = summary["seconds"]
    print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:], PROG, USER_ERRORS))
