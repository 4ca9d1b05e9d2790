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
ids are 1..K in class order (for ``coco``, the input's ids are kept). Bad input is skipped and
reported, or stops the conversion with ``--on-bad-annotation error``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from .bad_input import ON_BAD_ANNOTATION_CHOICES, BadAnnotationError
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m project.data.convert",
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = _parser()
    args = parser.parse_args(argv)
    missing = [f"--{k.replace('_', '-')}" for k in _REQUIRED[args.format] if getattr(args, k) is None]
    if missing:
        parser.error(f"--format {args.format} needs {' and '.join(missing)}")
    MetadataCatalog.pop(_source(args), None)
    try:
        dataset_dicts = _load(args)
    except (BadAnnotationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    meta = MetadataCatalog.get(_source(args))
    to_dataset_id = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    coco = dataset_dicts_to_coco(dataset_dicts, meta.thing_classes, to_dataset_id, file_name_root=out_dir)
    save_coco_json(coco, args.out)
    print(
        f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} annotations, "
        f"classes {meta.thing_classes}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
