"""How much of Detectron2's own test suite passes against this project, imports rewritten.

    python -m benchmarks.detectron2_tests [--vendor ../shared/vendor] [--module data/test_sampler.py ...]

Extracts the tests of the Detectron2 source tarball in ``--vendor`` into a temporary folder,
rewrites the package name (``detectron2.x`` -> ``project.x``, ``from detectron2 import`` ->
``from project import``) and changes nothing else, then runs the modules that cover what this
project implements, with the out-of-scope cases (rotated boxes, keypoints, panoptic and semantic
segmentation, other meta-architectures, TorchScript and export, LazyConfig and yacs configs) left
out by name, and the few tests that need the network or LazyConfig without their name saying so
left out one by one (``OUT_OF_SCOPE_TESTS``, with the reason, also printed). Tests that skip
themselves (no GPU, no network, no COCO on disk) are counted apart.
Prints JSON: per module the tests passed, failed (failures and errors) and skipped, and in
total the share of passed over passed + failed. Run it where Detectron2 is *not* importable, so
that nothing resolves to it.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]

# Test modules (paths under Detectron2's tests/) for the parts this project implements.
IN_SCOPE = [
    "structures/test_boxes.py",
    "structures/test_instances.py",
    "structures/test_masks.py",
    "structures/test_imagelist.py",
    "modeling/test_anchor_generator.py",
    "modeling/test_box2box_transform.py",
    "modeling/test_matcher.py",
    "modeling/test_roi_pooler.py",
    "modeling/test_rpn.py",
    "modeling/test_roi_heads.py",
    "modeling/test_fast_rcnn.py",
    "modeling/test_model_e2e.py",
    "modeling/test_backbone.py",
    "data/test_transforms.py",
    "data/test_detection_utils.py",
    "data/test_coco.py",
    "data/test_dataset.py",
    "data/test_sampler.py",
    "test_checkpoint.py",
    "layers/test_roi_align.py",
    "layers/test_nms.py",
    "layers/test_mask_ops.py",
]

# Test names (case-insensitive substrings) outside the project's scope.
OUT_OF_SCOPE = [
    "rotated",
    "rrpn",
    "rroi",
    "keypoint",
    "panoptic",
    "sem_seg",
    "semseg",
    "retinanet",
    "fcos",
    "pointrend",
    "cascade",
    "script",
    "trace",
    "tracing",
    "export",
    "onnx",
    "caffe2",
    "lazy",
    "instantiate",
    "yacs",
    "cfgnode",
]

# Single tests outside the scope for what they need, not for what their name says.
OUT_OF_SCOPE_TESTS = {
    "test_read_exif_orientation": "downloads an image from Detectron2's file server (network)",
    "test_opencv_exif_orientation": "downloads an image from Detectron2's file server (network)",
    "test_build_dataloader_train": "builds its arguments with LazyConfig (model_zoo 'common/data/coco.py') over COCO",
    "test_build_iterable_dataloader_train": "builds its arguments with LazyConfig over COCO on disk",
    "test_from_to_instances": "converts Instances to and from their TorchScript form (export.patch_instances)",
    "test_grid_sample_equivalence": "compares RoIAlign with PointRend's point sampling (projects.point_rend)",
}

PACKAGE_NAME = re.compile(r"\bdetectron2(?=\.[A-Za-z_]|\s+import\b)")
IMPORT_PACKAGE = re.compile(r"^(\s*)import detectron2\b", re.MULTILINE)


def rewrite_imports(source: str) -> str:
    """Detectron2's package name replaced by ``project`` wherever it names a module."""
    return IMPORT_PACKAGE.sub(r"\1import project", PACKAGE_NAME.sub("project", source))


def extract_tests(vendor: Path, destination: Path) -> Path:
    """Detectron2's ``tests/`` folder from the first ``detectron2-*.tar.gz`` in ``vendor``,
    rewritten, under ``destination``; returns its path."""
    tarballs = sorted(vendor.glob("detectron2-*.tar.gz"))
    if not tarballs:
        raise SystemExit(f"no detectron2-*.tar.gz in {vendor}; pass --vendor with the folder that holds it")
    with tarfile.open(tarballs[0]) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 2 or parts[1] != "tests" or not member.isfile():
                continue
            target = destination.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member).read()
            if target.suffix == ".py":
                data = rewrite_imports(data.decode("utf-8")).encode("utf-8")
            target.write_bytes(data)
    return destination / "tests"


def in_scope(name: str) -> bool:
    return not any(word in name.lower() for word in OUT_OF_SCOPE) and name not in OUT_OF_SCOPE_TESTS


def count_tests(module: Path) -> int:
    """The in-scope test functions and methods a module defines (found without importing it)."""
    tree = ast.parse(module.read_text())
    names = [node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return sum(name.startswith("test") and in_scope(name) for name in names)


def run_module(tests: Path, module: str, report: Path) -> Dict[str, int]:
    """Passed, failed (failures and errors) and skipped in-scope tests of one module. A module
    that cannot be imported fails all its in-scope tests."""
    deselect = " and ".join(f"not {word}" for word in [*OUT_OF_SCOPE, *OUT_OF_SCOPE_TESTS])
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", deselect]
    command += [f"--junitxml={report}", "--rootdir", str(tests.parent), str(tests / module)]
    subprocess.run(command, cwd=tests.parent, check=False, capture_output=True)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        if not case.get("classname"):  # pytest's record of a module that failed to import
            return {"passed": 0, "failed": count_tests(tests / module), "skipped": 0, "import_error": 1}
        if case.find("skipped") is not None:
            counts["skipped"] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        else:
            counts["passed"] += 1
    return counts


def summarize(counts: Dict[str, Dict[str, int]]) -> Dict[str, object]:
    passed = sum(c["passed"] for c in counts.values())
    failed = sum(c["failed"] for c in counts.values())
    return {
        "modules": counts,
        "passed": passed,
        "failed": failed,
        "skipped": sum(c["skipped"] for c in counts.values()),
        "modules_failing_to_import": sum(c.get("import_error", 0) for c in counts.values()),
        "pass_rate": round(passed / (passed + failed), 4) if passed + failed else None,
        "left_out_for_what_they_need": OUT_OF_SCOPE_TESTS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor", type=Path, default=REPO.parent / "shared" / "vendor")
    parser.add_argument("--module", action="append", help="run only these modules (paths under tests/)")
    args = parser.parse_args()
    modules = args.module or IN_SCOPE
    with tempfile.TemporaryDirectory() as scratch:
        tests = extract_tests(args.vendor, Path(scratch))
        counts = {}
        for module in tqdm(modules, desc="Detectron2 test modules", file=sys.stderr):
            counts[module] = run_module(tests, module, Path(scratch) / "report.xml")
        print(json.dumps(summarize(counts), indent=2))


if __name__ == "__main__":
    main()
