#!/usr/bin/env python
r"""Draw the ground truth of a registered dataset, one PNG per image.

    python tools/visualize_data.py --output-dir vis/dsb2018_train +experiment=finetune_dsb2018
    python tools/visualize_data.py --dataset dsb2018_val --num 10 --no-labels --output-dir vis/val \
        +experiment=finetune_dsb2018
    python tools/visualize_data.py --source dataloader --num 8 --output-dir vis/augmented \
        +experiment=finetune_dsb2018 DATALOADER.NUM_WORKERS=0

--source annotation (the default) draws the dataset dicts as registered (boxes, masks and class
names) on their image files, each picture named after its image file (<stem>.png).
--source dataloader draws what the model trains on: the images and their gt_boxes, gt_masks
and gt_classes after the training mapper's augmentations (INPUT.*), in the training sampler's
order (SEED), named <stem>_iter<k>.png with k the loader iteration that yielded the image.

Positional arguments are config overrides, as for train_net.py; they also register datasets
(DATASETS.REGISTER). The dataset is --dataset, else the first of DATASETS.TRAIN; class names
come from its metadata (thing_classes). An image that cannot be read is reported and skipped,
and counted in the summary line printed at the end. An unknown dataset name or option, a bad
override or an output folder that cannot be written ends the tool with a message and exit
status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Sequence, Set, Tuple

from omegaconf import DictConfig
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from project.data import MetadataCatalog, build_detection_train_loader, build_mapper
from project.data.bad_input import (
    KIND_CORRUPT_IMAGE,
    KIND_IMAGE_SIZE,
    KIND_MISSING_IMAGE,
    describe_counts,
    skipped_when_loaded,
)
from project.data.common import loader_bad_input
from project.data.detection_utils import model_image_to_rgb, read_image
from project.engine.cli import (
    ArgumentParser,
    CommandLineError,
    load_config,
    load_dataset,
    picture_path,
    positive_int,
    prepare_output_dir,
    require_dataset_name,
    run_command,
    save_picture,
    split_overrides,
)
from project.structures import Instances
from project.visualization import Visualizer

PROG = "visualize_data.py"
SOURCES = ("annotation", "dataloader")
DEFAULT_NUM = {"annotation": None, "dataloader": 20}
IMAGE_KINDS = (KIND_MISSING_IMAGE, KIND_CORRUPT_IMAGE, KIND_IMAGE_SIZE)


def build_parser() -> argparse.ArgumentParser:
    """The command line: options, then Hydra overrides as positional arguments."""
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=SOURCES, default="annotation", help="what to draw (default: annotation)")
    parser.add_argument("--output-dir", required=True, help="folder for the pictures (created if needed)")
    parser.add_argument(
        "--num", type=positive_int, help="how many images to draw (default: all for annotation, 20 for dataloader)"
    )
    parser.add_argument("--dataset", help="registered dataset name (default: the first of DATASETS.TRAIN)")
    parser.add_argument("--no-boxes", action="store_true", help="leave the boxes out (masks and labels only)")
    parser.add_argument("--no-labels", action="store_true", help="leave the class names out")
    return parser


def ground_truth_as_predictions(instances: Instances) -> Instances:
    """The mapper's ``gt_boxes`` / ``gt_classes`` / ``gt_masks`` under the field names that
    ``Visualizer.draw_instance_predictions`` draws (no scores: labels are class names only)."""
    fields = {"gt_boxes": "pred_boxes", "gt_classes": "pred_classes", "gt_masks": "pred_masks"}
    drawn = Instances(instances.image_size)
    for gt_name, pred_name in fields.items():
        if instances.has(gt_name):
            drawn.set(pred_name, instances.get(gt_name))
    return drawn


def _draw_annotations(
    dicts: Sequence[Mapping[str, Any]], metadata: Any, options: Mapping[str, bool], output_dir: str
) -> Iterator[Tuple[bool, str]]:
    """Draw each dataset dict on its image file; yields (written, file or message) per image."""
    taken: Set[str] = set()
    for dic in dicts:
        try:
            image = read_image(dic["file_name"], "RGB")
            picture = Visualizer(image, metadata, **options).draw_dataset_dict(dic)
        except ValueError as error:  # BadAnnotationError (unreadable image), or annotations of another size
            yield False, str(error)
            continue
        path = picture_path(output_dir, Path(dic["file_name"]).stem, taken)
        save_picture(picture, path)
        yield True, path


def _training_loader(cfg: DictConfig, name: str) -> Any:
    """The training loader of ``cfg`` over dataset ``name`` (its own mapper, sampler and batches)."""
    dataset = load_dataset(cfg, name, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS, need_dicts=False)
    try:
        mapper = build_mapper(cfg, True)
        return build_detection_train_loader(cfg, dataset=dataset, mapper=mapper, persistent_workers=False)
    except ValueError as error:  # a config value the mapper or the loader cannot use
        raise CommandLineError(str(error)) from None


def _draw_training_inputs(
    loader: Any, num: int, image_format: str, metadata: Any, options: Mapping[str, bool], output_dir: str
) -> Iterator[Tuple[bool, str]]:
    """Draw the first ``num`` images the training loader yields; yields (True, file) per image."""
    taken: Set[str] = set()
    drawn = 0
    try:
        for iteration, batch in enumerate(loader):
            for item in batch:
                image = model_image_to_rgb(item["image"], image_format)
                instances = item["instances"] if "instances" in item else Instances(image.shape[:2])
                picture = Visualizer(image, metadata, **options).draw_instance_predictions(
                    ground_truth_as_predictions(instances)
                )
                stem = f"{Path(item['file_name']).stem}_iter{iteration:05d}"
                path = picture_path(output_dir, stem, taken)
                save_picture(picture, path)
                yield True, path
                drawn += 1
                if drawn == num:
                    return
    except RuntimeError as error:  # MapDataset gave up: the mapper skipped every image it tried
        if "mapper returned None" not in str(error):
            raise
        raise CommandLineError(
            f"the training mapper skipped every image it was given ({_mapper_skips(loader)}); the warnings "
            "above say why for the first ones. Annotations the config cannot use count too: RLE masks, "
            "for instance, need INPUT.MASK_FORMAT=bitmask"
        ) from None


def _mapper_skips(loader: Any) -> str:
    """What the training loader's mapper skipped, per kind of problem."""
    log = loader_bad_input(loader)
    return describe_counts(log.counts) if log is not None and log.counts else "nothing recorded"


