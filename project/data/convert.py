"""Convert annotations of any supported format to one COCO instances JSON.

Examples::

    python -m project.data.convert --format mask_folder --root stage1_train --classes nucleus --out nuclei.json
    python -m project.data.convert --format instance_id_png --image-root PennFudanPed/PNGImages \\
        --label-root PennFudanPed/PedMasks --label-suffix _mask.png --classes person --out pennfudan.json
    python -m project.data.convert --format labelme --json-dir labelme_files --out labelme.json
    python -m project.data.convert --format via --json-file via_region_data.json --image-root balloon/train \\
        --class-attribute name --out balloon.json
    python -m project.data.convert --format coco --json-file export.json --image-root images --out clean.json

Image paths in the output are relative to the output file's directory, so register the result
with ``register_coco_instances(name, {}, "<out>.json", "<directory of out.json>")``. Category
ids are 1..K in class order (for ``coco``, the input's ids are kept). Every image's header is
read (not its pixels), so a missing, empty or non-image file is caught here. Bad input is
skipped and counted (the last line gives the count), or stops the conversion with
``--on-bad-annotation error``. Wrong arguments, unreadable input files and failed writes end
with a one-paragraph message and exit status 1; so does an input from which no image is left.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, NoReturn, Optional, Sequence

from .bad_input import ON_BAD_ANNOTATION_CHOICES, BadAnnotationError, describe_counts, skipped_when_loaded
from .catalog import MetadataCatalog
from .datasets import (
    dataset_dicts_to_coco,
    load_coco_json,
    load_instance_id_png,
    load_labelme_json,
    load_mask_folder_instances,
    load_via_json,
    save_coco_json,
)

FORMATS = ("mask_folder", "instance_id_png", "labelme", "via", "coco")
_REQUIRED = {
    "mask_folder": ("root",),
    "instance_id_png": ("image_root", "label_root"),
    "labelme": ("json_dir",),
    "via": ("json_file", "image_root"),
    "coco": ("json_file", "image_root"),
}
# Arguments naming a folder, which must exist; the loaders check the files themselves.
_FOLDERS = ("root", "image_root", "label_root", "json_dir")
_PROG = "python -m project.data.convert"


class ConversionError(Exception):
    """The conversion cannot go on; the message says why and what to do."""


class _ArgumentParser(argparse.ArgumentParser):
    """Reports a wrong command line in one paragraph with exit status 1 (argparse's own way
    prints the whole usage and exits with 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{_PROG}: error: {message}. Run {_PROG} --help for the options.\n")


def _parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog=_PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output COCO JSON file")
    p.add_argument("--root", help="mask_folder: the folder of <id>/images and <id>/masks samples")
    p.add_argument("--image-root", help="instance_id_png, via, coco: image folder; labelme: optional")
    p.add_argument("--label-root", help="instance_id_png: folder of the label PNGs")
    p.add_argument("--image-suffix", default=".png", help="instance_id_png: image file ending (default .png)")
    p.add_argument("--label-suffix", default="_mask.png", help="instance_id_png: label file ending (default _mask.png)")
    p.add_argument("--id-encoding", default="instance", choices=("instance", "cityscapes"), help="instance_id_png")
    p.add_argument("--json-dir", help="labelme: folder of LabelMe JSON files")
    p.add_argument("--json-file", help="via, coco: the annotation file")
    p.add_argument("--class-attribute", help="via: region attribute naming the class (one class when absent)")
    p.add_argument("--classes", nargs="+", help="class names, in order (mask_folder, instance_id_png: the one class)")
    p.add_argument("--on-bad-annotation", default="skip", choices=ON_BAD_ANNOTATION_CHOICES)
    return p


def _source(args: argparse.Namespace) -> str:
    """The input's path, which also names the conversion's metadata."""
    return args.root or args.json_file or args.json_dir or args.image_root


def _load(args: argparse.Namespace) -> List[Dict[str, Any]]:
    common = {"dataset_name": _source(args), "on_bad_annotation": args.on_bad_annotation}
    if args.format == "mask_folder":
        return load_mask_folder_instances(args.root, thing_classes=args.classes, **common)
    if args.format == "instance_id_png":
        thing_classes = {1: args.classes[0]} if args.classes and args.id_encoding == "instance" else None
        return load_instance_id_png(
            args.image_root,
            args.label_root,
            image_suffix=args.image_suffix,
            label_suffix=args.label_suffix,
            id_encoding=args.id_encoding,
            thing_classes=thing_classes,
            **common,
        )
    if args.format == "labelme":
        return load_labelme_json(args.json_dir, args.image_root, thing_classes=args.classes, **common)
    if args.format == "via":
        return load_via_json(
            args.json_file, args.image_root, class_attribute=args.class_attribute, thing_classes=args.classes, **common
        )
    return load_coco_json(args.json_file, args.image_root, **common)


def _check_classes(args: argparse.Namespace) -> None:
    single_class = args.format == "mask_folder" or (args.format == "instance_id_png" and args.id_encoding == "instance")
    if single_class and args.classes and len(args.classes) != 1:
        raise ConversionError(
            f"--format {args.format} has a single class; give one name to --classes, not {args.classes}"
        )
    if args.format == "instance_id_png" and args.id_encoding == "cityscapes" and args.classes:
        raise ConversionError("--id-encoding cityscapes takes its classes from the Cityscapes ids; leave out --classes")


def _check_paths(args: argparse.Namespace) -> None:
    for key in _FOLDERS:
        folder = getattr(args, key)
        if folder is not None and not os.path.isdir(folder):
            raise ConversionError(f"--{key.replace('_', '-')} {folder}: no such folder")
    if os.path.isdir(args.out):
        raise ConversionError(f"--out {args.out} is a folder; give the path of the JSON file to write")
    parent = os.path.dirname(os.path.abspath(args.out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConversionError(f"--out {args.out}: {parent} is a file, not a folder; choose another output path")


def _check_arguments(args: argparse.Namespace) -> None:
    """Raise ``ConversionError`` for arguments the chosen format cannot use, folders that do not
    exist and an output path that cannot be a file."""
    missing = [f"--{k.replace('_', '-')}" for k in _REQUIRED[args.format] if getattr(args, k) is None]
    if missing:
        raise ConversionError(f"--format {args.format} needs {' and '.join(missing)}")
    _check_classes(args)
    _check_paths(args)


def _convert(args: argparse.Namespace) -> str:
    """Load, convert and write; returns the summary line."""
    MetadataCatalog.pop(_source(args), None)
    dataset_dicts = _load(args)
    skipped = skipped_when_loaded(_source(args))
    if not dataset_dicts:
        raise ConversionError(
            f"no image of {_source(args)} could be converted"
            + (f" (skipped as bad input: {describe_counts(skipped)}; see the warnings above)" if skipped else "")
            + "; check the paths and the format"
        )
    meta = MetadataCatalog.get(_source(args))
    to_dataset_id = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    coco = dataset_dicts_to_coco(dataset_dicts, meta.thing_classes, to_dataset_id, file_name_root=out_dir)
    save_coco_json(coco, args.out)
    return (
        f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, "
        f"classes {meta.thing_classes}; skipped as bad input: {describe_counts(skipped) if skipped else 'nothing'}"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the converter; returns the exit status (0, or 1 after printing the error)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        _check_arguments(args)
        print(_convert(args))
    except (ConversionError, BadAnnotationError, OSError) as e:  # OSError: FileWriteError, a missing file, ...
        print(f"{_PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