def main(argv: Sequence[str]) -> Dict[str, Any]:
    """Draw the pictures and print the summary line; returns the counts: ``written``,
    ``skipped`` (unreadable images met while drawing), ``left_out_when_loaded`` (images the
    dataset's loader dropped), ``files``, ``dataset`` and ``output_dir``. Raises ``CommandLineError``
    (and the other ``USER_ERRORS`` of ``project.engine.cli``) for bad input."""
    args, overrides = split_overrides(build_parser(), argv)
    cfg = load_config(overrides)
    name = require_dataset_name(args.dataset, list(cfg.DATASETS.TRAIN), "DATASETS.TRAIN")
    prepare_output_dir(args.output_dir)
    options = {"boxes": not args.no_boxes, "labels": not args.no_labels}
    num = args.num or DEFAULT_NUM[args.source]

    if args.source == "annotation":
        dicts = load_dataset(cfg, name)
        dicts = dicts[:num] if num else dicts
        total = len(dicts)
        pictures = _draw_annotations(dicts, MetadataCatalog.get(name), options, args.output_dir)
        loader = None
    else:
        loader = _training_loader(cfg, name)
        total = num
        pictures = _draw_training_inputs(
            loader, num, cfg.INPUT.FORMAT, MetadataCatalog.get(name), options, args.output_dir
        )

    files, skipped = [], 0
    with tqdm(total=total, desc="drawing", unit="image", dynamic_ncols=True) as bar:
        for written, what in pictures:
            if written:
                files.append(what)
            else:
                skipped += 1
                tqdm.write(f"{PROG}: skipped {what}", file=sys.stderr)
            bar.update(1)
    log = loader_bad_input(loader) if loader is not None else None
    if log is not None:
        skipped += sum(log.counts.values())

    at_load = Counter({k: n for k, n in skipped_when_loaded(name).items() if k in IMAGE_KINDS})
    summary = f"wrote {len(files)} pictures to {args.output_dir}; {skipped} images skipped (unreadable)"
    if log is not None and log.counts:
        summary += f" by the training mapper: {describe_counts(log.counts)}"
    if at_load:
        summary += f"; left out when dataset '{name}' was loaded: {describe_counts(at_load)}"
    print(summary)
    return {
        "dataset": name,
        "output_dir": args.output_dir,
        "written": len(files),
        "skipped": skipped,
        "left_out_when_loaded": sum(at_load.values()),
        "files": files,
    }


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:], PROG))
